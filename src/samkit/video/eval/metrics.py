"""DAVIS video object segmentation measures: region J, boundary F, J&F (numpy + scipy).

The definitions follow the DAVIS 2017 evaluation code (`davisvideochallenge/davis2017-evaluation`,
`davis2017/metrics.py`), which the published J&F numbers are computed with:

- J (region similarity) is the IoU of the ground-truth and predicted masks; a frame where both are
  empty scores 1.
- F (boundary accuracy) is the F-measure of boundary precision and recall. Boundaries are the
  one-pixel maps of `seg2bmap` (a pixel is on the boundary when it differs from its right, lower or
  lower-right neighbour). A predicted boundary pixel counts as correct when a ground-truth
  boundary pixel lies within `tolerance` pixels (Euclidean, a disk), and vice versa;
  `tolerance = ceil(bound_th * sqrt(H^2 + W^2))` with `bound_th = 0.008` (8 pixels at 854 x 480).
  Both empty: F = 1; exactly one empty: F = 0.
- Per object, the statistics over its evaluated frames are the mean M, the recall R (the share of
  frames scoring above 0.5) and the decay D (mean of the first quarter of frames minus the mean of
  the last quarter, DAVIS's binning). The semi-supervised protocol evaluates every frame but the
  first (the prompt) and the last. J&F is (J-Mean + F-Mean) / 2; the overall means average over
  all objects of all videos, as DAVIS reports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

BOUND_TH = 0.008


def _pair(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(
            f"ground truth {gt.shape} and prediction {pred.shape} must have the same shape"
        )
    if gt.ndim not in (2, 3):
        raise ValueError(f"masks must be HxW or TxHxW, got shape {gt.shape}")
    return gt, pred


def region_similarity(gt: Any, pred: Any) -> float | np.ndarray:
    """J: the IoU of binary masks, 1 where both are empty.

    Args:
        gt, pred: HxW or TxHxW masks (anything nonzero is foreground).

    Returns:
        A float for HxW input, a (T,) float64 array for TxHxW.
    """
    gt, pred = _pair(gt, pred)
    inter = np.count_nonzero(gt & pred, axis=(-2, -1))
    union = np.count_nonzero(gt | pred, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def boundary_tolerance(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Boundary match distance in pixels: `bound_th` itself when >= 1, else a share of the diagonal."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """HxW bool boundary map: pixels that differ from their right, lower or lower-right neighbour.

    The boundary lies half a pixel towards the origin from the true edge (the Berkeley
    segmentation benchmark convention DAVIS uses). Outside the image counts as background for the
    right and lower neighbours in the interior rows and columns; the last row compares only with
    its right neighbour, the last column only with its lower one, and the corner is never set.
    """
    seg = np.asarray(mask).astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _dilate_disk(boundary: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Euclidean distance `radius` of a boundary pixel (= dilation by a disk)."""
    if not boundary.any():
        return boundary.copy()
    # distance to the nearest boundary pixel; sqrt of an integer is correctly rounded, so
    # `d <= radius` is exactly `dx^2 + dy^2 <= radius^2`, the disk of skimage.morphology.disk.
    return ndimage.distance_transform_edt(~boundary) <= radius


def boundary_f(gt: Any, pred: Any, bound_th: float = BOUND_TH) -> float | np.ndarray:
    """F: the DAVIS boundary F-measure (see the module docstring).

    Args:
        gt, pred: HxW or TxHxW masks.
        bound_th: tolerance as a share of the image diagonal (< 1) or in pixels (>= 1).

    Returns:
        A float for HxW input, a (T,) float64 array for TxHxW.
    """
    gt, pred = _pair(gt, pred)
    if gt.ndim == 3:
        return np.array([boundary_f(g, p, bound_th) for g, p in zip(gt, pred)], dtype=np.float64)
    radius = boundary_tolerance(gt.shape[0], gt.shape[1], bound_th)
    fg_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_fg, n_gt = int(np.count_nonzero(fg_b)), int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0  # precision 1, recall 0 or the reverse: F = 0 either way
    precision = np.count_nonzero(fg_b & _dilate_disk(gt_b, radius)) / n_fg
    recall = np.count_nonzero(gt_b & _dilate_disk(fg_b, radius)) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """DAVIS per-object statistics of per-frame scores: mean, recall (share > 0.5) and decay."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"need a non-empty 1-D list of per-frame scores, got shape {v.shape}")
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with np.errstate(invalid="ignore"):
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return {"mean": float(np.nanmean(v)), "recall": float(np.nanmean(v > 0.5)), "decay": decay}


def evaluate_object(gt: Any, pred: Any, bound_th: float = BOUND_TH) -> dict[str, Any]:
    """J, F and J&F of one object over its evaluated frames (TxHxW masks, T >= 1).

    Returns:
        `{"J": {"mean", "recall", "decay", "per_frame"}, "F": {...}, "J&F": float}`.
    """
    gt, pred = _pair(gt, pred)
    if gt.ndim != 3 or gt.shape[0] == 0:
        raise ValueError(f"an object's masks must be TxHxW with T >= 1, got shape {gt.shape}")
    j = np.atleast_1d(region_similarity(gt, pred))
    f = np.atleast_1d(boundary_f(gt, pred, bound_th))
    return object_result(j, f)


def object_result(j: Sequence[float], f: Sequence[float]) -> dict[str, Any]:
    """`{"J": {"mean", "recall", "decay", "per_frame"}, "F": {...}, "J&F"}` of per-frame scores."""
    out: dict[str, Any] = {}
    for name, vals in (("J", j), ("F", f)):
        out[name] = {**statistics(vals), "per_frame": [float(x) for x in vals]}
    out["J&F"] = (out["J"]["mean"] + out["F"]["mean"]) / 2
    return out


def summarize(per_video: Mapping[str, Mapping[Any, Mapping[str, Any]]]) -> dict[str, Any]:
    """Per-video and overall means from `{video: {object_id: evaluate_object(...)}}`.

    Returns:
        `{"videos": {video: {"J", "F", "J&F", "objects": {id: {...}}}}, "overall": {"J-Mean",
        "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "J&F-Mean", "objects"}}`; the
        overall values average over all objects, as DAVIS does.
    """
    videos: dict[str, Any] = {}
    allobj: list[Mapping[str, Any]] = []
    for name, objects in per_video.items():
        objs = list(objects.values())
        if not objs:
            raise ValueError(f"video {name}: no objects to summarize")
        allobj.extend(objs)
        jm = float(np.mean([o["J"]["mean"] for o in objs]))
        fm = float(np.mean([o["F"]["mean"] for o in objs]))
        videos[name] = {
            "J": jm,
            "F": fm,
            "J&F": (jm + fm) / 2,
            "objects": {str(k): v for k, v in objects.items()},
        }
    if not allobj:
        raise ValueError("no videos to summarize")
    overall: dict[str, Any] = {}
    for m in ("J", "F"):
        for stat, key in (("Mean", "mean"), ("Recall", "recall"), ("Decay", "decay")):
            overall[f"{m}-{stat}"] = float(np.mean([o[m][key] for o in allobj]))
    overall["J&F-Mean"] = (overall["J-Mean"] + overall["F-Mean"]) / 2
    overall["objects"] = len(allobj)
    return {"videos": videos, "overall": overall}
