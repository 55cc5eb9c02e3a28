"""The prompts of the path matrix, on `sam1_shapes/shapes_1.png` (480 x 640).

Coordinates are original-image pixels. The points and boxes sit on the picture's shapes (its
ground-truth instance boxes), so sam1_shapes' masks are real blobs rather than noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.conftest import FIXTURES, load_rgb

IMAGE = FIXTURES / "sam1_shapes" / "shapes_1.png"
# A second picture for SAM 2's set_image_batch (the fixture truck, smaller to stay quick).
OTHER_IMAGE = "groceries.jpg"

BOXES = np.array(
    [[464.0, 45.0, 639.0, 299.0], [39.0, 261.0, 271.0, 417.0], [276.0, 0.0, 354.0, 202.0]]
)


def image() -> np.ndarray:
    return load_rgb(str(IMAGE))


def other_image() -> np.ndarray:
    return load_rgb(OTHER_IMAGE)


def _point(ref: Any) -> dict[str, Any]:
    return {"point_coords": np.array([[163.0, 346.0]]), "point_labels": np.array([1])}


def _points_neg(ref: Any) -> dict[str, Any]:
    return {
        "point_coords": np.array([[551.0, 172.0], [600.0, 250.0], [163.0, 346.0]]),
        "point_labels": np.array([1, 1, 0]),
    }


def _box(ref: Any) -> dict[str, Any]:
    return {"box": BOXES[0].copy()}


def _box_points(ref: Any) -> dict[str, Any]:
    return {
        "box": BOXES[1].copy(),
        "point_coords": np.array([[150.0, 340.0], [60.0, 400.0]]),
        "point_labels": np.array([1, 0]),
    }


def _boxes(ref: Any) -> dict[str, Any]:
    return {"box": BOXES.copy()}


def _mask_input(ref: Any) -> dict[str, Any]:
    """One point plus the low-res logits of the reference's best multimask answer to it
    (the interactive "refine with the previous mask" call); every path gets the same array."""
    kw = _point(ref)
    _, iou, low_res = ref.predict(**kw, multimask_output=True)
    return {**kw, "mask_input": low_res[int(np.argmax(iou))][None].astype(np.float32)}


PROMPTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "point": _point,
    "points_neg": _points_neg,
    "box": _box,
    "box_points": _box_points,
    "boxes": _boxes,
    "mask_input": _mask_input,
}


def companion(kw: dict[str, Any]) -> dict[str, Any]:
    """A different prompt of the same structure, to batch with `kw` (B = 2) in one call."""
    out: dict[str, Any] = {}
    if "box" in kw:
        out["box"] = BOXES[2] if not np.array_equal(kw["box"], BOXES[2]) else BOXES[0]
    if "point_coords" in kw:
        out["point_coords"] = kw["point_coords"][::-1] + np.array([7.0, -11.0])
        out["point_labels"] = kw["point_labels"][::-1]
    if "mask_input" in kw:
        out["mask_input"] = -kw["mask_input"]
    return out


def stack(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`a` and `b` as one B = 2 call (boxes 2x4, points 2xNx2, masks 2x1xhxw)."""
    return {k: np.stack([np.asarray(a[k]), np.asarray(b[k])]) for k in a}
