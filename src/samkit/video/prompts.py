"""Validation and conversion of video prompts (points, boxes, masks) to model inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.video_memory import Clicks
from samkit.predict.inputs import check_boxes
from samkit.video.session import InferenceSession


def _as_float_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from e
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def point_input(
    points: Any,
    labels: Any,
    box: Any,
    clear_old_points: bool,
    normalize_coords: bool,
    state: InferenceSession,
    image_size: int,
) -> Clicks:
    """Clicks of one object: 1xNx2 float32 in model-input pixels, 1xN int32 labels.

    A box comes first as two points labelled 2 and 3 (as SAM 2 was trained). Coordinates are
    in video pixels, or already in [0, 1] with `normalize_coords=False`.

    Raises:
        ValueError: points without labels or the reverse, N different from the label count,
            points not Nx2, no points and no box, a box with clear_old_points=False, a box that
            is not 4 numbers or has x1 < x0 or y1 < y0, labels other than 0/1, NaN or infinite
            values.
    """
    if (points is None) != (labels is None):
        raise ValueError(
            "points and labels must be given together (labels: 1 positive, 0 negative)"
        )
    if points is None and box is None:
        raise ValueError("give points with labels, or a box (or both)")
    coords = np.zeros((0, 2))
    labs = np.zeros((0,), dtype=np.int64)
    if points is not None:
        coords = _as_float_array(points, "points")
        if coords.ndim == 3 and coords.shape[0] == 1:
            coords = coords[0]
        if coords.ndim != 2 or coords.shape[-1] != 2:
            raise ValueError(f"points must be Nx2 (x, y), got shape {coords.shape}")
        lab = _as_float_array(labels, "labels")
        if lab.ndim == 2 and lab.shape[0] == 1:
            lab = lab[0]
        if lab.ndim != 1 or lab.shape[0] != coords.shape[0]:
            raise ValueError(
                f"{coords.shape[0]} points but labels of shape {lab.shape}; expected one label "
                "per point"
            )
        if not np.all(np.isin(lab, (0, 1))):
            raise ValueError("labels must be 1 (positive) or 0 (negative)")
        labs = lab.astype(np.int64)
    if box is not None:
        if not clear_old_points:
            raise ValueError(
                "a box must come before any click: use clear_old_points=True with a box"
            )
        b = _as_float_array(box, "box").reshape(-1)
        if b.shape[0] != 4:
            raise ValueError(f"box must be (x0, y0, x1, y1), got {b.shape[0]} numbers")
        check_boxes(b)
        coords = np.concatenate([b.reshape(2, 2), coords], axis=0)
        labs = np.concatenate([np.array([2, 3]), labs])
    pts = torch.tensor(coords, dtype=torch.float32)[None]
    if normalize_coords:
        pts = pts / torch.tensor([state.video_width, state.video_height])
    pts = pts * image_size
    return Clicks(
        pts.to(state.device), torch.tensor(labs, dtype=torch.int32)[None].to(state.device)
    )


def mask_input(mask: Any, state: InferenceSession, image_size: int) -> Tensor:
    """A 1x1xSxS float 0/1 mask prompt from an HxW mask of the video's size or 256x256.

    Raises:
        ValueError: not 2-D, or a size that is neither the video's, 256x256 nor SxS.
    """
    m = mask.detach().cpu() if isinstance(mask, Tensor) else torch.as_tensor(np.asarray(mask))
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {tuple(m.shape)}")
    h, w = state.video_height, state.video_width
    allowed = {(h, w), (256, 256), (image_size, image_size)}
    if tuple(m.shape) not in allowed:
        raise ValueError(
            f"mask of size {tuple(m.shape)}; expected the video size {(h, w)} or 256x256"
        )
    m = m.bool()[None, None].float().to(state.device)
    if tuple(m.shape[-2:]) != (image_size, image_size):
        m = F.interpolate(
            m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
        m = (m >= 0.5).float()
    return m
