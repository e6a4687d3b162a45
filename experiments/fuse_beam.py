"""Runs `mfkeras-fuse-beam` from a clone without installing: the body is mfkeras.cli.fuse_beam."""

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
# Beam's worker processes (--direct_running_mode=multi_processing) import mfkeras too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

from mfkeras.cli.fuse_beam import run  # noqa: E402

if __name__ == "__main__":
    run()
