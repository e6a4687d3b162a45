"""Seconds spent in each stage of a fusion (decode, score, decision, refine, blend, encode)."""

from __future__ import annotations

import contextlib
import time

# The stages in pipeline order, as ``mfkeras-fuse --timings`` prints them.
STAGES = ("load_model", "decode", "align", "score", "decision", "refine", "blend", "encode")
SUMMARY_PREFIX = "Timings (s): "


class StageTimes(dict):
    """``{stage: seconds}``, summed over every pass through a stage (stack steps, tiles)."""

    @contextlib.contextmanager
    def stage(self, name: str):
        """Adds the wall time of the ``with`` block to ``self[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start

    def summary(self) -> str:
        """One line: the stages in pipeline order, then any others, and their total."""
        names = [s for s in STAGES if s in self] + sorted(set(self) - set(STAGES))
        parts = [f"{name} {self[name]:.3f}" for name in names]
        return f"{SUMMARY_PREFIX}{', '.join(parts)}; total {sum(self.values()):.3f}"

    @classmethod
    def from_summary(cls, text: str) -> "StageTimes":
        """The stage times of the last :meth:`summary` line in ``text`` (ValueError if there is
        none or it is malformed)."""
        lines = [line for line in text.splitlines() if line.startswith(SUMMARY_PREFIX)]
        if not lines:
            raise ValueError(f"No line starting {SUMMARY_PREFIX!r}. Received: {text[-300:]!r}")
        stages = lines[-1][len(SUMMARY_PREFIX):].rsplit(";", 1)[0]
        times = cls()
        for part in filter(None, (part.strip() for part in stages.split(","))):
            name, _, seconds = part.partition(" ")
            try:
                times[name] = float(seconds)
            except ValueError:
                raise ValueError(f"Malformed stage {part!r} in the timings line. Received: {lines[-1]!r}") from None
        return times


class _NoTimes:
    """Stands in for :class:`StageTimes` when nobody asked for timings."""

    def stage(self, name: str):
        return contextlib.nullcontext()


NO_TIMES = _NoTimes()
