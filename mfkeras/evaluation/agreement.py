"""Whether fusion metrics that look only at the sources order fused images as ground truth does.

Q^AB/F, NMI, Q_Y, Q_CB and the other source-based metrics score a fused image without knowing
the all-in-focus scene. On generated pairs, whose truth is known, `concordance` measures how
often a metric prefers the image that is closer to the truth, and `block_aligned` makes the
probe that separates JPEG block alignment from fusion quality: a decision map snapped to the
8x8 grid that JPEG codes in. `agreement_summary` puts a benchmark's per-sample scores together.
"""

from __future__ import annotations

import numpy as np


def concordance(metric: np.ndarray, reference: np.ndarray, higher_is_better: bool = True) -> float:
    """The share of method pairs, within each sample, that a metric orders as the reference does.

    Args:
        metric: (samples, methods) values of the metric.
        reference: (samples, methods) values of a ground-truth score where higher is better
            (PSNR against the all-in-focus image).
        higher_is_better: whether the metric prefers higher values.

    Returns:
        Concordant pairs / (concordant + discordant pairs), from 0 (always the reverse order)
        to 1 (always the same); pairs tied or NaN in either array count as neither. NaN when
        no pair is left.
    """
    metric = np.asarray(metric, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if metric.ndim != 2 or metric.shape != reference.shape:
        raise ValueError(
            "metric and reference must be (samples, methods) arrays of one shape. "
            f"Received: shapes {metric.shape} and {reference.shape}"
        )
    sign = 1.0 if higher_is_better else -1.0
    first, second = np.triu_indices(metric.shape[1], k=1)
    metric_order = np.sign(sign * (metric[:, first] - metric[:, second]))
    reference_order = np.sign(reference[:, first] - reference[:, second])
    agreement = metric_order * reference_order  # NaN stays NaN, ties give 0
    concordant = int(np.sum(agreement > 0))
    discordant = int(np.sum(agreement < 0))
    return concordant / (concordant + discordant) if concordant + discordant else float("nan")


def block_aligned(decision: np.ndarray, block: int = 8) -> np.ndarray:
    """A binary decision map made constant on a grid of ``block`` x ``block`` tiles.

    Each tile (the last ones on the right and bottom may be smaller) takes the value most of
    its pixels have; a tie goes to False (the second source).

    Args:
        decision: (H, W) bool map, True where the first source is chosen.
        block: tile side in pixels, 1 or more (8 is JPEG's block, 16 its 4:2:0 macroblock).

    Returns:
        (H, W) bool map.
    """
    decision = np.asarray(decision)
    if decision.ndim != 2 or decision.dtype != np.bool_:
        raise ValueError(f"decision must be a 2-D bool map. Received: shape {decision.shape}, dtype {decision.dtype}")
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer. Received: block={block}")
    rows, cols = np.arange(0, decision.shape[0], block), np.arange(0, decision.shape[1], block)
    if not rows.size or not cols.size:
        return decision.copy()
    counts = np.add.reduceat(np.add.reduceat(decision.astype(np.int64), rows, axis=0), cols, axis=1)
    sizes = np.outer(np.diff(np.append(rows, decision.shape[0])), np.diff(np.append(cols, decision.shape[1])))
    majority = 2 * counts > sizes
    return np.repeat(np.repeat(majority, block, axis=0), block, axis=1)[: decision.shape[0], : decision.shape[1]]


def finite_mean(values) -> tuple:
    """The mean of the finite values (None when none is) and how many values were left out."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if finite.size else None), int(values.size - finite.size)


def agreement_summary(per_sample: list, metric_names: list, truth_row: str) -> dict:
    """Means, the truth's ranks and the concordances of a run that scored rows of fused images.

    Args:
        per_sample: one ``{row: {column: value}}`` per sample, every sample with the same rows;
            the columns are ``psnr`` and ``band_psnr`` (against the truth) and ``metric_names``.
        metric_names: source-based metrics (keys of `mfkeras.evaluation.metrics.METRICS`).
        truth_row: the row that holds the ground truth itself.

    Returns:
        ``rows``; ``means`` per row and column over the finite values (None when none is:
        the truth's PSNR against itself is infinite), with ``left_out`` counting the rest;
        ``truth_rank`` by each metric's mean (1 = best, in the metric's own direction); and
        ``concordance_psnr`` / ``concordance_band`` per metric (`concordance`; None when no
        pair is ordered).
    """
    from mfkeras.evaluation import report

    if not per_sample:
        raise ValueError("per_sample is empty: no scored sample to summarise.")
    rows = list(per_sample[0])
    if truth_row not in rows or any(list(sample) != rows for sample in per_sample):
        raise ValueError(f"Every sample must hold the same rows, {truth_row!r} among them. Received: rows {rows}")
    columns = ["psnr", "band_psnr", *metric_names]
    table = {c: np.array([[sample[r][c] for r in rows] for sample in per_sample], np.float64) for c in columns}
    summary = {"rows": rows, "means": {}, "left_out": {}, "truth_rank": {}, "concordance_psnr": {},
               "concordance_band": {}}
    for index, row in enumerate(rows):
        figures = {c: finite_mean(table[c][:, index]) for c in columns}
        summary["means"][row] = {c: mean for c, (mean, _) in figures.items()}
        left_out = {c: count for c, (_, count) in figures.items() if count}
        if left_out:
            summary["left_out"][row] = left_out

    def finite_or_none(value: float):
        return value if np.isfinite(value) else None

    for name in metric_names:
        higher = report.higher_is_better(name)
        ranked = report.rank({r: {name: v[name] if v[name] is not None else np.nan}
                              for r, v in summary["means"].items()}, name)
        summary["truth_rank"][name] = next(position for position, row, _ in ranked if row == truth_row)
        summary["concordance_psnr"][name] = finite_or_none(concordance(table[name], table["psnr"], higher))
        summary["concordance_band"][name] = finite_or_none(concordance(table[name], table["band_psnr"], higher))
    return summary
