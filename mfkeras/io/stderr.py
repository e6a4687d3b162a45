"""Keeping native libraries' log lines off the terminal."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Points file descriptor 2 at /dev/null for the ``with`` block.

    TensorFlow's and LiteRT's C++ log lines (``I0000 ... oneDNN``, ``failed call to cuInit``,
    ``Created TensorFlow Lite XNNPACK delegate``) bypass Python's ``sys.stderr`` and read like
    failures on a machine without a GPU. Python exceptions still propagate; print them after
    the block.

    Args:
        enabled: False makes the block a no-op (``--verbose``).
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)
