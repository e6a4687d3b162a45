"""Whole-process time and peak memory of `mfkeras-fuse` beside focus-stack and enfuse.

Each command runs as users run it, a fresh process per run; the runs alternate between the
commands (one warm-up each, then --repeats rounds), and each gets its median wall time and
its peak RSS (from wait4). Cases:
  pair      a 520x520 Lytro pair, every --backends of mfkeras-fuse and the peers;
  help      `mfkeras-fuse --help`;
  stack     a --stack_frames-frame 520x520 stack (the pair's frames, re-blurred), mfkeras only;
  large     with --large: the pair upscaled to 6000x4000, every backend and the peers.
Ratios to focus-stack (wall) are computed within the run.

Example:
  python experiments/benchmark_cli.py --focus_stack=/usr/local/bin/focus-stack --enfuse=enfuse --large
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402
from experiments.process_timing import peer_commands, time_commands, with_ratios, write_frames  # noqa: E402

LYTRO = REPO_ROOT.parent / "shared/data/lytro"
flags.DEFINE_list("pair", [str(LYTRO / "lytro_01_A.jpg"), str(LYTRO / "lytro_01_B.jpg")], "The 520x520 pair.")
flags.DEFINE_integer("repeats", 5, "Timed rounds after the warm-up (median).")
flags.DEFINE_list(
    "backends", ["litert", "keras"],
    "mfkeras-fuse backends to time (litert_dynamic_int8: the LiteRT backend's int8 files, for "
    "models that ship them, e.g. --model=liu2017_single_fc).",
)
flags.DEFINE_string("model", None, "Model for mfkeras-fuse (default: the shipped default).")
flags.DEFINE_string("focus_stack", None, "Path of the focus-stack executable (skipped when absent).")
flags.DEFINE_string("enfuse", None, "Path of the enfuse executable (skipped when absent).")
flags.DEFINE_integer("stack_frames", 10, "Frames of the stack case (0 skips it).")
flags.DEFINE_bool("large", False, "Also time a 6000x4000 pair (slow).")
flags.DEFINE_integer("large_repeats", 2, "Timed rounds of the large case.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_cli.json"), "Where to write.")
FLAGS = flags.FLAGS


def commands_for(inputs: list, scratch: str, tag: str) -> dict:
    """The mfkeras-fuse command of each backend and the peers' commands for ``inputs``."""
    fuse = [sys.executable, "-m", "mfkeras.cli.fuse"]
    model = [f"--model={FLAGS.model}"] if FLAGS.model else []
    commands = {}
    for spec in FLAGS.backends:
        backend, _, quantization = spec.partition("_")
        options = [f"--backend={backend}"] + ([f"--litert_quantization={quantization}"] if quantization else [])
        commands[f"mfkeras_{spec}"] = [*fuse, *inputs, "-o", os.path.join(scratch, f"{tag}_{spec}.png"),
                                      *options, "--overwrite", *model]
    return {**commands, **peer_commands(inputs, scratch, tag, FLAGS.focus_stack, FLAGS.enfuse)}


def main(argv):
    del argv
    with cli.clean_errors("benchmark_cli"):
        from mfkeras.io import images

        sources = [images.read_image(path) for path in FLAGS.pair]
        scratch = tempfile.mkdtemp(prefix="mfkeras-cli-")
        report = {"machine": provenance.describe_machine(load_average=True), "pair": FLAGS.pair,
                  "repeats": FLAGS.repeats, "cases": {}}
        try:
            cases = report["cases"]
            cases["pair"] = with_ratios(time_commands(commands_for(FLAGS.pair, scratch, "pair"), FLAGS.repeats))
            cases["help"] = time_commands(
                {"mfkeras_help": [sys.executable, "-m", "mfkeras.cli.fuse", "--help"]}, FLAGS.repeats
            )
            if FLAGS.stack_frames:
                frames = write_frames(scratch, sources, FLAGS.stack_frames)
                stack = commands_for(frames, scratch, "stack")
                cases["stack"] = time_commands({k: v for k, v in stack.items() if k.startswith("mfkeras")},
                                               FLAGS.repeats)
                for name, figures in cases["stack"].items():
                    figures["ratio_to_one_pair"] = figures["median_s"] / cases["pair"][name]["median_s"]
            if FLAGS.large:
                large = write_frames(scratch, sources, 2, size=(6000, 4000))
                cases["large"] = with_ratios(time_commands(commands_for(large, scratch, "large"), FLAGS.large_repeats))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for case, results in report["cases"].items():
            for name, figures in results.items():
                ratio = figures.get("ratio_to_focus_stack") or figures.get("ratio_to_one_pair")
                extra = f", ratio {ratio:.2f}" if ratio else ""
                print(f"{case:6s} {name:16s} {figures['median_s']:.3f} s, {figures['peak_rss_mb']:.0f} MB{extra}")
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
