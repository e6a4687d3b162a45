"""Which images form the ground-truth development split (kept out of training). No TensorFlow."""

from __future__ import annotations

import hashlib
import os


def is_development_image(name: str, share: int = 8) -> bool:
    """Whether an image belongs to the development split: 1 in ``share`` file stems.

    Fixed by the file stem's SHA-1 alone, so the split is the same wherever the images are
    (see :mod:`mfkeras.evaluation.groundtruth`); ``ImageFolder(exclude_development=True)``
    keeps these images out of training.
    """
    stem = os.path.splitext(os.path.basename(os.fspath(name)))[0]
    return int(hashlib.sha1(stem.encode()).hexdigest(), 16) % share == 0
