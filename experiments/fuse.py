"""Runs `mfkeras-fuse` from a clone without installing: the body is mfkeras.cli.fuse."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfkeras.cli.fuse import run  # noqa: E402

if __name__ == "__main__":
    run()
