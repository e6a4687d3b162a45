"""Times the score map of one pair with TFLite (each quantization) next to TensorFlow.

Median seconds after one warm-up run, for: TensorFlow float32, bfloat16 (mixed)
and float32 XLA; TFLite float32, float16 and dynamic-range int8 (dynamic size,
XNNPACK on CPU), and the fixed-tile float32 model tiled on the host; and the
SavedModel module's end-to-end `fuse`. Writes a JSON file; the machine and the
devices TensorFlow sees are recorded with the figures.

Example:
  python experiments/benchmark_tflite.py --liu_mat=../shared/ref/liu2017/cnnmodel.mat
"""

import os
import sys
from pathlib import Path

from absl import flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402

flags.DEFINE_list("inputs", [str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_A.jpg"),
                             str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_B.jpg")],
                  "The pair to score.")
flags.DEFINE_string("model", "liu2017_single_fc", "Shipped model name or .keras file.")
flags.DEFINE_string("liu_mat", None, "Use the authors' released weights (cnnmodel.mat) instead.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions after one warm-up.")
flags.DEFINE_integer("threads", None, "TFLite CPU threads (default: all cores).")
flags.DEFINE_integer("tile_size", 256, "Side of the fixed-tile TFLite model (0: skip it).")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_tflite.json"),
                    "Where to write the figures.")
FLAGS = flags.FLAGS




def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's saving chatter during conversion
    with cli.clean_errors("benchmark_tflite"):
        from mfkeras.io import images
        from mfkeras.network import zoo

        model_path = zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model)
        sources = [images.read_image(path) for path in FLAGS.inputs]
        cli.check_same_kind(sources, FLAGS.inputs)

        import numpy as np
        import tensorflow as tf

        from mfkeras.deploy import saved_model as export
        from mfkeras import fusion
        from mfkeras.deploy import tflite

        network = fusion.as_score_network(zoo.load_patch_model(model_path))
        gray = [fusion.to_gray(fusion.to_unit_range(s)) for s in sources]
        batch = [g[None, :, :, None] for g in gray]
        threads = FLAGS.threads or os.cpu_count()
        report = {
            "machine": provenance.describe_machine(load_average=True),
            "devices": [device.name for device in tf.config.list_physical_devices()],
            "gpu": [d.name for d in tf.config.list_physical_devices("GPU")]
            or "none visible: GPU not measured",
            "tensorflow": tf.__version__,
            "tflite_interpreter": tflite.interpreter_package(),
            "tflite_threads": threads,
            "model": network.model.name,
            "inputs": FLAGS.inputs,
            "shape": list(sources[0].shape),
            "repeats": FLAGS.repeats,
            "seconds": {},
        }
        seconds = report["seconds"]
        reference = None
        for label, dtype, jit in [("tf_float32", "float32", False), ("tf_bfloat16", "bfloat16", False),
                                  ("tf_float32_xla", "float32", True)]:
            function = export.score_function(network, dtype, jit)
            seconds[label] = cli.median_seconds(lambda: function(*batch).numpy(), FLAGS.repeats)
            if reference is None:
                reference = function(*batch).numpy()[0, :, :, 0]
            print(f"{label:28s} {seconds[label]:.3f} s")
        report["max_abs_diff_vs_tf_float32"] = {}
        variants = [(q, None) for q in tflite.QUANTIZATIONS]
        if FLAGS.tile_size:
            variants.append(("float32", FLAGS.tile_size))
        for quantization, tile_size in variants:
            interpreter = tflite.make_interpreter(
                tflite.convert(network, quantization, tile_size=tile_size), num_threads=threads
            )
            tiling = "" if tile_size is None else f"tile{tile_size}_"
            label = f"tflite_{tiling}{quantization}"
            run = lambda: tflite.run_score_map(interpreter, network, *gray, tile_size)  # noqa: E731
            seconds[label] = cli.median_seconds(run, FLAGS.repeats)
            report["max_abs_diff_vs_tf_float32"][label] = float(np.abs(run() - reference).max())
            print(f"{label:28s} {seconds[label]:.3f} s")
        module = export.FusionModule(network)
        seconds["savedmodel_fuse_end_to_end"] = cli.median_seconds(
            lambda: module.fuse(*sources)["fused"].numpy(), FLAGS.repeats
        )
        print(f"{'savedmodel_fuse_end_to_end':28s} {seconds['savedmodel_fuse_end_to_end']:.3f} s")
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
