"""Fused quality against ground truth on the generated development split.

Builds the split deterministically from the all-in-focus images whose names
`mfkeras.evaluation.groundtruth.is_development_image` selects (`mfkeras-train
--exclude_development` keeps them out of training): --pairs pairs and --stacks five-frame
stacks, sample i from image i (cycled)
with seed i. Every method fuses every sample; PSNR, boundary-band PSNR (k = --band) and SSIM
against the all-in-focus image are averaged. Methods: each shipped model with the default
rule, the oracle (the true focus map, an upper bound for selection), and focus-stack, enfuse
and StackMFF V3 (openfocus) when their executables are given. Prints and writes JSON.

Example:
  python experiments/benchmark_quality.py --voc_dir=../shared/data/voc2012-train \\
      --focus_stack=/path/to/focus-stack --enfuse=enfuse --openfocus=/tmp/openfocus/bin/openfocus
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402

flags.DEFINE_string("voc_dir", str(REPO_ROOT.parent / "shared/data/voc2012-train"), "All-in-focus images.")
flags.DEFINE_integer("pairs", 300, "Generated pairs.")
flags.DEFINE_integer("stacks", 50, "Generated five-frame stacks.")
flags.DEFINE_integer("band", 8, "Half width k of the boundary band, pixels.")
flags.DEFINE_multi_enum(
    "kernels", ["disc", "gaussian"], ["disc", "gaussian", "hexagon", "ring"],
    "Defocus kernels the samples are rendered with, one flag each (groundtruth.LENS_KERNELS; "
    "hexagon and ring lie outside the family halo removal fits).",
)
flags.DEFINE_list("models", None, "Shipped models to evaluate (default: all of them).")
flags.DEFINE_multi_string(
    "rule", [], "Also the default model with these FusionOptions fields changed, e.g. "
    "guided_radius=4,guided_eps=0.001 (repeatable: one row each).",
)
flags.DEFINE_list(
    "time_pair", [str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_A.jpg"),
                  str(REPO_ROOT.parent / "shared/data/lytro/lytro_01_B.jpg")],
    "The 520x520 pair whose whole-process fusion time is given beside each row (empty: not timed).",
)
flags.DEFINE_integer("time_repeats", 3, "Whole-process runs per method (median, after a warm-up).")
flags.DEFINE_string("figure", None, "PNG of magnified boundary crops of the first pairs (none when unset).")
flags.DEFINE_integer("figure_pairs", 4, "Pairs in --figure.")
flags.DEFINE_list("figure_methods", [], "Methods in --figure (default: every method).")
flags.DEFINE_string("focus_stack", None, "focus-stack executable (skipped when absent).")
flags.DEFINE_string("enfuse", None, "enfuse executable (skipped when absent).")
flags.DEFINE_string("openfocus", None, "openfocus executable, for StackMFF V3 (skipped when absent).")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_quality.json"), "Where to write.")
FLAGS = flags.FLAGS


def peer_commands() -> dict:
    """``{name: function(frame paths, output path) -> argv}`` for the peers that were given."""
    commands = {}
    if FLAGS.focus_stack and shutil.which(FLAGS.focus_stack):
        # The frames are registered: keep the size focus-stack would crop after its own alignment.
        commands["focus-stack"] = lambda frames, out: [
            FLAGS.focus_stack, "--align-keep-size", f"--output={out}", *frames]
    if FLAGS.enfuse and shutil.which(FLAGS.enfuse):
        commands["enfuse"] = lambda frames, out: [
            FLAGS.enfuse, "--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1",
            "--hard-mask", "--contrast-window-size=5", f"--output={out}", *frames]
    if FLAGS.openfocus and shutil.which(FLAGS.openfocus):
        commands["StackMFF V3"] = lambda frames, out: [
            FLAGS.openfocus, "-i", *frames, "-o", out, "-m", "stackmffv3", "--cpu"]
    return commands


def run_peer(command: list, output: str, shape: tuple):
    """Runs a peer and reads its result; None if it failed or changed the image size."""
    import warnings

    from mfkeras.io import images

    if subprocess.run(command, capture_output=True).returncode != 0 or not os.path.isfile(output):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # enfuse writes an alpha channel; read_image drops it
        fused = images.read_image(output)
    return fused if fused.shape == shape and fused.dtype.name == "uint8" else None


def evaluate(samples, methods: dict, peers: dict, scratch: str, keep: int = 0) -> tuple:
    """``{method: {metric: mean}}`` over the samples with each method's failure count, and the
    first ``keep`` samples with every method's fused image (for the figure)."""
    import numpy as np

    from mfkeras.evaluation import reference
    from mfkeras.fusion import blending
    from mfkeras.io import images

    totals, kept = {}, []
    for index, sample in enumerate(samples):
        frames = []
        for number, frame in enumerate(sample.frames):
            frames.append(os.path.join(scratch, f"s{index}_{number}.png"))
            images.write_image(frames[-1], frame)
        fused = {name: fuse(sample.frames) for name, fuse in methods.items()}
        fused["oracle"] = blending.select_by_labels(sample.labels, sample.frames)
        for name, command in peers.items():
            out = os.path.join(scratch, f"s{index}_{name.replace(' ', '_')}.png")
            fused[name] = run_peer(command(frames, out), out, sample.truth.shape)
        for name, image in fused.items():
            scores = reference.truth_scores(sample.truth, image, sample.labels, FLAGS.band)
            totals.setdefault(name, []).append(scores)
        if index < keep:
            kept.append((sample, fused))

    def mean(values):
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {
        name: {
            **{metric: mean([row[metric] for row in rows]) for metric in ("psnr", "band_psnr", "ssim")},
            "failed": int(sum(np.isnan(row["psnr"]) for row in rows)),
        }
        for name, rows in totals.items()
    }, kept


