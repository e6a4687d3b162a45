"""Scores fusion methods on a folder of source pairs (console script `mfkeras-evaluate`).

Writes into --output_dir: per_pair.csv (one row per pair and method), summary.md (means,
best in bold, like the seed's Table 1, and rankings), bar_chart.png (the seed's Fig. 7),
gallery_<pair>.png (Figs. 5-6), run.json (the settings) and, with --save_fused, every
scored image in fused/<pair>_<method>.png (after the JPEG round trip with --jpeg_quality).

Examples:
  mfkeras-evaluate --dataset_dir ../shared/data/grayscale --methods dwt,lpt,liu_mat:cnnmodel.mat \
      --metrics EN,AG,SD,SF --output_dir experiments/results/grayscale
  mfkeras-evaluate --dataset_dir ../shared/data/lytro --methods mfkeras:li2018 \
      --precomputed_dir ../shared/data/lytro-published --jpeg_quality 75 \
      --output_dir experiments/results/lytro_published
"""

import json
import os
import sys
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mfkeras.cli import common as cli  # noqa: E402

PROGRAM = "mfkeras-evaluate"
OUTPUT_FILES = ("per_pair.csv", "summary.md", "bar_chart.png", "run.json")

flags.DEFINE_string("dataset_dir", None, "Folder of source pairs <name>_A.*/<name>_B.* (or _1/_2).")
flags.DEFINE_list(
    "methods",
    [],
    "Methods to run: dwt, lpt, dtcwt, nsct, nsst, pcnn, mfkeras:<shipped name or .keras file>, "
    "liu_mat:<path to cnnmodel.mat>.",
)
flags.DEFINE_multi_string(
    "precomputed_dir", [], "Folder of fused images <pair>_<METHOD>.* to score as stored (repeatable, or comma-separated)."
)
flags.DEFINE_list("metrics", [], "Metric columns (default: all of mfkeras.evaluation.metrics.METRICS).")
flags.DEFINE_integer(
    "jpeg_quality", None, "Encode our fused images as JPEG (4:2:0) at this quality before scoring; default lossless."
)
flags.DEFINE_string("output_dir", None, "Directory for the CSV, Markdown and PNG outputs (created if needed).")
flags.DEFINE_string("gallery_pair", None, "Pair shown in the gallery (default: the first usable pair).")
flags.DEFINE_list("inset_box", [], "Gallery inset top,left,height,width in pixels (default: where methods differ most).")
flags.DEFINE_list("rank_by", ["QABF", "NMI"], "Metrics to rank the methods by (those among --metrics).")
flags.DEFINE_integer("limit", None, "Use only the first N pairs (for quick runs).")
flags.DEFINE_bool("save_fused", False, "Also write every scored image to <output_dir>/fused/.")
flags.DEFINE_bool("progress", True, "Show a progress bar over the pairs.")
flags.DEFINE_bool("overwrite", False, "Replace outputs of an earlier run in --output_dir.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        with cli.clean_errors(PROGRAM):
            raise ValueError(f"Unexpected arguments (flags need --): {' '.join(argv[1:])}")
    with cli.clean_errors(PROGRAM):
        # Everything is checked before TensorFlow is imported: errors come fast and alone.
        from mfkeras.evaluation import pairs as source_pairs
        from mfkeras.evaluation import runner
        from mfkeras.io import images
        from mfkeras.evaluation import metrics

        settings = _check_flags(metrics)
        pairs = source_pairs.find_pairs(FLAGS.dataset_dir)
        if FLAGS.limit is not None:
            pairs = pairs[: FLAGS.limit]
        usable = [pair.name for pair in pairs if pair.ok]
        precomputed = {}
        for folder in settings["precomputed_dirs"]:
            found = source_pairs.find_precomputed(folder, usable)
            if not found:
                raise images.ImageError(f"No fused images named <pair>_<METHOD>.* for the dataset's pairs in {folder}")
            clashes = sorted(set(found) & set(precomputed))
            if clashes:
                raise ValueError(f"Methods {clashes} appear in more than one --precomputed_dir.")
            precomputed.update(found)
        labels = [runner.validate_method_spec(spec) for spec in FLAGS.methods]
        clashes = sorted({label for label in labels + list(precomputed) if (labels + list(precomputed)).count(label) > 1})
        if clashes:
            raise ValueError(f"Method names must be unique. Received twice: {clashes}")
        if not labels and not precomputed:
            raise ValueError("Nothing to evaluate: give --methods and/or --precomputed_dir.")
        gallery_pair = _gallery_pair(pairs)
        output_dir = FLAGS.output_dir
        os.makedirs(output_dir, exist_ok=True)
        fused_dir = os.path.join(output_dir, "fused")
        if FLAGS.save_fused:
            os.makedirs(fused_dir, exist_ok=True)

        methods = [runner.resolve_method(spec) for spec in FLAGS.methods]
        kept = {}

        def on_fused(pair, method, fused):
            if gallery_pair is not None and pair.name == gallery_pair.name:
                kept[method] = fused
            if FLAGS.save_fused and method in labels:
                # PNG: exactly the pixels that were scored (after the JPEG round trip, if any).
                images.write_image(os.path.join(fused_dir, f"{pair.name}_{method}.png"), fused)

        rows = runner.evaluate(
            pairs,
            methods,
            precomputed,
            settings["metrics"],
            jpeg_quality=FLAGS.jpeg_quality,
            progress=FLAGS.progress,
            on_fused=on_fused,
        )
        _write_outputs(images, rows, settings, labels, gallery_pair, kept)


def _check_flags(metrics) -> dict:
    if not FLAGS.dataset_dir:
        raise ValueError("--dataset_dir is required.")
    if not os.path.isdir(FLAGS.dataset_dir):
        raise ValueError(f"--dataset_dir is not a directory: {FLAGS.dataset_dir}")
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required.")
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise ValueError(f"--output_dir exists and is not a directory: {FLAGS.output_dir}")
    existing = [name for name in OUTPUT_FILES if os.path.exists(os.path.join(FLAGS.output_dir, name))]
    if existing and not FLAGS.overwrite:
        raise ValueError(f"{FLAGS.output_dir} already holds {', '.join(existing)} (pass --overwrite to replace).")
    metric_names = FLAGS.metrics or list(metrics.METRICS)
    unknown = [name for name in metric_names if name not in metrics.METRICS]
    if unknown:
        raise ValueError(f"Unknown --metrics {unknown}; expected some of {','.join(metrics.METRICS)}.")
    unknown = [name for name in FLAGS.rank_by if name not in metrics.METRICS]
    if unknown:
        raise ValueError(f"Unknown --rank_by {unknown}; expected some of {','.join(metrics.METRICS)}.")
    if FLAGS.jpeg_quality is not None and not 1 <= FLAGS.jpeg_quality <= 100:
        raise ValueError(f"--jpeg_quality must be from 1 to 100. Received: {FLAGS.jpeg_quality}")
    if FLAGS.limit is not None and FLAGS.limit < 1:
        raise ValueError(f"--limit must be at least 1. Received: {FLAGS.limit}")
    if FLAGS.inset_box and len(FLAGS.inset_box) != 4:
        raise ValueError(f"--inset_box needs top,left,height,width. Received: {','.join(FLAGS.inset_box)}")
    try:
        inset_box = [int(v) for v in FLAGS.inset_box] or None
    except ValueError:
        raise ValueError(f"--inset_box needs four integers. Received: {','.join(FLAGS.inset_box)}") from None
    folders = [folder for value in FLAGS.precomputed_dir for folder in value.split(",") if folder]
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"--precomputed_dir is not a directory: {folder}")
    return {
        "metrics": metric_names,
        "rank_by": [name for name in FLAGS.rank_by if name in metric_names],
        "precomputed_dirs": folders,
        "inset_box": inset_box,
    }


