"""SAM 2 mask post-processing: hole filling, sprinkle removal and upscaling (CPU, no CUDA kernel).

The official `SAM2Transforms.postprocess_masks` finds connected components with a CUDA extension
(8-connectivity). Here they come from `scipy.ndimage.label` with a 3x3 structuring element, which
gives the same components and areas on any device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def require_scipy(what: str) -> None:
    """Raise a clear ImportError when scipy (needed for connected components) is missing."""
    try:
        import scipy.ndimage  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"{what} needs scipy for connected components: pip install scipy "
            "(or samkit[amg]); or set max_hole_area = max_sprinkle_area = 0"
        ) from e


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of each 2-D slice of a ...xHxW boolean array.

    Returns:
        labels: int32, same shape; 0 for background, else a component id (unique over slices).
        areas: int64, same shape; the pixel count of the pixel's component (0 for background).
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < 2:
        raise ValueError(f"expected a ...xHxW mask, got shape {mask.shape}")
    h, w = mask.shape[-2:]
    flat = mask.reshape(-1, h, w)
    # a 3x3x3 structure that only connects within a slice labels every slice in one call
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, n = ndimage.label(flat, structure=structure)
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
