"""Times every fusion metric of mfkeras.evaluation.metrics on one source pair and fused image.

Each metric is timed alone through `metrics.evaluate_all(..., names=[name])`, so it
pays for its own intermediate results, and all fifteen together through
`metrics.evaluate_all`, which shares them. Figures are medians over --repeats runs
after one warm-up run (which also fills the per-size filter caches); wall-clock and
process CPU times are both reported because the machine may be shared.

Usage:
  python experiments/benchmark_metrics.py --pair lytro_01 --repeats 5
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from absl import flags, logging

REPO_ROOT = Path(__file__).resolve().parents[1]

try:
    from mfkeras.evaluation import metrics
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))
    from mfkeras.evaluation import metrics

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402
_PAIR_DIR = flags.DEFINE_string(
    "pair_dir",
    str(REPO_ROOT.parent / "shared" / "data" / "lytro"),
    "Folder with <pair>_A.jpg and <pair>_B.jpg.",
)
_PAIR = flags.DEFINE_string("pair", "lytro_01", "Source pair name.")
_FUSED = flags.DEFINE_string(
    "fused",
    str(REPO_ROOT.parent / "shared" / "docs" / "metric_goldens" / "lytro_01_CNN.jpg"),
    "Fused image to score.",
)
_REPEATS = flags.DEFINE_integer(
    "repeats", 5, "Timed runs per measurement, after one warm-up.", lower_bound=1
)
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json",
    str(REPO_ROOT / "experiments" / "results" / "benchmark_metrics.json"),
    "Where to write the results.",
)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Cannot read an image at {path}")
    return np.ascontiguousarray(image[..., ::-1])  # OpenCV decodes to BGR


def _time(function, repeats: int) -> dict:
    """Runs `function` once to warm up, then `repeats` times; returns timings in seconds."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    value = function()
    first_wall, first_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_wall_s": statistics.median(wall),
        "min_wall_s": min(wall),
        "median_cpu_s": statistics.median(cpu),
        "first_call_wall_s": first_wall,
        "first_call_cpu_s": first_cpu,
        "value": value,
    }


def benchmark(a: np.ndarray, b: np.ndarray, fused: np.ndarray, repeats: int) -> dict:
    """Times each metric alone and all of them together.

    Args:
        a: first source, uint8 RGB or grey.
        b: second source, same size.
        fused: fused image, same size.
        repeats: timed runs per measurement.

    Returns:
        Dict with a "metrics" entry (name -> timings and value) and a "total" entry.
    """
    per_metric = {}
    for name, (info, _) in metrics.METRICS.items():
        timing = _time(lambda: metrics.evaluate_all(a, b, fused, names=[name])[name], repeats)
        timing["higher_is_better"] = info.higher_is_better
        per_metric[name] = timing
    total = _time(lambda: metrics.evaluate_all(a, b, fused), repeats)
    return {"metrics": per_metric, "total": total}


def _print_table(result: dict) -> None:
    print(f"{'metric':8s} {'value':>12s} {'dir':>4s} {'wall s':>9s} {'cpu s':>9s} {'1st wall s':>11s}")
    for name, t in result["metrics"].items():
        direction = "up" if t["higher_is_better"] else "down"
        print(
            f"{name:8s} {t['value']:12.6g} {direction:>4s} {t['median_wall_s']:9.4f} "
            f"{t['median_cpu_s']:9.4f} {t['first_call_wall_s']:11.4f}"
        )
    alone = sum(t["median_wall_s"] for t in result["metrics"].values())
    t = result["total"]
    print(f"{'sum':8s} {'':12s} {'':4s} {alone:9.4f}")
    print(
        f"{'ALL':8s} {'':12s} {'':4s} {t['median_wall_s']:9.4f} {t['median_cpu_s']:9.4f} "
        f"{t['first_call_wall_s']:11.4f}   (evaluate_all, shared intermediates)"
    )


def main(argv):
    del argv
    pair_dir = Path(_PAIR_DIR.value)
    a = _read_rgb(pair_dir / f"{_PAIR.value}_A.jpg")
    b = _read_rgb(pair_dir / f"{_PAIR.value}_B.jpg")
    fused = _read_rgb(Path(_FUSED.value))
    logging.info("Benchmarking %s with %s, %d repeats", _PAIR.value, _FUSED.value, _REPEATS.value)

    machine = provenance.describe_machine(load_average=True)
    result = benchmark(a, b, fused, _REPEATS.value)
    result["total"]["value"] = None  # the dict of values is in "metrics"
    result.update(
        flags={
            "pair_dir": str(pair_dir),
            "pair": _PAIR.value,
            "fused": _FUSED.value,
            "repeats": _REPEATS.value,
        },
        image_shape=list(a.shape),
        machine={
            **machine,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    )
    _print_table(result)
    cli.write_json(_OUTPUT_JSON.value, result)
    logging.info("Wrote %s", _OUTPUT_JSON.value)


if __name__ == "__main__":
    cli.run_main(main)