def rule_flags(rule: str) -> list:
    """The mfkeras-fuse flags of one --rule (its keys are FusionOptions fields and flags alike)."""
    return [f"--{item}" for item in rule.split(",")] if rule else []


def whole_process_seconds(command: list, repeats: int) -> float:
    """Median wall time of a command over ``repeats`` runs after a warm-up (NaN if it fails)."""
    times = []
    for run in range(repeats + 1):
        start = time.perf_counter()
        if subprocess.run(command, capture_output=True).returncode != 0:
            return float("nan")
        if run:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def pair_times(model_rows: dict, peers: dict, scratch: str) -> dict:
    """Whole-process seconds of one --time_pair fusion for every method row."""
    if len(FLAGS.time_pair) != 2 or not all(os.path.isfile(p) for p in FLAGS.time_pair):
        return {}
    out = os.path.join(scratch, "timed.png")
    fuse = [sys.executable, "-m", "mfkeras.cli.fuse", *FLAGS.time_pair, "-o", out, "--overwrite", "--quiet"]
    seconds = {name: whole_process_seconds(fuse + extra, FLAGS.time_repeats) for name, extra in model_rows.items()}
    for name, command in peers.items():
        seconds[name] = whole_process_seconds(command(FLAGS.time_pair, out), FLAGS.time_repeats)
    return seconds


