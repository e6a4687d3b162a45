"""The stacks of a batch: subfolders of a batch folder, or the lines of a manifest file."""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath

from mfkeras.io.images import WRITABLE_EXTENSIONS, ImageError, list_images, natural_key


@dataclasses.dataclass(frozen=True)
class Stack:
    """One stack to fuse.

    Attributes:
        name: the output's file stem (the subfolder's name, or the manifest's).
        paths: the frames, in fusion order.
    """

    name: str
    paths: tuple


def find_stacks(batch_dir: str) -> list:
    """Every subfolder of ``batch_dir`` holding two or more images is one stack.

    Args:
        batch_dir: the batch folder.

    Returns:
        The stacks sorted by name in natural order, frames in natural order.
    """
    if not os.path.isdir(batch_dir):
        raise ImageError(f"The batch folder is not a directory: {batch_dir}")
    stacks = []
    for entry in os.scandir(batch_dir):
        if entry.is_dir() and not entry.name.startswith("."):
            frames = list_images(entry.path)
            if len(frames) >= 2:
                stacks.append(Stack(entry.name, tuple(frames)))
    if not stacks:
        raise ImageError(f"No stacks in {batch_dir}: expected subfolders holding two or more images.")
    return sorted(stacks, key=lambda stack: natural_key(stack.name))


def parse_manifest_line(line: str) -> Stack | None:
    """Parses one manifest line; None for a blank line or a ``#`` comment.

    A line is a JSON list of frame paths, a JSON object ``{"name": ..., "paths": [...]}``,
    or comma-separated paths. Without a name the stack is named after the folder holding
    its first frame. Paths may be any filesystem path (local, ``gs://``, ...).

    Args:
        line: the text of the line.

    Returns:
        The :class:`Stack`, or None.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    name = None
    if text[0] in "[{":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ImageError(f"Manifest line is not valid JSON ({error.msg}): {text[:80]}") from None
        if isinstance(value, dict):
            name, value = value.get("name"), value.get("paths")
        paths = value
    else:
        paths = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ImageError(f"Manifest line must list frame paths: {text[:80]}")
    if len(paths) < 2:
        raise ImageError(f"A stack needs at least 2 frames. Received {len(paths)}: {text[:80]}")
    if name is None:
        name = posixpath.basename(posixpath.dirname(paths[0].replace(os.sep, "/"))) or "stack"
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ImageError(f"A stack name must be a plain file stem. Received: {name!r}")
    return Stack(name, tuple(paths))


def output_path(output_dir: str, name: str, extension: str) -> str:
    """``<output_dir>/<name>.<extension>``, checking that the extension can be written."""
    extension = "." + extension.lstrip(".").lower()
    if extension not in WRITABLE_EXTENSIONS:
        raise ImageError(
            f"output_ext must be one of {', '.join(e[1:] for e in WRITABLE_EXTENSIONS)}. "
            f"Received: {extension[1:]!r}"
        )
    return os.path.join(output_dir, name + extension)
