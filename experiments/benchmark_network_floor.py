"""How fast `mfkeras-fuse` could be with a lighter per-pixel network: the time floor beside focus-stack.

The decision network's cost is measured for the shipped default and for lighter configurations
of the same architecture (fewer or narrower layers), each converted to LiteRT files with
untrained weights: an interpreter's time does not depend on its weights (the shipped default's
bundle is timed too, to show it). All timings come from one run on one machine:
  whole process  python starting with NumPy, OpenCV and LiteRT imported and nothing else;
                 `mfkeras-fuse --timings` (default model, LiteRT) and focus-stack on the pair,
                 alternating, median of --repeats after a warm-up; with --large also on the pair
                 upscaled to 6000x4000 (--large_repeats);
  network        each configuration's score map of the same pair (and the large pair), in this
                 process, which never imports TensorFlow (the bundles are written by a child), in
                 the tiles the pipeline plans; the pair also in one tile, whose buffers take the
                 default past the 250 MB target (XNNPACK holds about 1.2 KB per tile pixel).
                 Interpreters are kept between calls, so every timed call is warm.
Per configuration it reports two figures, each with its ratio to focus-stack:
  projected  the default's whole-process median with its network time replaced by this one's;
  floor      python's start + decoding + encoding (the default's --timings) + this network:
             the time if every other stage (decision, refinement, halo removal, blending) and
             the first call's planning were free (floor_untiled: with the one-tile time).

Example:
  python experiments/benchmark_network_floor.py --focus_stack=/tmp/focus-stack-build/build/focus-stack --large
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402
from experiments.process_timing import (  # noqa: E402
    checked_run, peer_commands, run_once, time_commands, with_ratios, write_frames,
)

LYTRO = REPO_ROOT.parent / "shared/data/lytro"
# Lighter configurations of the default's architecture: (widths, dilations, feature channels,
# head units). The six-layer ones keep the default's 32-pixel reach, the five-layer one 31.
CONFIGURATIONS = {
    "default_12x6_f16": ((12,) * 6, (1, 1, 2, 4, 8, 16), 16, 16),
    "8x6_f8": ((8,) * 6, (1, 1, 2, 4, 8, 16), 8, 8),
    "8x5_f8": ((8,) * 5, (1, 2, 4, 8, 16), 8, 8),
    "6x6_f8": ((6,) * 6, (1, 1, 2, 4, 8, 16), 8, 8),
    "4x6_f8": ((4,) * 6, (1, 1, 2, 4, 8, 16), 8, 8),
}
SHIPPED = "shipped_default"
# Images up to this side are also scored in one tile (beyond the memory target: ~1.2 KB a pixel).
UNTILED_SIDE = 1024
IMPORTS_ONLY = "import numpy, cv2\nfrom ai_edge_litert.interpreter import Interpreter"

flags.DEFINE_list("pair", [str(LYTRO / "lytro_01_A.jpg"), str(LYTRO / "lytro_01_B.jpg")], "The 520x520 pair.")
flags.DEFINE_integer("repeats", 5, "Timed rounds after the warm-up (median).")
flags.DEFINE_string("focus_stack", None, "Path of the focus-stack executable (required).")
flags.DEFINE_bool("large", False, "Also time the pair upscaled to 6000x4000 (slow).")
flags.DEFINE_integer("large_repeats", 2, "Timed rounds of the large case.")
flags.DEFINE_string("write_bundles_to", None, "Internal: write the configurations' LiteRT bundles here and stop.")
flags.DEFINE_string(
    "output_json", str(REPO_ROOT / "experiments/results/benchmark_network_floor.json"), "Where to write."
)
FLAGS = flags.FLAGS


def write_bundles(directory: str) -> None:
    """Writes one LiteRT bundle per configuration (untrained weights) under ``directory``."""
    from mfkeras.deploy.tflite import write_litert_bundle
    from mfkeras.network.decision_config import DecisionConfig
    from mfkeras.network.decision_model import as_decision_network, build_decision_model

    for name, (widths, dilations, features, head) in CONFIGURATIONS.items():
        config = DecisionConfig(name=name, widths=widths, dilations=dilations, feature_channels=features,
                                head_units=head)
        write_litert_bundle(as_decision_network(build_decision_model(config)), os.path.join(directory, name), name)


def network_seconds(network, grays: tuple, repeats: int, tiled: bool = True) -> float:
    """Median seconds of ``network``'s score map of ``grays`` in the tiles the pipeline plans
    (or in one tile if not ``tiled``), after one warm-up call; ``network`` keeps its
    interpreters (the command line's first call also pays for planning, so this is a lower
    bound of its score stage)."""
    side = network.tile_side_for(*grays[0].shape) if tiled else None
    network.score_map(*grays, max_tile_side=side)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        network.score_map(*grays, max_tile_side=side)
        runs.append(time.perf_counter() - start)
    network.release()
    return statistics.median(runs)


def stage_times(command: list):
    """The --timings stage seconds of one run of ``command`` (which must print them)."""
    from mfkeras.fusion.timing import StageTimes

    return StageTimes.from_summary(checked_run(command).stderr)


def case(inputs: list, scratch: str, tag: str, repeats: int, networks: dict) -> dict:
    """Whole-process figures, the default's stages and every network's projection for ``inputs``."""
    from mfkeras.io import images
    from mfkeras.io.color import to_gray

    fuse = [sys.executable, "-m", "mfkeras.cli.fuse", *inputs, "-o", os.path.join(scratch, f"{tag}.png"),
            "--overwrite", "--backend=litert", "--timings"]
    commands = {"python_imports": [sys.executable, "-c", IMPORTS_ONLY], "mfkeras_litert": fuse,
                **peer_commands(inputs, scratch, tag, FLAGS.focus_stack, None)}
    processes = with_ratios(time_commands(commands, repeats))
    stages = stage_times(fuse)
    grays = tuple(to_gray(images.read_image(path)) for path in inputs)
    reference = processes["focus_stack"]["median_s"]
    default_network = None
    rows = {}
    for name, network in networks.items():
        seconds = network_seconds(network, grays, repeats)
        rows[name] = {"network_s": seconds}
        if max(grays[0].shape) <= UNTILED_SIDE:
            rows[name]["network_untiled_s"] = network_seconds(network, grays, repeats, tiled=False)
        if name == SHIPPED:
            default_network = seconds
    start_up = processes["python_imports"]["median_s"]
    for name, row in rows.items():
        projected = processes["mfkeras_litert"]["median_s"] - default_network + row["network_s"]
        floor = start_up + stages.get("decode", 0.0) + stages.get("encode", 0.0) + row["network_s"]
        row.update(projected_s=projected, projected_ratio=projected / reference, floor_s=floor,
                   floor_ratio=floor / reference)
        if "network_untiled_s" in row:
            untiled = floor - row["network_s"] + row["network_untiled_s"]
            row.update(floor_untiled_s=untiled, floor_untiled_ratio=untiled / reference)
    return {"processes": processes, "default_stages_s": dict(stages), "networks": rows}


def main(argv):
    del argv
    with cli.clean_errors("benchmark_network_floor"):
        if FLAGS.write_bundles_to:
            write_bundles(FLAGS.write_bundles_to)
            return
        if not (FLAGS.focus_stack and shutil.which(FLAGS.focus_stack)):
            raise ValueError(f"--focus_stack must name the focus-stack executable. Received: {FLAGS.focus_stack!r}")
        from mfkeras.fusion.litert import LiteRTNetwork
        from mfkeras.io import images
        from mfkeras.network import zoo

        scratch = tempfile.mkdtemp(prefix="mfkeras-floor-")
        try:
            bundles = os.path.join(scratch, "bundles")
            checked_run([sys.executable, __file__, f"--write_bundles_to={bundles}"])
            networks = {SHIPPED: LiteRTNetwork(zoo.litert_dir(), keep_interpreters=True)}
            networks.update({name: LiteRTNetwork(os.path.join(bundles, name), keep_interpreters=True)
                             for name in CONFIGURATIONS})
            report = {"machine": provenance.describe_machine(load_average=True), "pair": FLAGS.pair,
                      "repeats": FLAGS.repeats, "configurations": {}, "cases": {}}
            for name, network in networks.items():
                config = network.config
                report["configurations"][name] = {**config.to_dict(), "gflop_520x520_pair": config.flops(520, 520) / 1e9}
            run_once([sys.executable, "-c", IMPORTS_ONLY])
            report["cases"]["pair"] = case(FLAGS.pair, scratch, "pair", FLAGS.repeats, networks)
            if FLAGS.large:
                sources = [images.read_image(path) for path in FLAGS.pair]
                large = write_frames(scratch, sources, 2, size=(6000, 4000))
                report["cases"]["large"] = case(large, scratch, "large", FLAGS.large_repeats, networks)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for case_name, figures in report["cases"].items():
            for name, process in figures["processes"].items():
                print(f"{case_name:5s} {name:16s} {process['median_s']:.3f} s, {process['peak_rss_mb']:.0f} MB")
            print(f"{case_name:5s} default stages: {figures['default_stages_s']}")
            for name, row in figures["networks"].items():
                gflop = report["configurations"][name]["gflop_520x520_pair"]
                print(f"{case_name:5s} {name:16s} {gflop:5.2f} GFLOP/pair  network {row['network_s']:.3f} s  "
                      f"projected {row['projected_s']:.3f} s ({row['projected_ratio']:.2f}x)  "
                      f"floor {row['floor_s']:.3f} s ({row['floor_ratio']:.2f}x)"
                      + (f"  one tile: network {row['network_untiled_s']:.3f} s, floor {row['floor_untiled_s']:.3f} s "
                         f"({row['floor_untiled_ratio']:.2f}x)" if "network_untiled_s" in row else ""))
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
