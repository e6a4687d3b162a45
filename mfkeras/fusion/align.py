"""Registration of handheld frames to a reference frame with OpenCV, and common-area cropping."""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import cv2
import numpy as np

from mfkeras.fusion.options import ALIGN_METHODS
from mfkeras.fusion.options import ALIGN_MODELS as MOTION_MODELS
from mfkeras.io.color import to_gray

# ECC runs coarse to fine; the coarsest level has at most this many pixels a side.
_COARSEST_SIDE = 256


@dataclasses.dataclass
class Alignment:
    """Frames warped onto a reference and cropped to the area all of them cover.

    Attributes:
        images: the aligned, cropped frames (same dtype as the inputs).
        warps: one 3x3 matrix per frame mapping reference pixel coordinates to
            that frame's pixel coordinates (identity for the reference).
        crop: (top, bottom, left, right) of the kept area in reference coordinates.
        reference_index: which frame was the reference.
    """

    images: list
    warps: list
    crop: tuple
    reference_index: int


def _unit_gray(image: np.ndarray) -> np.ndarray:
    if np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float32) / np.iinfo(image.dtype).max
    return to_gray(image)


def estimate_warp_ecc(reference: np.ndarray, moving: np.ndarray, motion: str = "affine") -> np.ndarray:
    """Estimates the warp from reference to moving pixel coordinates with ECC, coarse to fine.

    Args:
        reference: (H, W) float32 gray reference.
        moving: (H, W) float32 gray frame.
        motion: ``affine`` or ``homography``.

    Returns:
        A 3x3 float64 matrix.
    """
    levels = max(0, int(np.ceil(np.log2(max(reference.shape) / _COARSEST_SIDE))))
    pyramid = [(reference, moving)]
    for _ in range(levels):
        pyramid.append(tuple(cv2.pyrDown(image) for image in pyramid[-1]))
    warp = np.eye(3)
    motion_type = cv2.MOTION_AFFINE if motion == "affine" else cv2.MOTION_HOMOGRAPHY
    scale = np.diag([2.0, 2.0, 1.0])
    for level, (ref, mov) in enumerate(reversed(pyramid)):
        if level > 0:
            warp = scale @ warp @ np.linalg.inv(scale)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100 if level == 0 else 30, 1e-6)
        matrix = warp[:2].astype(np.float32) if motion == "affine" else warp.astype(np.float32)
        try:
            _, matrix = cv2.findTransformECC(ref, mov, matrix, motion_type, criteria, None, 5)
        except cv2.error as error:
            raise ValueError(f"Frame registration (ECC) did not converge: {error.msg.strip()}") from error
        warp = np.vstack([matrix, [0, 0, 1]]) if motion == "affine" else matrix.astype(np.float64)
        warp = warp.astype(np.float64)
    return warp


def estimate_warp_features(
    reference: np.ndarray, moving: np.ndarray, motion: str = "affine"
) -> np.ndarray:
    """Estimates the warp from reference to moving coordinates with ORB features and RANSAC.

    Args:
        reference: (H, W) float32 gray reference in [0, 1].
        moving: (H, W) float32 gray frame in [0, 1].
        motion: ``affine`` or ``homography``.

    Returns:
        A 3x3 float64 matrix.
    """
    orb = cv2.ORB_create(nfeatures=5000)
    to8 = lambda image: np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    key_ref, desc_ref = orb.detectAndCompute(to8(reference), None)
    key_mov, desc_mov = orb.detectAndCompute(to8(moving), None)
    if desc_ref is None or desc_mov is None or min(len(key_ref), len(key_mov)) < 10:
        raise ValueError("Frame registration found too few features; try method='ecc'.")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(desc_ref, desc_mov)
    if len(matches) < 10:
        raise ValueError(f"Frame registration matched only {len(matches)} features; try ECC.")
    src = np.float32([key_ref[m.queryIdx].pt for m in matches])
    dst = np.float32([key_mov[m.trainIdx].pt for m in matches])
    if motion == "affine":
        matrix, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        warp = None if matrix is None else np.vstack([matrix, [0, 0, 1]])
    else:
        warp, _ = cv2.findHomography(src, dst, cv2.RANSAC, 2.0)
    if warp is None:
        raise ValueError("Frame registration (features) found no consistent transform.")
    return warp.astype(np.float64)


def common_area(masks: Sequence[np.ndarray]) -> tuple:
    """The largest centred-ish axis-aligned box that every mask covers completely.

    Shrinks the box from the side with the most uncovered pixels until none remain.

    Args:
        masks: (H, W) bool coverage masks.

    Returns:
        (top, bottom, left, right), bottom/right exclusive.
    """
    covered = np.logical_and.reduce(masks)
    top, bottom, left, right = 0, covered.shape[0], 0, covered.shape[1]
    while top < bottom and left < right:
        box = covered[top:bottom, left:right]
        edges = {
            "top": (~box[0]).sum(),
            "bottom": (~box[-1]).sum(),
            "left": (~box[:, 0]).sum(),
            "right": (~box[:, -1]).sum(),
        }
        side, missing = max(edges.items(), key=lambda item: item[1])
        if missing == 0:
            break
        if side == "top":
            top += 1
        elif side == "bottom":
            bottom -= 1
        elif side == "left":
            left += 1
        else:
            right -= 1
    return top, bottom, left, right


