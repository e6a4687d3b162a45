"""What a network object builds once and keeps: compiled functions, precision copies."""

from __future__ import annotations


class BuildCache:
    """Mixin for the frozen network dataclasses, which declare ``_built: dict`` themselves."""

    def cached(self, kind: str, build):
        """``build()``, made once per network and ``kind`` (compiled functions, precision copies)."""
        if kind not in self._built:
            self._built[kind] = build()
        return self._built[kind]

    @property
    def built_kinds(self) -> tuple:
        """The kinds :meth:`cached` has built so far."""
        return tuple(self._built)
