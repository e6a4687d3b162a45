"""Times N-frame fusion: joint O(N) scoring vs sequential pairs vs a single pair.

Part 1 (always): a synthetic 10-frame 520x520 stack made from a Lytro pair (each
frame blurs the scene differently), timed against fusing one pair.
Part 2 (with --pcb_dir): the real 7-frame `stack-pcb` stack, aligned, fused both
ways; writes both results and a side-by-side figure with the focus-stack tool's
`expected.jpg`.

Example:
  python experiments/benchmark_stack.py --liu_mat=../shared/ref/liu2017/cnnmodel.mat --pcb_dir=../shared/data/stack-pcb
"""

import json
import os
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

flags.DEFINE_list("pair", [str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_A.jpg"),
                           str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_B.jpg")],
                  "The pair the synthetic stack is made from.")
flags.DEFINE_integer("frames", 10, "Frames in the synthetic stack.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median) after one warm-up.")
flags.DEFINE_string("model", None, "Shipped model name or .keras file (default: the shipped default).")
flags.DEFINE_string("liu_mat", None, "Use the authors' released weights instead.")
flags.DEFINE_string("pcb_dir", None, "Folder of the stack-pcb frames (pcb_*.jpg and expected.jpg).")
flags.DEFINE_float("pcb_scale", 1.0, "Downscale factor for the pcb frames (1 = full 2048x1536).")
flags.DEFINE_string("output_dir", str(REPO_ROOT / "experiments/results/stack"), "Where to write figures and JSON.")
FLAGS = flags.FLAGS




def synthetic_stack(pair, count):
    """Frames that alternate between the pair's sources, each with its own extra blur."""
    import cv2

    frames = []
    for index in range(count):
        source = pair[index % 2]
        sigma = 0.3 + 0.4 * (index // 2)
        frames.append(cv2.GaussianBlur(source, (0, 0), sigma))
    return frames


def main(argv):
    del argv

    with cli.clean_errors("benchmark_stack"):
        import cv2
        import numpy as np

        from mfkeras.fusion import align
        from mfkeras import fusion
        from mfkeras.io import images
        from mfkeras.evaluation import figures as visualize
        from mfkeras.network import zoo

        os.makedirs(FLAGS.output_dir, exist_ok=True)
        model = zoo.load_patch_model(FLAGS.liu_mat or FLAGS.model)
        network = fusion.as_score_network(model)
        pair = [images.read_image(p) for p in FLAGS.pair]
        frames = synthetic_stack(pair, FLAGS.frames)
        joint = fusion.FusionOptions(stack_method="joint")
        sequential = fusion.FusionOptions(stack_method="sequential")
        pair_s = cli.median_seconds(lambda: fusion.fuse(pair, network), FLAGS.repeats)
        joint_s = cli.median_seconds(lambda: fusion.fuse(frames, network, joint), FLAGS.repeats)
        seq_s = cli.median_seconds(lambda: fusion.fuse(frames, network, sequential), FLAGS.repeats)
        report = {
            "machine": provenance.describe_machine(),
            "model": model.name,
            "synthetic": {"frames": FLAGS.frames, "shape": list(pair[0].shape), "pair_s": pair_s,
                          "joint_s": joint_s, "sequential_s": seq_s,
                          "joint_over_pair": joint_s / pair_s, "sequential_over_pair": seq_s / pair_s},
        }
        print(json.dumps(report["synthetic"], indent=2))
        if FLAGS.pcb_dir:
            paths = sorted(str(p) for p in Path(FLAGS.pcb_dir).glob("pcb_*.jpg"))
            pcb = [images.read_image(p) for p in paths]
            if FLAGS.pcb_scale != 1.0:
                pcb = [cv2.resize(f, None, fx=FLAGS.pcb_scale, fy=FLAGS.pcb_scale, interpolation=cv2.INTER_AREA) for f in pcb]
            start = time.perf_counter()
            aligned = align.align_images(pcb)
            align_s = time.perf_counter() - start
            results = {}
            for label, options in (("joint", joint), ("sequential", sequential)):
                start = time.perf_counter()
                result = fusion.fuse(aligned.images, network, options)
                results[label] = (time.perf_counter() - start, result)
                images.write_image(os.path.join(FLAGS.output_dir, f"pcb_{label}.jpg"), result.fused)
            images.write_image(os.path.join(FLAGS.output_dir, "pcb_source_index.png"),
                               visualize.source_index_image(results["joint"][1].source_index, len(pcb)))
            expected = images.read_image(os.path.join(FLAGS.pcb_dir, "expected.jpg"))
            top, bottom, left, right = aligned.crop
            height = 480
            tiles = []
            for picture in (results["joint"][1].fused, results["sequential"][1].fused,
                            cv2.resize(expected, (pcb[0].shape[1], pcb[0].shape[0]))[top:bottom, left:right]):
                scale = height / picture.shape[0]
                tiles.append(cv2.resize(picture, (int(picture.shape[1] * scale), height), interpolation=cv2.INTER_AREA))
            images.write_image(os.path.join(FLAGS.output_dir, "pcb_side_by_side.jpg"), np.hstack(tiles))
            report["pcb"] = {"frames": len(pcb), "shape": list(pcb[0].shape), "align_s": align_s,
                             "crop": list(aligned.crop), "joint_s": results["joint"][0],
                             "sequential_s": results["sequential"][0]}
            print(json.dumps(report["pcb"], indent=2))
        cli.write_json(os.path.join(FLAGS.output_dir, "benchmark_stack.json"), report)


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
