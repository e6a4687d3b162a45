"""Do the source-based fusion metrics agree with ground truth? And what lifts NMI on JPEG files?

On the development split's pairs (`mfkeras.evaluation.groundtruth`, never trained on), every
method fuses every pair, losslessly and, with --jpeg_quality, under the Lytro protocol (sources
JPEG-encoded like the Lytro files, every fused image JPEG-encoded before scoring). Each fused
image gets PSNR and boundary-band PSNR against the all-in-focus truth, and the --metrics that
look only at the sources. Rows: the truth itself, selection by the true focus map, the default
(as shipped, without halo removal, as a hard selection by its verified decision, and that
selection snapped to JPEG's 8x8 blocks), Liu et al.'s released weights (--liu_mat) and the
--baselines. Per metric it reports each row's mean, the truth's rank, and its concordance with
PSNR (`mfkeras.evaluation.agreement.concordance`: the share of row pairs, per sample, that the
metric orders as PSNR does).

With --lytro_dir, the same variants of the default are scored on the Lytro pairs under the
JPEG protocol beside the published DCT-domain methods of --published_dir, which select whole
8x8 blocks: the probe that tells block alignment apart from fusion quality.

Example:
  python experiments/benchmark_metric_agreement.py --pairs=300
"""

import functools
import math
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

SHARED = REPO_ROOT.parent / "shared"
SOURCE_METRICS = ["CE", "QABF", "QABF_L", "MI", "NMI", "QY", "QCB", "QW", "QP", "SSIM"]
# The published Lytro results that choose whole 8x8 DCT blocks, and Liu et al.'s CNN.
BLOCK_METHODS = ["DCT_EOL", "SVDDCT", "DCT_Corr", "CNN"]
TRUTH, ORACLE = "ground truth", "true focus map, selection"

flags.DEFINE_string("voc_dir", str(SHARED / "data/voc2012-train"), "All-in-focus images.")
flags.DEFINE_integer("pairs", 300, "Development pairs.", lower_bound=1)
flags.DEFINE_integer("band", 8, "Half width k of the boundary band, pixels.", lower_bound=1)
flags.DEFINE_integer("jpeg_quality", 75, "Also score under the JPEG protocol at this quality (0: lossless only).",
                     lower_bound=0, upper_bound=100)
flags.DEFINE_string("liu_mat", str(SHARED / "ref/liu2017/cnnmodel.mat"),
                    "Liu et al.'s released cnnmodel.mat (its row is skipped when absent).")
flags.DEFINE_list("baselines", ["dwt"], "Classical baselines to add (mfkeras-evaluate's names).")
flags.DEFINE_list("metrics", SOURCE_METRICS, "Source-based metrics to score (mfkeras.evaluation.metrics).")
flags.DEFINE_string("lytro_dir", str(SHARED / "data/lytro"), "Lytro pairs for the block probe (skipped when absent).")
flags.DEFINE_string("published_dir", str(SHARED / "data/lytro-published"), "Published Lytro results.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_metric_agreement.json"),
                    "Where to write.")
FLAGS = flags.FLAGS


def default_variants(model) -> dict:
    """``{row: function(frames) -> fused}`` for the default model: as shipped, without halo
    removal, as a hard selection by its verified decision, and that selection on 8x8 blocks."""
    import numpy as np

    from mfkeras import fusion
    from mfkeras.evaluation import agreement

    without_halo = fusion.FusionOptions(halo_removal=False)
    cache = {}

    def shipped(frames):
        cache["result"] = fusion.fuse(frames, model)
        return cache["result"].fused

    def selection(frames, block=1):
        decision = cache["result"].decision.astype(bool)  # the call to `shipped` just before
        return np.where(agreement.block_aligned(decision, block)[..., None], frames[0], frames[1])

    return {
        "mfkeras default": shipped,
        "mfkeras default, no halo removal": lambda frames: fusion.fuse(frames, model, without_halo).fused,
        "mfkeras default, selection": selection,
        "mfkeras default, 8x8-block selection": lambda frames: selection(frames, 8),
    }


