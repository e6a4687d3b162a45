"""Fuses a large colour pair (default 6000x4000) in tiles and reports time and peak RSS.

The pair is the Lytro pair `lytro_01` upscaled, so the focus structure is real.
Without tiling, the network's activations alone would need about
`bytes_per_pixel * pixels`; the report gives that estimate next to the measurement.

With --backend=litert the shipped model's LiteRT files score in the tiles the pipeline picks
for the image (decision networks: up to 704 px on large images; --memory_budget_mb=0 plans
them as mfkeras-fuse does, a budget can only shrink them); --compare_tile_side then fuses
again in tiles of that side (untiled, XNNPACK would hold about 1.2 KB per pixel for a pair,
~28 GB here; measured on tiles of 216-1000 px).

Examples:
  python experiments/benchmark_large.py --liu_mat=../shared/ref/liu2017/cnnmodel.mat --memory_budget_mb=1024
  python experiments/benchmark_large.py --backend=litert --memory_budget_mb=0 --compare_tile_side=256 \
      --output_json=/tmp/large_litert.json
"""

import json
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
                  "The pair to upscale.")
flags.DEFINE_integer("width", 6000, "Width of the upscaled pair.")
flags.DEFINE_integer("height", 4000, "Height of the upscaled pair.")
flags.DEFINE_string("model", None, "Shipped model name or .keras file (default: the shipped default).")
flags.DEFINE_string("liu_mat", None, "Use the authors' released weights instead (Keras backend).")
flags.DEFINE_enum("backend", "keras", list(cli.BACKENDS), "Which backend scores (litert: the shipped LiteRT files).")
flags.DEFINE_float("memory_budget_mb", 1024, "Memory budget for the network tiles (0: none, as mfkeras-fuse).")
flags.DEFINE_integer(
    "compare_tile_side", 0, "Also fuse in tiles of this side and report how far the two results are "
    "apart (tiling must not change them; 0: skip)."
)
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_large.json"), "Where to write the figures.")
FLAGS = flags.FLAGS


def main(argv):
    del argv

    with cli.clean_errors("benchmark_large"):
        import cv2

        from mfkeras import fusion
        from mfkeras.fusion import pipeline, scoring
        from mfkeras.io import images
        from mfkeras.network import zoo

        size = (FLAGS.width, FLAGS.height)
        sources = [cv2.resize(images.read_image(p), size, interpolation=cv2.INTER_CUBIC) for p in FLAGS.inputs]
        if FLAGS.backend == "litert":
            if FLAGS.liu_mat:
                raise ValueError("--liu_mat runs on the Keras backend; drop --backend=litert.")
            network = zoo.load_litert_network(FLAGS.model)
            name, untiled = network.name, None
        else:
            model = zoo.load_patch_model(FLAGS.liu_mat or FLAGS.model)
            network = fusion.as_score_network(model)
            name = model.name
            untiled = scoring.bytes_per_pixel(network) * FLAGS.width * FLAGS.height / 2**20
        options = fusion.FusionOptions(memory_budget_mb=FLAGS.memory_budget_mb or None)
        tile_side = pipeline.planned_tile_side(network, options, (FLAGS.height, FLAGS.width))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = fusion.fuse(sources, network, options)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report = {
            "machine": provenance.describe_machine(),
            "model": name, "backend": FLAGS.backend, "shape": list(result.fused.shape),
            "memory_budget_mb": FLAGS.memory_budget_mb,
            "tile_side": tile_side, "tiles": len(scoring.plan_tiles(network, FLAGS.height, FLAGS.width, tile_side)),
            "seconds": seconds, "peak_rss_mb": peak, "rss_before_fusion_mb": rss_before,
            "untiled_activation_estimate_mb": untiled,
        }
        if FLAGS.compare_tile_side:
            other = fusion.fuse(sources, network, fusion.FusionOptions(max_tile_side=FLAGS.compare_tile_side))
            report["compare_tile_side"] = FLAGS.compare_tile_side
            report["compare_max_score_abs_diff"] = float(abs(other.score_map - result.score_map).max())
            report["compare_fused_identical"] = bool((other.fused == result.fused).all())
        print(json.dumps(report, indent=2))
        cli.write_json(FLAGS.output_json, report)


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
