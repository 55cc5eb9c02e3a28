"""SAM 2 mask post-processing: hole filling, sprinkle removal and upscaling (CPU, no CUDA kernel).

The official `SAM2Transforms.postprocess_masks` finds connected components with a CUDA extension
(8-connectivity). Here they come from `connected_components` (scipy, else opencv), which gives the
same components and areas on any device; the generators' small-region removal uses it too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MISSING_COMPONENTS = (
    "needs scipy or opencv for connected components: pip install 'samkit[amg]' (or scipy, or "
    "opencv-python-headless)"
)


def _backend() -> str | None:
    """ "scipy", "cv2" or None: the first importable connected-components kernel."""
    for name, module in (("scipy", "scipy.ndimage"), ("cv2", "cv2")):
        try:
            __import__(module)
            return name
        except ImportError:
            continue
    return None


def connected_components_available() -> bool:
    """Whether scipy or opencv is importable (needed by `connected_components`)."""
    return _backend() is not None


def require_scipy(what: str) -> None:
    """Raise a clear ImportError when no connected-components kernel (scipy, opencv) is there."""
    if _backend() is None:
        raise ImportError(
            f"{what} {MISSING_COMPONENTS}; or set max_hole_area = max_sprinkle_area = 0"
        )


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of each 2-D slice of a ...xHxW boolean array.

    THE connected components of samkit (SAM 2 hole / sprinkle filling, the video outputs' hole
    filling, the generators' `min_mask_region_area`): `scipy.ndimage.label` with a 3x3
    structuring element, else OpenCV's `connectedComponentsWithStats` (8-connectivity), which
    give the same components.

    Returns:
        labels: int32, same shape; 0 for background, else a component id (unique over slices,
            numbered in raster order).
        areas: int64, same shape; the pixel count of the pixel's component (0 for background).

    Raises:
        ValueError: fewer than two dimensions.
        ImportError: neither scipy nor opencv is installed.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < 2:
        raise ValueError(f"expected a ...xHxW mask, got shape {mask.shape}")
    h, w = mask.shape[-2:]
    flat = mask.reshape(-1, h, w)
    backend = _backend()
    if backend == "scipy":
        from scipy import ndimage

        # a 3x3x3 structure that only connects within a slice labels every slice in one call
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = True
        labels, n = ndimage.label(flat, structure=structure)
    elif backend == "cv2":
        import cv2  # type: ignore[import-not-found]

        labels = np.zeros(flat.shape, dtype=np.int32)
        n = 0
        for i, m in enumerate(flat):
            k, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
            labels[i] = np.where(lab > 0, lab + n, 0)
            n += int(k) - 1
    else:
        raise ImportError(f"connected components {MISSING_COMPONENTS}")
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    counts[0] = 0
    areas = counts[labels]
    return labels.reshape(mask.shape).astype(np.int32), areas.reshape(mask.shape).astype(np.int64)


def fill_holes_and_remove_sprinkles(
    masks: Tensor, mask_threshold: float, max_hole_area: float, max_sprinkle_area: float
) -> Tensor:
    """Official SAM 2 clean-up of BxCxhxw mask logits.

    Background components (logit <= threshold) with area <= `max_hole_area` are set to
    threshold + 10; foreground components (logit > threshold) with area <= `max_sprinkle_area`
    to threshold - 10. Both are found on the input logits (as in the official code, sprinkles are
    searched before the holes are filled). Components touching the border count too.
    """
    if max_hole_area <= 0 and max_sprinkle_area <= 0:
        return masks
    flat = masks.detach().float().cpu().numpy()
    out = masks
    if max_hole_area > 0:
        _, areas = connected_components(flat <= mask_threshold)
        is_hole = torch.from_numpy((areas > 0) & (areas <= max_hole_area)).to(masks.device)
        out = torch.where(is_hole, mask_threshold + 10.0, out)
    if max_sprinkle_area > 0:
        _, areas = connected_components(flat > mask_threshold)
        is_sprinkle = torch.from_numpy((areas > 0) & (areas <= max_sprinkle_area)).to(masks.device)
        out = torch.where(is_sprinkle, mask_threshold - 10.0, out)
    return out


def postprocess_masks(
    masks: Tensor,
    orig_hw: tuple[int, int],
    mask_threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
) -> Tensor:
    """BxCxhxw low-res logits -> BxCxHxW float32 logits at the original image size.

    The optional hole / sprinkle clean-up runs on the low-res logits, then they are resized
    bilinearly (the SAM 2 input is a plain square resize, so there is no padding to crop).
    """
    masks = fill_holes_and_remove_sprinkles(
        masks.float(), mask_threshold, max_hole_area, max_sprinkle_area
    )
    return F.interpolate(masks, tuple(orig_hw), mode="bilinear", align_corners=False)


def check_postprocess_settings(
    mask_threshold: float, max_hole_area: float, max_sprinkle_area: float
) -> None:
    """The predictors' mask post-processing settings (official `SAM2Transforms` arguments).

    Raises:
        ValueError: a value that is not a finite number, or a negative area.
    """
    for name, v in (
        ("mask_threshold", mask_threshold),
        ("max_hole_area", max_hole_area),
        ("max_sprinkle_area", max_sprinkle_area),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if max_hole_area < 0 or max_sprinkle_area < 0:
        raise ValueError("max_hole_area and max_sprinkle_area must be >= 0 (0 = off)")
