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
# Published Lytro results scored beside the default's rows: the three that choose whole 8x8
# DCT blocks, and Liu et al.'s CNN (pixel selection with a wide guided-filter blend).
PUBLISHED_METHODS = ["DCT_EOL", "SVDDCT", "DCT_Corr", "CNN"]
TRUTH, ORACLE = "ground truth", "true focus map, selection"


def source_metrics() -> list:
    """The metrics that compare a fused image with its sources (`metrics.METRICS`' order)."""
    from mfkeras.evaluation import metrics

    return [name for name, (info, _) in metrics.METRICS.items() if info.needs_sources]


flags.DEFINE_string("voc_dir", str(SHARED / "data/voc2012-train"), "All-in-focus images.")
flags.DEFINE_integer("pairs", 300, "Development pairs.", lower_bound=1)
flags.DEFINE_integer("band", 8, "Half width k of the boundary band, pixels.", lower_bound=1)
flags.DEFINE_integer("jpeg_quality", 75, "Also score under the JPEG protocol at this quality (0: lossless only).",
                     lower_bound=0, upper_bound=100)
flags.DEFINE_string("liu_mat", str(SHARED / "ref/liu2017/cnnmodel.mat"),
                    "Liu et al.'s released cnnmodel.mat (empty: no row; the default path is skipped when absent).")
flags.DEFINE_list("baselines", ["dwt"], "Classical baselines to add (mfkeras-evaluate's names).")
flags.DEFINE_list("metrics", [], "Source-based metrics to score (default: every one, "
                  "CE,QABF,QABF_L,MI,NMI,QY,QCB,QW,QP,SSIM).")
flags.DEFINE_string("lytro_dir", str(SHARED / "data/lytro"),
                    "Lytro pairs for the block probe (empty: none; the default path is skipped when absent).")
flags.DEFINE_string("published_dir", str(SHARED / "data/lytro-published"), "Published Lytro results.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_metric_agreement.json"),
                    "Where to write.")
FLAGS = flags.FLAGS


def default_rows(model, frames: list) -> dict:
    """The default's four rows for one pair: as shipped, without halo removal, as a hard
    selection by its verified decision, and that selection snapped to 8x8 blocks."""
    import numpy as np

    from mfkeras import fusion
    from mfkeras.evaluation import agreement
    from mfkeras.fusion import blending

    result = fusion.fuse(frames, model)
    without_halo = fusion.FusionOptions(halo_removal=False)
    snapped = agreement.block_aligned(result.source_index == 0, 8)  # source_index: the verified decision
    return {"mfkeras default": result.fused,
            "mfkeras default, no halo removal": fusion.fuse(frames, model, without_halo).fused,
            "mfkeras default, selection": blending.select_by_labels(result.source_index, frames),
            "mfkeras default, 8x8-block selection": blending.select_by_labels(np.where(snapped, 0, 1), frames)}


def fused_rows(model, methods: dict, frames: list, encode) -> dict:
    """The default's rows and every other method's fused image of ``frames``, each passed
    through ``encode`` (the protocol)."""
    fused = default_rows(model, frames)
    fused.update({name: fuse(frames) for name, fuse in methods.items()})
    return {name: encode(image) for name, image in fused.items()}


def score_rows(fused: dict, frames: list, truth, labels, band: int, metric_names: list) -> dict:
    """``{row: {column: value}}``: PSNR, band PSNR and SSIM against the truth, and the source metrics."""
    from mfkeras.evaluation import metrics, reference

    return {name: {**reference.truth_scores(truth, image, labels, band),
                   **metrics.evaluate_all(frames[0], frames[1], image, metric_names)}
            for name, image in fused.items()}


def development_run(model, methods: dict, protocols: dict, metric_names: list, voc_dir: str, pairs: int,
                    band: int) -> dict:
    """Scores every row on ``pairs`` development pairs under each protocol: ``{protocol: summary}``."""
    from mfkeras.evaluation import agreement, groundtruth
    from mfkeras.fusion import blending

    sources = groundtruth.development_images(voc_dir)
    if not sources:
        raise ValueError(f"No development images in {voc_dir}.")
    per_protocol = {name: [] for name in protocols}
    start = time.perf_counter()
    for index in range(pairs):
        sample = groundtruth.development_sample(sources, index, 2)
        for protocol, encode in protocols.items():
            frames = [encode(frame) for frame in sample.frames]
            fused = {TRUTH: encode(sample.truth), ORACLE: encode(blending.select_by_labels(sample.labels, frames))}
            fused.update(fused_rows(model, methods, frames, encode))
            per_protocol[protocol].append(score_rows(fused, frames, sample.truth, sample.labels, band, metric_names))
        if (index + 1) % 25 == 0:
            print(f"{index + 1}/{pairs} pairs, {time.perf_counter() - start:.0f} s", flush=True)
    return {protocol: agreement.agreement_summary(rows, metric_names, TRUTH) for protocol, rows in per_protocol.items()}


