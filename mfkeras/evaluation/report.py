"""The rows of an evaluation run as CSV, means, rankings and Markdown tables.

`rows_csv` and `read_rows_csv` write and read the per-pair rows of
`mfkeras.evaluation.runner.evaluate`; `summarise`, `markdown_table`, `rank` and
`summary_markdown` turn them into the seed's Table 1 and the rankings of a report.
Failed rows (a non-empty ``error`` column) are left out of the means.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from mfkeras.evaluation import metrics

TIME_COLUMN = "time_s"
# The text columns of a row; the others are floats.
TEXT_COLUMNS = ("pair", "method", "error")


def rows_csv(rows: Sequence[Mapping]) -> bytes:
    """The rows of `evaluate` as CSV (floats with full precision, NaN as ``nan``)."""
    if not rows:
        return b""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue().encode()


def read_rows_csv(path: str) -> list:
    """Reads a CSV written by `rows_csv` back into rows (floats parsed)."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        for key, value in row.items():
            if key not in TEXT_COLUMNS:
                row[key] = float(value)
    return rows


def errors(rows: Sequence[Mapping]) -> list:
    """The rows of `evaluate` that failed, as ``(pair, method, reason)``."""
    return [(row["pair"], row["method"], row["error"]) for row in rows if row["error"]]


def summarise(rows: Sequence[Mapping]) -> dict:
    """Means over pairs of every method, failed rows left out.

    A metric that is NaN for some pairs is averaged over the others.

    Args:
        rows: from `evaluate`.

    Returns:
        ``{method: {"pairs": count, "time_s": mean, <metric>: mean, ...}}`` in the order the
        methods first appear.
    """
    grouped = {}
    for row in rows:
        if not row["error"]:
            grouped.setdefault(row["method"], []).append(row)
    means = {}
    for method, method_rows in grouped.items():
        columns = [k for k in method_rows[0] if k not in TEXT_COLUMNS]
        summary = {"pairs": len(method_rows)}
        for column in columns:
            values = np.array([row[column] for row in method_rows], dtype=np.float64)
            summary[column] = float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan
        means[method] = summary
    return means


def higher_is_better(column: str) -> bool:
    """The direction of a metric column (fusion time is lower-is-better)."""
    if column == TIME_COLUMN:
        return False
    if column not in metrics.METRICS:
        raise ValueError(f"Unknown column {column!r}; expected {TIME_COLUMN} or one of {list(metrics.METRICS)}")
    return metrics.METRICS[column][0].higher_is_better


def best_methods(means: Mapping[str, Mapping[str, float]], column: str, decimals: int = 4) -> set:
    """The methods with the best value of a column (ties at ``decimals`` places included)."""
    values = {m: round(s[column], decimals) for m, s in means.items() if not math.isnan(s.get(column, math.nan))}
    if not values:
        return set()
    best = max(values.values()) if higher_is_better(column) else min(values.values())
    return {method for method, value in values.items() if value == best}


