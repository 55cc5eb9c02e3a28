"""Input checks of `samkit.video.track_concepts.ConceptTracker`: frames, exemplar boxes, clicks
and detection thresholds, each a ValueError saying what is expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from samkit.configs.sam3_thresholds import check_score_threshold
from samkit.video.track_concepts_state import ConceptTrackState


def check_frame(state: ConceptTrackState, frame: Any) -> int:
    """`frame` as an int in [0, num_frames).

    Raises:
        ValueError: not an int, or outside the video.
    """
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ValueError(f"frame index must be an int, got {frame!r}")
    if not 0 <= int(frame) < state.num_frames:
        raise ValueError(f"frame {frame} is outside the video (frames 0..{state.num_frames - 1})")
    return int(frame)


def xywh_norm(state: ConceptTrackState, box: Sequence[float]) -> list[float]:
    """An XYXY pixel box as the official request's `[x, y, w, h]` normalised by the video size.

    Raises:
        ValueError: not 4 finite numbers, or a box outside the frame or with no area.
    """
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"a box is 4 finite numbers X0, Y0, X1, Y1 in pixels, got {box!r}")
    x0, y0, x1, y1 = b
    w, h = state.video_width, state.video_height
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(
            f"box {list(map(float, b))} must satisfy 0 <= X0 < X1 <= {w} and "
            f"0 <= Y0 < Y1 <= {h} (pixels of the {w}x{h} video)"
        )
    return [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h]


def check_clicks(points: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) float64 pixel points, (N,) int64 labels) of clicks.

    Raises:
        ValueError: no points, labels that are not one 0 / 1 per point, non-finite points.
    """
    if points is None or len(points) == 0:
        raise ValueError("give at least one click (points with labels 1 / 0)")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labs = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labs.shape[0] != pts.shape[0] or not np.isin(labs, (0, 1)).all():
        raise ValueError(f"labels must be one 0 / 1 per point, got {labels!r}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite pixel coordinates")
    return pts, labs


def check_threshold(threshold: Any) -> float | None:
    """A find's detection score threshold: None (the predictor's settings), or a number strictly
    between 0 and 1 (`samkit.configs.sam3_thresholds.check_score_threshold`, the one rule of
    every SAM 3 threshold a user gives: the web app's image and video Find, the CLI).

    Raises:
        ValueError: a bool, a non-number, NaN, or a number outside (0, 1).
    """
    return None if threshold is None else check_score_threshold(threshold)