def crop_figure(kept: list, path: str, methods: list, side: int = 40, zoom: int = 4) -> None:
    """Magnified crops at the focus boundary where the methods differ most, one row per pair."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mfkeras.evaluation import reference

    columns = ["ground truth", *methods]
    figure = Figure(figsize=(1.9 * len(columns), 2.4 * len(kept)))
    FigureCanvasAgg(figure)
    for row, (sample, fused) in enumerate(kept):
        band = reference.boundary_band(sample.labels, 2)
        spread = np.zeros(sample.labels.shape)
        for name in methods:
            if fused.get(name) is not None:
                spread += np.abs(fused[name].astype(float) - sample.truth).mean(axis=-1)
        spread = np.where(band, cv2_box(spread, side // 2), -1.0)
        top, left = np.unravel_index(np.argmax(spread), spread.shape)
        top = int(np.clip(top - side // 2, 0, sample.truth.shape[0] - side))
        left = int(np.clip(left - side // 2, 0, sample.truth.shape[1] - side))
        for column, name in enumerate(columns):
            image = sample.truth if name == "ground truth" else fused.get(name)
            axis = figure.add_subplot(len(kept), len(columns), row * len(columns) + column + 1)
            axis.axis("off")
            if image is None:
                continue
            crop = image[top : top + side, left : left + side]
            axis.imshow(np.kron(crop, np.ones((zoom, zoom, 1), np.uint8)), interpolation="nearest")
            label = textwrap.fill(name, 24)  # long rule labels would run into the next column
            if name != "ground truth":
                label += f"\n{reference.psnr(sample.truth[top:top + side, left:left + side], crop):.1f} dB"
            axis.set_title(label, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def cv2_box(values, radius: int):
    """Mean over a (2r+1)^2 window."""
    import cv2

    return cv2.blur(values, (2 * radius + 1, 2 * radius + 1))


def main(argv):
    del argv
    with cli.clean_errors("benchmark_quality"):
        from mfkeras import fusion
        from mfkeras.evaluation import groundtruth
        from mfkeras.network import zoo

        config = groundtruth.DefocusConfig(kernels=tuple(FLAGS.kernels))
        sources = groundtruth.development_images(FLAGS.voc_dir)
        if not sources:
            raise ValueError(f"No development images in {FLAGS.voc_dir}.")
        names = FLAGS.models or zoo.available_models()
        models = {name: zoo.load_patch_model(name) for name in names}
        methods = {f"mfkeras {name}": (lambda frames, m=model: fusion.fuse(frames, m).fused)
                   for name, model in models.items()}
        model_rows = {f"mfkeras {name}": ["--model", name] for name in names}
        default = models.get(zoo.DEFAULT_MODEL) or zoo.load_patch_model()
        for rule in FLAGS.rule:
            options = fusion.FusionOptions.from_text(rule)
            label = f"mfkeras {zoo.DEFAULT_MODEL} ({rule})"
            methods[label] = lambda frames, o=options: fusion.fuse(frames, default, o).fused
            model_rows[label] = rule_flags(rule)
        peers = peer_commands()
        start = time.perf_counter()
        report = {"machine": provenance.describe_machine(), "development_images": len(sources),
                  "band": FLAGS.band, "kernels": list(config.kernels), "default_model": zoo.DEFAULT_MODEL}
        scratch = tempfile.mkdtemp(prefix="mfkeras-quality-")
        try:
            for kind, count, frames in (("pairs", FLAGS.pairs, 2), ("stacks", FLAGS.stacks, 5)):
                samples = (groundtruth.development_sample(sources, i, frames, config) for i in range(count))
                keep = FLAGS.figure_pairs if (FLAGS.figure and kind == "pairs") else 0
                figures, kept = evaluate(samples, methods, peers, scratch, keep)
                report[kind] = {"count": count, "methods": figures}
                if kept:
                    crop_figure(kept, FLAGS.figure, FLAGS.figure_methods or [*methods, *peers])
            report["pair_seconds"] = pair_times(model_rows, peers, scratch)
            report["time_pair"] = FLAGS.time_pair
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report["seconds"] = time.perf_counter() - start
        for kind in ("pairs", "stacks"):
            for name, figures in report[kind]["methods"].items():
                seconds = report["pair_seconds"].get(name)
                print(f"{kind:6s} {name:28s} PSNR {figures['psnr']:.2f} dB, band {figures['band_psnr']:.2f} dB, "
                      f"SSIM {figures['ssim']:.4f}" + (f", {figures['failed']} failed" if figures["failed"] else "")
                      + (f", {seconds:.2f} s per 520x520 pair" if seconds is not None else ""))
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