def _gallery_pair(pairs):
    if FLAGS.gallery_pair is None:
        return next((pair for pair in pairs if pair.ok), None)
    for pair in pairs:
        if pair.name == FLAGS.gallery_pair:
            if not pair.ok:
                raise ValueError(f"--gallery_pair {pair.name} cannot be used: {pair.skip_reason}")
            return pair
    raise ValueError(f"--gallery_pair {FLAGS.gallery_pair!r} is not among the pairs: {[p.name for p in pairs]}")


def _protocol() -> str:
    if FLAGS.jpeg_quality is None:
        ours = "our methods' fused images were scored losslessly (as computed)"
    else:
        ours = (
            f"our methods' fused images were JPEG-encoded at quality {FLAGS.jpeg_quality} "
            "(4:2:0 chroma subsampling, OpenCV) and decoded before scoring"
        )
    if FLAGS.precomputed_dir:
        ours += "; precomputed images were scored as stored"
    return ours


def _write_outputs(images, rows, settings, labels, gallery_pair, kept):
    from mfkeras.evaluation import figures, report

    output_dir = FLAGS.output_dir
    metric_names = settings["metrics"]
    means = report.summarise(rows)
    failures = report.errors(rows)
    pairs_used = sorted({row["pair"] for row in rows if not row["error"]})
    summary = report.summary_markdown(
        rows,
        metric_names,
        title=f"Evaluation on {FLAGS.dataset_dir}",
        protocol=_protocol(),
        rank_by=settings["rank_by"],
        ours=labels,
    )
    images.write_bytes_atomic(os.path.join(output_dir, "per_pair.csv"), report.rows_csv(rows))
    images.write_bytes_atomic(os.path.join(output_dir, "summary.md"), summary.encode())
    written = ["per_pair.csv", "summary.md"]
    if means:
        images.write_bytes_atomic(
            os.path.join(output_dir, "bar_chart.png"),
            figures.bar_chart_png(means, metric_names, highlight=labels if len(means) > 10 else ()),
        )
        written.append("bar_chart.png")
    if gallery_pair is not None and kept:
        shown = {name: kept[name] for name in labels if name in kept}
        shown = shown or kept  # Only precomputed methods: show those.
        name = f"gallery_{gallery_pair.name}.png"
        images.write_bytes_atomic(
            os.path.join(output_dir, name), figures.gallery_png(gallery_pair, shown, settings["inset_box"])
        )
        written.append(name)
    run = {
        "flags": {name: FLAGS[name].value for name in (
            "dataset_dir", "methods", "precomputed_dir", "metrics", "jpeg_quality", "gallery_pair",
            "inset_box", "rank_by", "limit", "save_fused",
        )},
        "protocol": _protocol(),
        "pairs": pairs_used,
        "skipped": failures,
        "means": means,
    }
    images.write_bytes_atomic(
        os.path.join(output_dir, "run.json"), json.dumps(run, indent=1, default=str, allow_nan=True).encode()
    )
    written.append("run.json")
    print(f"Scored {len(rows) - len(failures)} (pair, method) combinations, {len(failures)} skipped -> {output_dir}: "
          f"{', '.join(written)}")
    for pair, method, reason in failures:
        print(f"  skipped {pair} {method or '(pair)'}: {reason}")


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
