"""What every command-line script shares: one-line errors with exit status 2."""

import contextlib
import sys
import time

USAGE_EXIT_STATUS = 2


@contextlib.contextmanager
def clean_errors(program: str):
    """Turns input errors into one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except (ValueError, OSError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(USAGE_EXIT_STATUS)


MIN_SIDE = 16


def check_same_kind(sources, paths) -> None:
    """Rejects inputs that are too small, differ in size or mix gray and colour, naming them."""
    for path, image in zip(paths, sources):
        if min(image.shape[:2]) < MIN_SIDE:
            raise ValueError(
                f"Images must be at least {MIN_SIDE} pixels on each side: {path} is {image.shape}."
            )
    first = sources[0]
    for path, image in zip(paths[1:], sources[1:]):
        if (image.ndim == 3) != (first.ndim == 3):
            raise ValueError(
                f"Cannot mix grayscale and colour inputs: {paths[0]} is {first.shape}, "
                f"{path} is {image.shape}."
            )
        if image.shape != first.shape:
            raise ValueError(
                f"Input sizes differ: {paths[0]} is {first.shape}, {path} is {image.shape}."
            )
        if image.dtype != first.dtype:
            raise ValueError(
                f"Input bit depths differ: {paths[0]} is {first.dtype}, {path} is {image.dtype}."
            )


def median_seconds(function, repeats: int) -> float:
    """Median wall time of ``function()`` over ``repeats`` runs after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
