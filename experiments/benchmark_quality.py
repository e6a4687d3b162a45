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
flags.DEFINE_list("models", None, "Shipped models to evaluate (default: all of them).")
flags.DEFINE_list(
    "rule", [], "Also the default model with these FusionOptions fields changed, e.g. "
    "guided_radius=4,guided_eps=0.001.",
)
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


def scores_of(sample, fused, band) -> dict:
    """PSNR, boundary-band PSNR and SSIM of one fused image (NaN when a method gave none)."""
    from mfkeras.evaluation import reference

    if fused is None:
        return {"psnr": float("nan"), "band_psnr": float("nan"), "ssim": float("nan")}
    return {
        "psnr": reference.psnr(sample.truth, fused),
        "band_psnr": reference.boundary_band_psnr(sample.truth, fused, sample.labels, band),
        "ssim": reference.ssim(sample.truth, fused),
    }


def evaluate(samples, methods: dict, peers: dict, scratch: str) -> dict:
    """``{method: {metric: mean}}`` over the samples, and each method's failure count."""
    import numpy as np

    from mfkeras.io import images

    totals = {}
    for index, sample in enumerate(samples):
        frames = []
        for number, frame in enumerate(sample.frames):
            frames.append(os.path.join(scratch, f"s{index}_{number}.png"))
            images.write_image(frames[-1], frame)
        fused = {name: fuse(sample.frames) for name, fuse in methods.items()}
        fused["oracle"] = np.choose(sample.labels[..., None], sample.frames)
        for name, command in peers.items():
            out = os.path.join(scratch, f"s{index}_{name.replace(' ', '_')}.png")
            fused[name] = run_peer(command(frames, out), out, sample.truth.shape)
        for name, image in fused.items():
            totals.setdefault(name, []).append(scores_of(sample, image, FLAGS.band))
    def mean(values):
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {
        name: {
            **{metric: mean([row[metric] for row in rows]) for metric in ("psnr", "band_psnr", "ssim")},
            "failed": int(sum(np.isnan(row["psnr"]) for row in rows)),
        }
        for name, rows in totals.items()
    }


def sample_for(sources: list, index: int, frames: int):
    """Sample ``index``: from image ``index`` (cycled) with seed ``index``; an image that cannot
    be split into ``frames`` layers gives way to the next one, deterministically."""
    from mfkeras.evaluation import groundtruth
    from mfkeras.io import images

    for offset in range(len(sources)):
        try:
            image = images.read_image(sources[(index + offset) % len(sources)])
            return groundtruth.make_sample(image, frames, seed=index)
        except ValueError:
            continue
    raise ValueError(f"No development image splits into {frames} depth layers.")


def main(argv):
    del argv
    with cli.clean_errors("benchmark_quality"):
        from mfkeras import fusion
        from mfkeras.evaluation import groundtruth
        from mfkeras.io import images
        from mfkeras.network import zoo

        sources = [p for p in images.list_images(FLAGS.voc_dir) if groundtruth.is_development_image(p)]
        if not sources:
            raise ValueError(f"No development images in {FLAGS.voc_dir}.")
        names = FLAGS.models or zoo.available_models()
        models = {name: zoo.load_patch_model(name) for name in names}
        methods = {f"mfkeras {name}": (lambda frames, m=model: fusion.fuse(frames, m).fused)
                   for name, model in models.items()}
        if FLAGS.rule:
            changes = {key: type(getattr(fusion.FusionOptions(), key))(value)
                       for key, value in (item.split("=", 1) for item in FLAGS.rule)}
            options = fusion.FusionOptions(**changes)
            default = models.get(zoo.DEFAULT_MODEL) or zoo.load_patch_model()
            label = ", ".join(FLAGS.rule)
            methods[f"mfkeras {zoo.DEFAULT_MODEL} ({label})"] = (
                lambda frames: fusion.fuse(frames, default, options).fused
            )
        peers = peer_commands()
        start = time.perf_counter()
        report = {"machine": provenance.describe_machine(), "development_images": len(sources),
                  "band": FLAGS.band, "default_model": zoo.DEFAULT_MODEL}
        scratch = tempfile.mkdtemp(prefix="mfkeras-quality-")
        try:
            for kind, count, frames in (("pairs", FLAGS.pairs, 2), ("stacks", FLAGS.stacks, 5)):
                samples = (sample_for(sources, i, frames) for i in range(count))
                report[kind] = {"count": count, "methods": evaluate(samples, methods, peers, scratch)}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report["seconds"] = time.perf_counter() - start
        for kind in ("pairs", "stacks"):
            for name, figures in report[kind]["methods"].items():
                print(f"{kind:6s} {name:28s} PSNR {figures['psnr']:.2f} dB, band {figures['band_psnr']:.2f} dB, "
                      f"SSIM {figures['ssim']:.4f}" + (f", {figures['failed']} failed" if figures["failed"] else ""))
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