def fused_rows(methods: dict, frames: list, encode) -> dict:
    """Every method's fused image of ``frames``, passed through ``encode`` (the protocol)."""
    return {name: encode(fuse(frames)) for name, fuse in methods.items()}


def score_rows(fused: dict, frames: list, truth, labels, metric_names: list) -> dict:
    """``{row: {metric: value}}``: PSNR and band PSNR against the truth, and the source metrics."""
    from mfkeras.evaluation import metrics, reference

    scored = {}
    for name, image in fused.items():
        row = {"psnr": reference.psnr(truth, image),
               "band_psnr": reference.boundary_band_psnr(truth, image, labels, FLAGS.band)}
        row.update(metrics.evaluate_all(frames[0], frames[1], image, metric_names))
        scored[name] = row
    return scored


def summarise(per_sample: list, metric_names: list) -> dict:
    """Means per row, the truth's rank by each metric's mean, and each metric's concordance
    with PSNR and with band PSNR over all rows and samples."""
    import numpy as np

    from mfkeras.evaluation import agreement, metrics, report

    rows = list(per_sample[0])
    columns = ["psnr", "band_psnr", *metric_names]
    table = {c: np.array([[sample[r][c] for r in rows] for sample in per_sample]) for c in columns}
    means = {r: {c: float(np.nanmean(table[c][:, i])) for c in columns} for i, r in enumerate(rows)}
    if not np.isfinite(means[TRUTH]["psnr"]):  # lossless: the truth against itself; JSON has no inf
        means[TRUTH]["psnr"] = means[TRUTH]["band_psnr"] = None
    summary = {"rows": rows, "means": means, "truth_rank": {}, "concordance_psnr": {}, "concordance_band": {}}
    for name in metric_names:
        higher = metrics.METRICS[name][0].higher_is_better
        signed = {r: {name: v[name] if higher else -v[name]} for r, v in means.items()}
        summary["truth_rank"][name] = next(p for p, r, _ in report.rank(signed, name) if r == TRUTH)
        summary["concordance_psnr"][name] = agreement.concordance(table[name], table["psnr"], higher)
        summary["concordance_band"][name] = agreement.concordance(table[name], table["band_psnr"], higher)
    return summary


def development_run(methods: dict, protocols: dict, metric_names: list) -> dict:
    """Scores every method on --pairs development pairs under each protocol."""
    import numpy as np

    from mfkeras.evaluation import groundtruth

    sources = groundtruth.development_images(FLAGS.voc_dir)
    if not sources:
        raise ValueError(f"No development images in {FLAGS.voc_dir}.")
    per_protocol = {name: [] for name in protocols}
    start = time.perf_counter()
    for index in range(FLAGS.pairs):
        sample = groundtruth.development_sample(sources, index, 2)
        for protocol, encode in protocols.items():
            frames = [encode(frame) for frame in sample.frames]
            fused = {TRUTH: encode(sample.truth), ORACLE: encode(np.choose(sample.labels[..., None], frames))}
            fused.update(fused_rows(methods, frames, encode))
            per_protocol[protocol].append(score_rows(fused, frames, sample.truth, sample.labels, metric_names))
        if (index + 1) % 25 == 0:
            print(f"{index + 1}/{FLAGS.pairs} pairs, {time.perf_counter() - start:.0f} s", flush=True)
    return {protocol: summarise(rows, metric_names) for protocol, rows in per_protocol.items()}


