"""Times the fusion of one colour pair end to end and the score map alone.

Writes median seconds, the analytic FLOP count of the score-map network, the
achieved GFLOP/s, this machine's fp32 matmul GFLOP/s measured in the same run,
and peak RSS to a JSON file.

Examples:
  python experiments/benchmark_fuse.py --models=liu2017_single_fc,li2018 --liu_mat=../shared/ref/liu2017/cnnmodel.mat
  # on a GPU machine (the JSON names the GPU):
  python experiments/benchmark_fuse.py --inference_dtype=float16 --jit_compile --output_json=gpu.json
"""

import os
import resource
import sys
import time
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402

flags.DEFINE_list("inputs", [str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_A.jpg"),
                             str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_B.jpg")],
                  "The colour pair to fuse.")
flags.DEFINE_list("models", ["pixel_decision", "liu2017_single_fc"], "Shipped model names or .keras files to time.")
flags.DEFINE_string("liu_mat", None, "Also time the authors' released weights from this .mat file.")
flags.DEFINE_bool("dense", False, "Time the stride-1 score map.")
flags.DEFINE_enum(
    "inference_dtype", "float32", list(cli.INFERENCE_DTYPES), "Network precision (float16 / bfloat16: mixed)."
)
flags.DEFINE_bool("jit_compile", False, "XLA-compile the network.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions after one warm-up.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_fuse.json"), "Where to write the figures.")
FLAGS = flags.FLAGS


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measures this machine's fp32 matmul rate with TensorFlow."""
    import numpy as np
    import tensorflow as tf

    a = tf.constant(np.random.default_rng(0).random((size, size), np.float32))
    tf.linalg.matmul(a, a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2] / 1e9




def main(argv):
    del argv

    with cli.clean_errors("benchmark_fuse"):
        from mfkeras import fusion
        from mfkeras.io import images
        from mfkeras.fusion import inference
        from mfkeras.network import precision
        from mfkeras.network import zoo
        from mfkeras.network.convert import score_map_flops

        sources = [images.read_image(p) for p in FLAGS.inputs]
        specs = [(name, name) for name in FLAGS.models]
        if FLAGS.liu_mat:
            specs.append(("liu2017_released", FLAGS.liu_mat))
        rate = matmul_gflops()
        options = fusion.FusionOptions(
            dense=FLAGS.dense, inference_dtype=FLAGS.inference_dtype, jit_compile=FLAGS.jit_compile
        )
        machine = provenance.describe_machine(gpus=True)
        report = {
            "machine": machine,
            "gpus": machine["gpus"],
            "inputs": FLAGS.inputs, "shape": list(sources[0].shape), "dense": FLAGS.dense,
            "inference_dtype": FLAGS.inference_dtype, "jit_compile": FLAGS.jit_compile,
            "matmul_gflops": rate, "models": {},
        }
        for label, spec in specs:
            model = zoo.load_patch_model(spec)
            network = fusion.as_score_network(model, dense=FLAGS.dense)
            gray = [fusion.to_gray(fusion.to_unit_range(s)) for s in sources]
            end_to_end = cli.median_seconds(lambda: fusion.fuse(sources, network, options), FLAGS.repeats)
            compute = precision.compute_network(network, FLAGS.inference_dtype)
            scoring = cli.median_seconds(
                lambda: inference.score_map(compute, *gray, jit_compile=FLAGS.jit_compile), FLAGS.repeats
            )
            flops = score_map_flops(network.config, *gray[0].shape, dense=FLAGS.dense)
            entry = {
                "end_to_end_s": end_to_end, "score_map_s": scoring, "score_map_gflop": flops / 1e9,
                "score_map_gflops_per_s": flops / scoring / 1e9,
                "fraction_of_matmul_rate": flops / scoring / 1e9 / rate,
            }
            report["models"][label] = entry
            print(f"{label:22s} end-to-end {end_to_end:.3f} s  score map {scoring:.3f} s  "
                  f"{flops / 1e9:.1f} GFLOP -> {entry['score_map_gflops_per_s']:.1f} GFLOP/s "
                  f"({100 * entry['fraction_of_matmul_rate']:.0f}% of matmul {rate:.1f} GFLOP/s)")
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {report['peak_rss_mb']:.0f} MB")
        cli.write_json(FLAGS.output_json, report)


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