def lytro_probe(model, encode, metric_names: list, lytro_dir: str, published_dir: str) -> dict:
    """Means over the Lytro pairs of the default's rows (``encode``: the JPEG protocol) and of
    the `PUBLISHED_METHODS` as stored, each with the pairs it covers and the NaN values it left out."""
    from mfkeras.evaluation import agreement, metrics, pairs
    from mfkeras.io import images

    usable = [p for p in pairs.find_pairs(lytro_dir) if p.skip_reason is None]
    if not usable:
        raise ValueError(f"No usable Lytro pairs in {lytro_dir}.")
    published = pairs.find_precomputed(published_dir, [p.name for p in usable]) if published_dir else {}
    scores = {}
    for pair in usable:
        frames = [images.read_image(path) for path in pair.paths]
        fused = fused_rows(model, {}, frames, encode)
        for method in PUBLISHED_METHODS:
            if pair.name in published.get(method, {}):
                fused[method] = images.read_image(published[method][pair.name])
        for name, image in fused.items():
            scores.setdefault(name, []).append(metrics.evaluate_all(frames[0], frames[1], image, metric_names))
    summary = {}
    for name, rows in scores.items():
        figures = {m: agreement.finite_mean([row[m] for row in rows]) for m in metric_names}
        summary[name] = {"pairs": len(rows), **{m: mean for m, (mean, _) in figures.items()}}
        left_out = {m: count for m, (_, count) in figures.items() if count}
        if left_out:
            summary[name]["left_out"] = left_out
    return summary


def print_summary(protocol: str, summary: dict, metric_names: list) -> None:
    """One line per row (means), then the truth's rank and the concordances."""
    print(f"\n{protocol}: " + " ".join(f"{c:>7s}" for c in ["PSNR", "band", *metric_names]))
    for row in summary["rows"]:
        values = summary["means"][row]
        print(f"{row[:36]:36s} " + " ".join(
            f"{'-':>7s}" if values[c] is None else f"{values[c]:7.2f}" if c in ("psnr", "band_psnr")
            else f"{values[c]:7.4f}" for c in ["psnr", "band_psnr", *metric_names]))
    for label, key, form in (("rank of the ground truth", "truth_rank", "7d"),
                             ("concordance with PSNR", "concordance_psnr", "7.3f"),
                             ("concordance with band PSNR", "concordance_band", "7.3f")):
        print(f"{label:36s} {'':15s} " + " ".join(
            f"{'-':>7s}" if summary[key][m] is None else format(summary[key][m], form) for m in metric_names))


def optional_path(name: str, kind: str):
    """The path a flag names, None when empty, or when it is the default and absent; an error
    when it was given and is absent."""
    path = FLAGS[name].value
    exists = os.path.isfile(path) if kind == "file" else os.path.isdir(path)
    if not path or (not exists and not FLAGS[name].present):
        return None
    if not exists:
        raise ValueError(f"--{name} is not a {kind}. Received: {path}")
    return path


def main(argv):
    del argv
    with cli.clean_errors("benchmark_metric_agreement"):
        from mfkeras.evaluation import runner
        from mfkeras.network import zoo

        names = FLAGS.metrics or source_metrics()
        unknown = [m for m in names if m not in source_metrics()]
        if unknown:
            raise ValueError(f"--metrics must name source-based metrics ({','.join(source_metrics())}). "
                             f"Received: {','.join(unknown)}")
        liu_mat, lytro_dir = optional_path("liu_mat", "file"), optional_path("lytro_dir", "directory")
        published_dir = optional_path("published_dir", "directory") if lytro_dir else None
        baselines = [runner.resolve_method(name) for name in FLAGS.baselines]
        model = zoo.load_patch_model()
        methods = {}
        if liu_mat:
            released = runner.resolve_method(runner.LIU_MAT_PREFIX + liu_mat)
            methods[released.name] = released.fuse
        methods.update({method.name: method.fuse for method in baselines})
        protocols = {"lossless": lambda image: image}
        jpeg = functools.partial(runner.jpeg_roundtrip, quality=FLAGS.jpeg_quality) if FLAGS.jpeg_quality else None
        if jpeg is not None:
            protocols[f"jpeg{FLAGS.jpeg_quality}"] = jpeg
        start = time.perf_counter()
        report = {"machine": provenance.describe_machine(), "pairs": FLAGS.pairs, "band": FLAGS.band,
                  "default_model": zoo.DEFAULT_MODEL, "metrics": names, "jpeg_quality": FLAGS.jpeg_quality,
                  "voc_dir": FLAGS.voc_dir, "liu_mat": liu_mat, "baselines": FLAGS.baselines,
                  "lytro_dir": lytro_dir if jpeg else None, "published_dir": published_dir if jpeg else None}
        report["development"] = development_run(model, methods, protocols, names, FLAGS.voc_dir, FLAGS.pairs,
                                                FLAGS.band)
        if jpeg is not None and lytro_dir:
            report["lytro_jpeg"] = lytro_probe(model, jpeg, names, lytro_dir, published_dir)
        report["seconds"] = time.perf_counter() - start
        for protocol, summary in report["development"].items():
            print_summary(protocol, summary, names)
        if report.get("lytro_jpeg"):
            print(f"\nLytro, JPEG-{FLAGS.jpeg_quality}: " + " ".join(f"{m:>7s}" for m in names))
            for name, values in report["lytro_jpeg"].items():
                print(f"{name[:36]:36s} " + " ".join(
                    f"{'-':>7s}" if values[m] is None else f"{values[m]:7.4f}" for m in names))
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