def align_images(
    images: Sequence[np.ndarray],
    reference_index: int | None = None,
    motion: str = "affine",
    method: str = "ecc",
    progress=None,
) -> Alignment:
    """Registers every frame to a reference frame, warps it and crops to the common area.

    Args:
        images: equal-size frames (gray or RGB; uint8, uint16 or float in [0, 1]).
        reference_index: the reference frame; None takes the middle one.
        motion: ``affine`` or ``homography``.
        method: ``ecc`` (intensity-based, sub-pixel) or ``features`` (ORB + RANSAC).
        progress: ``progress(iterable, description)`` wraps the loop over frames (a progress bar).

    Returns:
        An :class:`Alignment`.
    """
    if motion not in MOTION_MODELS:
        raise ValueError(f"motion must be one of {MOTION_MODELS}. Received: {motion!r}")
    if method not in ALIGN_METHODS:
        raise ValueError(f"method must be one of {ALIGN_METHODS}. Received: {method!r}")
    if reference_index is None:
        reference_index = len(images) // 2
    if not 0 <= reference_index < len(images):
        raise ValueError(f"reference_index must be in [0, {len(images)}). Received: {reference_index}")
    grays = [_unit_gray(image) for image in images]
    estimate = estimate_warp_ecc if method == "ecc" else estimate_warp_features
    frames = list(enumerate(grays)) if progress is None else progress(list(enumerate(grays)), "alignment")
    warps = [
        np.eye(3) if index == reference_index else estimate(grays[reference_index], gray, motion)
        for index, gray in frames
    ]
    return apply_warps(images, warps, reference_index)


def apply_warps(images: Sequence[np.ndarray], warps: Sequence[np.ndarray], reference_index: int) -> Alignment:
    """Warps frames with known warps (one registration reused for a rig) and crops them.

    Args:
        images: equal-size frames.
        warps: one 3x3 matrix per frame, as :attr:`Alignment.warps` holds them.
        reference_index: the reference frame (its warp is the identity).

    Returns:
        An :class:`Alignment`.
    """
    if len(warps) != len(images):
        raise ValueError(f"Expected one warp per frame: {len(images)} frames, {len(warps)} warps.")
    height, width = np.shape(images[0])[:2]
    warped, masks = [], []
    for index, (image, warp) in enumerate(zip(images, warps)):
        warp = np.asarray(warp, np.float64)
        mask = np.ones((height, width), np.uint8)
        if index == reference_index:
            warped.append(np.asarray(image))
        else:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            warped.append(cv2.warpPerspective(image, warp, (width, height), flags=flags))
            mask = cv2.warpPerspective(mask, warp, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        # Pixels next to the warped border mix in the constant fill: keep a one-pixel margin.
        masks.append(cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) > 0)
    top, bottom, left, right = common_area(masks)
    if bottom - top < 16 or right - left < 16:
        raise ValueError(
            f"The aligned frames share only a {bottom - top}x{right - left} area; they do not overlap enough."
        )
    cropped = [np.ascontiguousarray(image[top:bottom, left:right]) for image in warped]
    return Alignment(cropped, [np.asarray(w, np.float64) for w in warps], (top, bottom, left, right), reference_index)


def alignment_to_json(alignment: Alignment, shape: tuple) -> str:
    """The registration of an :class:`Alignment` (not its images) as JSON, for :func:`alignment_from_json`.

    Args:
        alignment: what :func:`align_images` returned.
        shape: (height, width) of the frames it registered.
    """
    return json.dumps({
        "format": "mfkeras-alignment-1",
        "frames": len(alignment.warps),
        "shape": [int(shape[0]), int(shape[1])],
        "reference_index": alignment.reference_index,
        "warps": [np.asarray(w, np.float64).tolist() for w in alignment.warps],
    }, indent=2) + "\n"


def alignment_from_json(text: str, frames: int, shape: tuple) -> tuple:
    """Reads a saved registration and checks it fits ``frames`` frames of ``shape``.

    Returns:
        ``(warps, reference_index)`` for :func:`apply_warps`.
    """
    try:
        data = json.loads(text)
        warps = [np.asarray(w, np.float64) for w in data["warps"]]
        reference_index, saved_shape = int(data["reference_index"]), tuple(data["shape"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Not a saved alignment ({type(error).__name__}: {error}).") from None
    if any(w.shape != (3, 3) or not np.all(np.isfinite(w)) for w in warps):
        raise ValueError("A saved alignment needs one finite 3x3 warp per frame.")
    if len(warps) != frames or saved_shape != tuple(shape[:2]):
        raise ValueError(
            f"The saved alignment is for {len(warps)} frames of {saved_shape[0]}x{saved_shape[1]}; "
            f"received {frames} frames of {shape[0]}x{shape[1]}."
        )
    if not 0 <= reference_index < frames:
        raise ValueError(f"The saved reference_index {reference_index} is not a frame index.")
    return warps, reference_index
