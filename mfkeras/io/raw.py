"""Camera RAW frames developed by LibRaw (through rawpy) into 16-bit sRGB.

Every frame of a focus stack is developed with the same fixed settings, none of
them chosen from the frame's own pixels, so that the frames stay comparable:

- white balance: the camera's as-shot balance (``use_camera_wb``), never an
  automatic one (LibRaw falls back to its daylight balance for a file without one);
- brightness: no auto-brightening (``no_auto_bright``, ``bright=1``) and no
  lowering of the white level to the frame's brightest pixel
  (``adjust_maximum_thr=0``, LibRaw's default of 0.75 would make that choice per
  frame);
- colour: the camera matrix to sRGB primaries with the sRGB tone curve
  (``gamma=(2.4, 12.92)``), 16 bits per sample;
- demosaicing: AHD, full size; highlights clipped; the camera's orientation
  applied, as ``read_image`` applies EXIF orientation.
"""

from __future__ import annotations

import os

import numpy as np
import rawpy

from mfkeras.io.images import RAW_EXTENSIONS, ImageError  # noqa: F401  (RAW_EXTENSIONS re-exported)

# The sRGB transfer curve as LibRaw takes it: (power, slope of the linear toe).
SRGB_GAMMA = (2.4, 12.92)


def is_raw_path(path: str) -> bool:
    """Whether ``path`` names a camera RAW file, by its extension."""
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_EXTENSIONS


def develop_settings() -> dict:
    """The ``rawpy.RawPy.postprocess`` arguments ``read_raw`` uses (see the module docstring)."""
    return dict(
        use_camera_wb=True,
        use_auto_wb=False,
        output_color=rawpy.ColorSpace.sRGB,
        output_bps=16,
        gamma=SRGB_GAMMA,
        no_auto_bright=True,
        bright=1.0,
        adjust_maximum_thr=0.0,
        demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
        half_size=False,
        highlight_mode=rawpy.HighlightMode.Clip,
    )


def read_raw(path: str) -> np.ndarray:
    """Develops a camera RAW file into an RGB image.

    Args:
        path: a RAW file (one of ``RAW_EXTENSIONS``; LibRaw decides by content).

    Returns:
        A (H, W, 3) uint16 sRGB array, oriented as the camera recorded it.
    """
    if not os.path.isfile(path):
        raise ImageError(f"Input file not found: {path}")
    try:
        with rawpy.imread(path) as raw:
            image = raw.postprocess(**develop_settings())
    except rawpy.LibRawError as error:
        raise ImageError(f"Not a readable camera RAW file: {path} (LibRaw: {_reason(error)}).") from error
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"LibRaw developed {path} into shape {image.shape}; expected (H, W, 3).")
    return np.ascontiguousarray(image)


def _reason(error: Exception) -> str:
    reason = error.args[0] if error.args else type(error).__name__
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
