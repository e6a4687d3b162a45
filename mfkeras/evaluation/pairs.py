"""Finding the source pairs of a dataset folder, and fused images stored beside them.

`find_pairs` lists the source pairs of a dataset folder (``<name>_A.*``/``<name>_B.*`` or
``_1``/``_2``), reporting broken ones with a ``skip_reason`` instead of failing;
`find_precomputed` finds fused images of other methods stored as ``<pair>_<METHOD>.*``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Optional

from mfkeras.io import images
from mfkeras.io.images import IMAGE_EXTENSIONS

# The two naming styles of source pairs, as (first, second) suffix tags.
SOURCE_TAGS = (("A", "B"), ("1", "2"))

_SOURCE_PATTERN = re.compile(r"^(?P<name>.+)_(?P<tag>[AB12])$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A source pair of a dataset folder.

    Attributes:
        name: the pair name, the file stem without ``_A``/``_B`` (or ``_1``/``_2``).
        paths: the two source files in order; fewer when a partner is missing.
        skip_reason: why the pair cannot be used, or None when it can.
    """

    name: str
    paths: tuple
    skip_reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.skip_reason is None



def _image_files(folder: str) -> list:
    if not os.path.isdir(folder):
        raise images.ImageError(f"Not a directory: {folder}")
    return sorted(
        entry.path
        for entry in os.scandir(folder)
        if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
    )


def find_pairs(folder: str) -> list:
    """Lists the source pairs of a folder (``<name>_A.*``/``<name>_B.*`` or ``_1``/``_2``).

    Every source is read, so a pair with a missing partner, an unreadable file, sizes that
    differ or gray mixed with colour is returned with a ``skip_reason`` instead of raising.

    Args:
        folder: the dataset folder.

    Returns:
        The pairs sorted by name, usable and skipped ones alike.
    """
    found = {}
    for path in _image_files(folder):
        match = _SOURCE_PATTERN.match(Path(path).stem)
        if match:
            found.setdefault(match["name"], {}).setdefault(match["tag"].upper(), []).append(path)
    if not found:
        raise images.ImageError(
            f"No source pairs in {folder}: expected files named <name>_A.<ext> and <name>_B.<ext> "
            f"(or <name>_1 / <name>_2) with one of the extensions {', '.join(IMAGE_EXTENSIONS)}."
        )
    return [_make_pair(name, tags) for name, tags in sorted(found.items())]


def _make_pair(name: str, tags: dict) -> Pair:
    listed = sorted(p for paths in tags.values() for p in paths)
    duplicated = [paths for paths in tags.values() if len(paths) > 1]
    if duplicated:
        return Pair(name, tuple(listed), f"ambiguous sources: {', '.join(duplicated[0])}")
    styles = [style for style in SOURCE_TAGS if set(style) & set(tags)]
    if len(styles) > 1:
        return Pair(name, tuple(listed), f"mixes _A/_B and _1/_2 naming: {', '.join(listed)}")
    first, second = styles[0]
    if first not in tags or second not in tags:
        present, absent = (first, second) if first in tags else (second, first)
        return Pair(name, tuple(listed), f"missing partner: no {name}_{absent}.* beside {tags[present][0]}")
    paths = (tags[first][0], tags[second][0])
    try:
        sources = [images.read_image(path) for path in paths]
    except images.ImageError as error:
        return Pair(name, paths, f"unreadable source: {error}")
    a, b = sources
    if a.shape != b.shape or a.dtype != b.dtype:
        return Pair(
            name, paths, f"sources differ: {paths[0]} is {a.shape} {a.dtype}, {paths[1]} is {b.shape} {b.dtype}"
        )
    return Pair(name, paths)


def find_precomputed(folder: str, pair_names: Iterable[str]) -> dict:
    """Finds fused images of other methods named ``<pair>_<METHOD>.*``.

    The pair names are known, so the method is what follows the longest pair name that
    prefixes the file stem; method names may contain underscores (``DCT_Corr``). Sources
    (``<pair>_A`` etc.) and files of unknown pairs are ignored.

    Args:
        folder: the folder of fused images.
        pair_names: the pair names of the dataset.

    Returns:
        ``{method: {pair: path}}``, methods in sorted order.
    """
    names = sorted(set(pair_names), key=len, reverse=True)
    source_tags = {tag for style in SOURCE_TAGS for tag in style}
    found = {}
    for path in _image_files(folder):
        stem = Path(path).stem
        pair = next((n for n in names if stem.startswith(n + "_") and len(stem) > len(n) + 1), None)
        if pair is None:
            continue
        method = stem[len(pair) + 1 :]
        if method.upper() in source_tags:
            continue
        by_pair = found.setdefault(method, {})
        if pair in by_pair:
            raise images.ImageError(
                f"Two fused images of method {method!r} for pair {pair!r}: {by_pair[pair]} and {path}"
            )
        by_pair[pair] = path
    return dict(sorted(found.items()))

