"""Argument checks of the automatic mask generator (clear ValueErrors)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_float(name: str, v: Any, lo: float, hi: float, hi_open: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or v < lo or v > hi or (hi_open and v == hi):
        interval = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{name} must be in {interval}, got {v}")


def check_params(
    *,
    points_per_side: Any,
    points_per_batch: Any,
    pred_iou_thresh: Any,
    stability_score_thresh: Any,
    stability_score_offset: Any,
    box_nms_thresh: Any,
    crop_n_layers: Any,
    crop_nms_thresh: Any,
    crop_overlap_ratio: Any,
    crop_n_points_downscale_factor: Any,
    point_grids: Any,
    min_mask_region_area: Any,
) -> None:
    """Raise ValueError for any generator argument outside its valid range."""
    if (points_per_side is None) == (point_grids is None):
        raise ValueError("exactly one of points_per_side and point_grids must be given")
    if points_per_side is not None and (not _is_int(points_per_side) or points_per_side < 1):
        raise ValueError(f"points_per_side must be an int >= 1, got {points_per_side!r}")
    if not _is_int(points_per_batch) or points_per_batch < 1:
        raise ValueError(f"points_per_batch must be an int >= 1, got {points_per_batch!r}")
    _check_float("pred_iou_thresh", pred_iou_thresh, 0.0, 1.0)
    _check_float("stability_score_thresh", stability_score_thresh, 0.0, 1.0)
    _check_float("stability_score_offset", stability_score_offset, 0.0, math.inf)
    _check_float("box_nms_thresh", box_nms_thresh, 0.0, 1.0)
    _check_float("crop_nms_thresh", crop_nms_thresh, 0.0, 1.0)
    _check_float("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0, hi_open=True)
    if not _is_int(crop_n_layers) or crop_n_layers < 0:
        raise ValueError(f"crop_n_layers must be an int >= 0, got {crop_n_layers!r}")
    if not _is_int(crop_n_points_downscale_factor) or crop_n_points_downscale_factor < 1:
        raise ValueError(
            f"crop_n_points_downscale_factor must be an int >= 1, got {crop_n_points_downscale_factor!r}"
        )
    if not _is_int(min_mask_region_area) or min_mask_region_area < 0:
        raise ValueError(f"min_mask_region_area must be an int >= 0, got {min_mask_region_area!r}")
    if point_grids is not None:
        if not isinstance(point_grids, (list, tuple)) or len(point_grids) < crop_n_layers + 1:
            raise ValueError(
                f"point_grids must be a list of crop_n_layers + 1 = {crop_n_layers + 1} Nx2 arrays"
            )
        for i, g in enumerate(point_grids):
            g = np.asarray(g)
            if g.ndim != 2 or g.shape[1] != 2 or g.shape[0] == 0:
                raise ValueError(f"point_grids[{i}] must be a non-empty Nx2 array, got {g.shape}")
            if not np.isfinite(g).all() or (g < 0).any() or (g > 1).any():
                raise ValueError(f"point_grids[{i}] must hold finite coordinates in [0, 1]")
    if points_per_side is not None:
        n_last = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
        if n_last < 1:
            raise ValueError(
                f"crop layer {crop_n_layers} gets no points: points_per_side={points_per_side}, "
                f"crop_n_points_downscale_factor={crop_n_points_downscale_factor}"
            )
