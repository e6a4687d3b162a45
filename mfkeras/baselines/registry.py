"""The one registry of the transform-domain baselines: name -> fusion function."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mfkeras.baselines.nsct import fuse_nsct
from mfkeras.baselines.nsst import fuse_nsst
from mfkeras.baselines.pcnn import fuse_pcnn
from mfkeras.baselines.wavelets import fuse_dtcwt, fuse_dwt, fuse_lpt

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "dwt": fuse_dwt,
    "lpt": fuse_lpt,
    "dtcwt": fuse_dtcwt,
    "nsct": fuse_nsct,
    "nsst": fuse_nsst,
    "pcnn": fuse_pcnn,
}
WAVELET_BASELINES = ("dwt", "lpt", "dtcwt")


def get_baseline(name: str) -> Callable[..., np.ndarray]:
    """Returns the fusion function of a baseline, one of the keys of ``BASELINES``."""
    if name not in BASELINES:
        raise ValueError(
            f"Unknown baseline. Expected one of {sorted(BASELINES)}. Received: name={name!r}"
        )
    return BASELINES[name]