def markdown_table(
    means: Mapping[str, Mapping[str, float]],
    metric_names: Sequence[str],
    decimals: int = 4,
    show_time: bool = False,
) -> str:
    """A Markdown table of means, the best value of each column in bold.

    Args:
        means: from `summarise`.
        metric_names: the metric columns, in order.
        decimals: decimals shown (and compared for ties).
        show_time: add the mean fusion time in seconds (lower is better).

    Returns:
        The table; arrows in the header give each column's direction.
    """
    columns = list(metric_names) + ([TIME_COLUMN] if show_time else [])
    arrows = {column: "↑" if higher_is_better(column) else "↓" for column in columns}
    lines = [
        "| Method | " + " | ".join(f"{c} {arrows[c]}" for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    best = {column: best_methods(means, column, decimals) for column in columns}
    for method, summary in means.items():
        cells = []
        for column in columns:
            value = summary.get(column, math.nan)
            text = "–" if math.isnan(value) else f"{value:.{decimals}f}"
            cells.append(f"**{text}**" if method in best[column] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rank(means: Mapping[str, Mapping[str, float]], metric: str) -> list:
    """Orders methods from best to worst by one metric (NaN last).

    Args:
        means: from `summarise`.
        metric: a metric column.

    Returns:
        ``[(rank, method, value), ...]``; equal values share a rank (1, 2, 2, 4, ...).
    """
    sign = -1.0 if higher_is_better(metric) else 1.0
    defined = [(m, s[metric]) for m, s in means.items() if not math.isnan(s.get(metric, math.nan))]
    ordered = sorted(defined, key=lambda item: sign * item[1])
    ranked = []
    for index, (method, value) in enumerate(ordered):
        position = ranked[-1][0] if ranked and ranked[-1][2] == value else index + 1
        ranked.append((position, method, value))
    missing = [m for m in means if m not in dict(defined)]
    return ranked + [(len(ordered) + 1, m, math.nan) for m in missing]


def ranking_markdown(
    means: Mapping[str, Mapping[str, float]],
    metric: str,
    highlight: Iterable[str] = (),
    decimals: int = 4,
) -> str:
    """A Markdown ranking table by one metric, the ``highlight`` methods in bold."""
    highlight = set(highlight)
    lines = [f"| Rank | Method | {metric} {'↑' if higher_is_better(metric) else '↓'} |", "|---:|---|---:|"]
    for position, method, value in rank(means, metric):
        name = f"**{method}**" if method in highlight else method
        lines.append(f"| {position} | {name} | {'–' if math.isnan(value) else f'{value:.{decimals}f}'} |")
    return "\n".join(lines) + "\n"


def summary_markdown(
    rows: Sequence[Mapping],
    metric_names: Sequence[str],
    title: str,
    protocol: str,
    rank_by: Sequence[str] = (),
    ours: Iterable[str] = (),
) -> str:
    """The Markdown report of a run: tables of means, rankings and skipped entries.

    Metrics that ignore the sources (EN, AG, SD, SF, EI: the seed's Table 1) and metrics
    that compare the fused image with the sources get separate tables.

    Args:
        rows: from `evaluate`.
        metric_names: the metric columns, in order.
        title: the report's heading.
        protocol: how the images were scored (e.g. lossless or JPEG), stated in every table.
        rank_by: metrics to rank the methods by.
        ours: the methods run here (bold in rankings; their fusion time is shown).

    Returns:
        The Markdown text.
    """
    ours = list(ours)
    means = summarise(rows)
    counts = sorted({summary["pairs"] for summary in means.values()})
    used = sorted({row["pair"] for row in rows if not row["error"]})
    lines = [
        f"# {title}",
        "",
        f"Protocol: {protocol}.",
        "",
        f"Means over {len(used)} pairs"
        + (f" (per method: {', '.join(map(str, counts))} pairs)" if len(counts) > 1 else "")
        + ". Best value per column in bold; ↑ higher is better, ↓ lower is better."
        + (" `time_s`: fusion seconds per pair on this machine (– for precomputed images)." if ours else ""),
        "",
    ]
    no_reference = [m for m in metric_names if not metrics.METRICS[m][0].needs_sources]
    with_sources = [m for m in metric_names if metrics.METRICS[m][0].needs_sources]
    groups = [
        ("Metrics of the fused image alone (the seed's Table 1; IE = EN)", no_reference,
         "They do not look at the sources and reward noise and ringing as much as detail."),
        ("Fusion metrics (the fused image compared with the sources)", with_sources, ""),
    ]
    groups = [group for group in groups if group[1]]
    for index, (heading, columns, note) in enumerate(groups):
        if len(groups) > 1:
            lines += [f"## {heading}", ""]
        if note:
            lines += [note, ""]
        show_time = bool(ours) and index == len(groups) - 1
        lines += [markdown_table(means, columns, show_time=show_time).rstrip("\n"), ""]
    for metric in rank_by:
        lines += [
            f"## Ranking by {metric}",
            "",
            f"Protocol: {protocol}." + (" Methods run here in bold." if ours else ""),
            "",
            ranking_markdown(means, metric, highlight=ours).rstrip("\n"),
            "",
        ]
    failures = errors(rows)
    if failures:
        lines += ["## Skipped", ""]
        lines += [f"- {pair} {method or '(pair)'}: {reason}" for pair, method, reason in failures]
        lines.append("")
    return "\n".join(lines)