def lytro_probe(model, encode, metric_names: list) -> dict:
    """Means over the Lytro pairs of the default's variants (JPEG protocol) and the published
    block-selecting methods as stored; empty when --lytro_dir is absent."""
    import numpy as np

    from mfkeras.evaluation import metrics, pairs
    from mfkeras.io import images

    if not os.path.isdir(FLAGS.lytro_dir):
        return {}
    usable = [p for p in pairs.find_pairs(FLAGS.lytro_dir) if p.skip_reason is None]
    published = pairs.find_precomputed(FLAGS.published_dir, [p.name for p in usable]) if os.path.isdir(
        FLAGS.published_dir) else {}
    variants = {k: v for k, v in default_variants(model).items() if "no halo" not in k}
    scores = {}
    for pair in usable:
        frames = [images.read_image(path) for path in pair.paths]
        fused = fused_rows(variants, frames, encode)
        for method in BLOCK_METHODS:
            if pair.name in published.get(method, {}):
                fused[method] = images.read_image(published[method][pair.name])
        for name, image in fused.items():
            scores.setdefault(name, []).append(metrics.evaluate_all(frames[0], frames[1], image, metric_names))
    return {name: {m: float(np.mean([row[m] for row in rows])) for m in metric_names} for name, rows in scores.items()}


def print_summary(protocol: str, summary: dict, metric_names: list) -> None:
    """One line per row (means), then the truth's rank and the concordances."""
    print(f"\n{protocol}: " + " ".join(f"{c:>7s}" for c in ["PSNR", "band", *metric_names]))
    for row in summary["rows"]:
        values = {c: math.inf if v is None else v for c, v in summary["means"][row].items()}
        print(f"{row[:36]:36s} " + " ".join(f"{values[c]:7.4f}" if c not in ("psnr", "band_psnr")
                                             else f"{values[c]:7.2f}" for c in ["psnr", "band_psnr", *metric_names]))
    for label, key, form in (("rank of the ground truth", "truth_rank", "7d"),
                             ("concordance with PSNR", "concordance_psnr", "7.3f"),
                             ("concordance with band PSNR", "concordance_band", "7.3f")):
        print(f"{label:36s} {'':15s} " + " ".join(format(summary[key][m], form) for m in metric_names))


def main(argv):
    del argv
    with cli.clean_errors("benchmark_metric_agreement"):
        from mfkeras.evaluation import metrics, runner
        from mfkeras.network import zoo

        unknown = [m for m in FLAGS.metrics if m not in metrics.METRICS or not metrics.METRICS[m][0].needs_sources]
        if unknown:
            raise ValueError(f"--metrics must name source-based metrics ({', '.join(SOURCE_METRICS)}). "
                             f"Received: {','.join(unknown)}")
        baselines = [runner.resolve_method(name) for name in FLAGS.baselines]
        model = zoo.load_patch_model()
        methods = default_variants(model)
        if os.path.isfile(FLAGS.liu_mat):
            released = runner.resolve_method(runner.LIU_MAT_PREFIX + FLAGS.liu_mat)
            methods[released.name] = released.fuse
        methods.update({method.name: method.fuse for method in baselines})
        protocols = {"lossless": lambda image: image}
        jpeg = functools.partial(runner.jpeg_roundtrip, quality=FLAGS.jpeg_quality) if FLAGS.jpeg_quality else None
        if jpeg is not None:
            protocols[f"jpeg{FLAGS.jpeg_quality}"] = jpeg
        start = time.perf_counter()
        report = {"machine": provenance.describe_machine(), "pairs": FLAGS.pairs, "band": FLAGS.band,
                  "default_model": zoo.DEFAULT_MODEL, "metrics": FLAGS.metrics}
        report["development"] = development_run(methods, protocols, FLAGS.metrics)
        if jpeg is not None:
            report["lytro_jpeg"] = lytro_probe(model, jpeg, FLAGS.metrics)
        report["seconds"] = time.perf_counter() - start
        for protocol, summary in report["development"].items():
            print_summary(protocol, summary, FLAGS.metrics)
        if report.get("lytro_jpeg"):
            print(f"\nLytro, JPEG-{FLAGS.jpeg_quality}: " + " ".join(f"{m:>7s}" for m in FLAGS.metrics))
            for name, values in report["lytro_jpeg"].items():
                print(f"{name[:36]:36s} " + " ".join(f"{values[m]:7.4f}" for m in FLAGS.metrics))
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
