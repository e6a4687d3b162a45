"""Fusing a batch of stacks in one process: the model loaded once, resumable, one report.

A stack whose output exists is skipped unless ``overwrite``; a stack that fails is
reported with its reason and the others go on. Outputs are written atomically, so a
batch killed halfway leaves no partial file and continues where it stopped.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np

from mfkeras.batch.stacks import Stack, output_path
from mfkeras.fusion.options import FusionOptions
from mfkeras.io import images, metadata
from mfkeras.io.validate import validate_images

REPORT_FILE = "batch_report.json"
# What a stack may fail with and still leave the batch running: unusable files and
# images (ImageError is a ValueError), unreadable or unwritable paths.
STACK_ERRORS = (ValueError, OSError)


def fuse_stack_files(
    paths: Sequence[str],
    model,
    options: FusionOptions = FusionOptions(),
    prepare: Optional[Callable[[list], list]] = None,
    max_pixels: int = images.DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Reads, checks and fuses one stack of image files.

    Args:
        paths: the frames, in order.
        model: a Keras patch model, a ScoreNetwork or a LiteRT network (loaded once).
        options: the fusion options.
        prepare: optional step between reading and fusing (registration of handheld frames).
        max_pixels: the largest frame accepted (see :func:`mfkeras.io.images.read_image`).

    Returns:
        The fused image.
    """
    from mfkeras.fusion.pipeline import fuse

    sources = images.read_images(paths, max_pixels)
    validate_images(sources, names=[str(path) for path in paths])
    if prepare is not None:
        sources = prepare(sources)
    return fuse(sources, model, options).fused


def remove_stale_temporaries(output_dir: str) -> list:
    """Deletes the temporary files a killed run left beside its outputs; returns their paths."""
    stale = glob.glob(os.path.join(output_dir, images.TEMPORARY_PREFIX + "*"))
    for path in stale:
        os.unlink(path)
    return stale


def fuse_batch(
    stacks: Sequence[Stack],
    model,
    output_dir: str,
    options: FusionOptions = FusionOptions(),
    output_ext: str = "png",
    overwrite: bool = False,
    prepare: Optional[Callable[[list], list]] = None,
    progress: bool = False,
    max_pixels: int = images.DEFAULT_MAX_PIXELS,
    keep_metadata: bool = True,
) -> dict:
    """Fuses every stack to ``<output_dir>/<name>.<output_ext>`` and writes the report.

    Args:
        stacks: from :func:`mfkeras.batch.stacks.find_stacks` or a manifest.
        model: a Keras patch model or a ScoreNetwork, used for every stack.
        output_dir: the output folder (created if needed).
        options: the fusion options of every stack.
        output_ext: the output file type (png, jpg, tif, ...).
        overwrite: fuse stacks whose output exists instead of skipping them.
        prepare: optional step between reading and fusing, as in :func:`fuse_stack_files`.
        progress: show a progress bar over the stacks on stderr.
        max_pixels: the largest frame accepted.
        keep_metadata: give each output its first frame's EXIF, ICC profile and XMP.

    Returns:
        The report also written to ``<output_dir>/batch_report.json``: counts, and per
        stack its status (``fused``, ``skipped`` or ``failed``), output and reason.
    """
    names = [stack.name for stack in stacks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise images.ImageError(f"Stack names must be unique, as they name the outputs: {repeated}")
    targets = [output_path(output_dir, stack.name, output_ext) for stack in stacks]
    os.makedirs(output_dir, exist_ok=True)
    remove_stale_temporaries(output_dir)
    start = time.perf_counter()
    entries = []
    iterator = zip(stacks, targets)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(stacks), desc="stacks", unit="stack")
    for stack, target in iterator:
        entries.append(_run_one(stack, target, model, options, overwrite, prepare, max_pixels, keep_metadata))
    report = _summarize(entries, time.perf_counter() - start)
    images.write_bytes_atomic(
        os.path.join(output_dir, REPORT_FILE), json.dumps(report, indent=2).encode()
    )
    return report


def _run_one(stack, target, model, options, overwrite, prepare, max_pixels, keep_metadata) -> dict:
    entry = {"stack": stack.name, "frames": list(stack.paths), "output": target}
    if os.path.exists(target) and not overwrite:
        return {**entry, "status": "skipped", "reason": "output exists"}
    start = time.perf_counter()
    try:
        fused = fuse_stack_files(stack.paths, model, options, prepare, max_pixels)
        carried = metadata.read_metadata(stack.paths[0]) if keep_metadata else None
        images.write_image(target, fused, carried)
    except STACK_ERRORS as error:
        return {**entry, "status": "failed", "reason": str(error) or type(error).__name__}
    return {**entry, "status": "fused", "seconds": time.perf_counter() - start}


def _summarize(entries: list, seconds: float) -> dict:
    counts = {status: sum(e["status"] == status for e in entries) for status in ("fused", "skipped", "failed")}
    return {
        "stacks": len(entries),
        **counts,
        "seconds": seconds,
        "failures": [{"stack": e["stack"], "reason": e["reason"]} for e in entries if e["status"] == "failed"],
        "entries": entries,
    }
