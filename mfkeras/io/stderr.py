"""Keeping native libraries' log lines off the terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import threading


class _Silencer:
    """File descriptor 2 pointed at /dev/null while any thread is inside a silenced block.

    Descriptor 2 belongs to the whole process, so nested and concurrent blocks (frames decoded
    on several threads) share one redirection: the first block in saves it, the last one out
    restores it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                sys.stderr.flush()
                self._saved = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            self._depth += 1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                sys.stderr.flush()
                os.dup2(self._saved, 2)
                os.close(self._saved)
                self._saved = None


_SILENCER = _Silencer()


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Points file descriptor 2 at /dev/null for the ``with`` block (thread-safe, nestable).

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
    _SILENCER.enter()
    try:
        yield
    finally:
        _SILENCER.leave()
