"""Times the classical fusion comparators (NSCT, NSST, PCNN, DWT, LPT, DT-CWT) on one pair.

Methods are resolved by ``mfkeras.evaluation.runner.resolve_method``, which imports their module
lazily; methods that this checkout of mfkeras lacks are skipped with a message. Each method
fuses the pair once to warm up (filter banks are built and cached then), then --repeats
more times; the figures are medians of wall-clock and process CPU time (CPU time counts
all threads, and tells more than wall time when the machine is shared).

Usage:
  python experiments/benchmark_baselines.py --pair lytro_01 --repeats 3
  python experiments/benchmark_baselines.py --methods nsct,pcnn --output_json /tmp/bench.json
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from absl import app, flags

REPO_ROOT = Path(__file__).resolve().parents[1]

try:
    import mfkeras  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.evaluation import runner as evaluation  # noqa: E402
from mfkeras.io import images
from mfkeras.training import provenance  # noqa: E402

PROGRAM = "benchmark_baselines"
METHODS = ("nsct", "nsst", "pcnn", "dwt", "lpt", "dtcwt")

_PAIR_DIR = flags.DEFINE_string(
    "pair_dir",
    str(REPO_ROOT.parent / "shared" / "data" / "lytro"),
    "Folder with <pair>_A.<ext> and <pair>_B.<ext> (default: ../shared/data/lytro beside "
    "the repository).",
)
_PAIR = flags.DEFINE_string("pair", "lytro_01", "Name of the source pair.")
_METHODS = flags.DEFINE_list(
    "methods", list(METHODS), f"Methods to time, any of {', '.join(METHODS)}."
)
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timed runs per method after one warm-up.", lower_bound=1
)
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json",
    str(REPO_ROOT / "experiments" / "results" / "benchmark_baselines.json"),
    "Where to write the results.",
)


def find_pair(pair_dir: Path, pair: str) -> tuple:
    """Returns the paths of <pair>_A.* and <pair>_B.* in ``pair_dir``."""
    paths = []
    for side in ("A", "B"):
        matches = sorted(pair_dir.glob(f"{pair}_{side}.*"))
        if not matches:
            raise FileNotFoundError(f"No {pair}_{side}.* in {pair_dir} (see --pair_dir, --pair)")
        paths.append(matches[0])
    return tuple(paths)


def time_method(fuse, sources, repeats: int) -> dict:
    """Fuses ``sources`` once to warm up, then ``repeats`` times; returns timings in seconds."""
    timings = []
    for _ in range(repeats + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        fused = fuse(sources)
        timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    (first_wall, _), timed = timings[0], timings[1:]
    return {
        "median_wall_s": statistics.median(wall for wall, _ in timed),
        "median_cpu_s": statistics.median(cpu for _, cpu in timed),
        "wall_s": [wall for wall, _ in timed],
        "first_call_wall_s": first_wall,
        "output_shape": list(fused.shape),
        "output_dtype": str(fused.dtype),
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments (flags need --): {' '.join(argv[1:])}")
    unknown = [name for name in _METHODS.value if name not in evaluation.TRANSFORM_METHODS]
    if unknown:
        raise app.UsageError(
            f"Unknown --methods {unknown}; expected any of {list(evaluation.TRANSFORM_METHODS)}."
            f" Received: --methods={','.join(_METHODS.value)}"
        )
    with cli.clean_errors(PROGRAM):
        paths = find_pair(Path(_PAIR_DIR.value), _PAIR.value)
        # read_image decodes with OpenCV and returns colour as RGB.
        sources = [images.read_image(str(path)) for path in paths]
    payload = {
        "pair": _PAIR.value,
        "inputs": [str(path) for path in paths],
        "image_shape": list(sources[0].shape),
        "repeats": _REPEATS.value,
        "machine": provenance.describe_machine(load_average=True),
        "methods": {},
        "skipped": {},
    }
    print(f"{_PAIR.value} {sources[0].shape}, median of {_REPEATS.value} after a warm-up")
    print(f"{'method':8s} {'wall s':>8s} {'cpu s':>8s} {'1st wall s':>11s}")
    for name in _METHODS.value:
        try:
            method = evaluation.resolve_method(name)
        except ValueError as error:  # the method's module or function is missing
            print(f"{name:8s} skipped: {error}")
            payload["skipped"][name] = str(error)
            continue
        result = time_method(method.fuse, sources, _REPEATS.value)
        payload["methods"][name] = result
        print(
            f"{name:8s} {result['median_wall_s']:8.2f} {result['median_cpu_s']:8.2f} "
            f"{result['first_call_wall_s']:11.2f}",
            flush=True,
        )
    cli.write_json(Path(_OUTPUT_JSON.value), payload)
    print(f"Wrote {_OUTPUT_JSON.value}")


def run():
    cli.run_main(main)


if __name__ == "__main__":
    run()
