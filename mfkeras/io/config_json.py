"""The JSON round trip shared by every configuration dataclass."""

from __future__ import annotations

import dataclasses
import json


class JsonConfig:
    """Mixin for frozen config dataclasses: ``to_dict`` / ``from_dict`` and their JSON forms.

    Subclasses with nested or tuple-valued fields override ``to_dict`` and
    ``from_dict``; the JSON methods follow.
    """

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-serialisable types."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Serialises the config to a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict):
        """Builds a config from :meth:`to_dict` output."""
        return cls(**data)

    @classmethod
    def from_json(cls, text: str):
        """Builds a config from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


def lookup(table: dict, name: str, kind: str):
    """Returns ``table[name]``, or raises a ValueError naming the ``kind`` and the choices.

    Shared by the named registries (model presets, training recipes).
    """
    if name not in table:
        raise ValueError(f"Unknown {kind}. Expected one of {sorted(table)}. Received: {name!r}")
    return table[name]
