"""Input checks and conversions shared by every predictor.

numpy and PIL only, so the onnxruntime backend validates exactly like the torch predictors
without importing torch. Prompts come back in original-image pixels; each predictor maps them to
its model frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from samkit.io.images import array_to_rgb_uint8, pil_to_array

VALID_LABELS = (-1, 0, 1, 2, 3)


def get_preprocess_shape(old_h: int, old_w: int, long_side_length: int) -> tuple[int, int]:
    """Size (H, W) after resizing so that the longest side is `long_side_length` (official rounding)."""
    scale = long_side_length * 1.0 / max(old_h, old_w)
    new_h, new_w = old_h * scale, old_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def as_rgb_uint8(image: Any, image_format: str = "RGB") -> np.ndarray:
    """Convert a PIL image or an image array to an HxWx3 uint8 RGB array.

    Arrays are HxW or HxWx{1,3,4} (alpha dropped) of uint8 (as is), uint16 (`>> 8`), float
    with values in [0, 1] (`* 255`, rounded) or other integers holding 8- or 16-bit values:
    the rule of `samkit.io.images`, which also reads PIL images (16-bit and float modes included).
    For a percentile stretch instead, pass `samkit.io.images.array_to_rgb_uint8(x, stretch=True)`.

    Raises:
        ValueError: an unknown `image_format`, a non-image object, a wrong shape, an empty
            image, or values the rule cannot place (NaN, floats outside [0, 1], ...).
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if isinstance(image, Image.Image):
        image = pil_to_array(image)
        image_format = "RGB"
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"expected an HxWx3 uint8 numpy array or a PIL image, got {type(image).__name__}"
        )
    image = array_to_rgb_uint8(image)
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def finite_array(name: str, value: Any, dtype: type = np.float64) -> np.ndarray:
    """`value` as an array of `dtype`, refusing non-numeric input and NaN / inf."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, got {value!r:.80}") from e
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: np.ndarray) -> None:
    bad = ~np.isin(labels, VALID_LABELS)
    if bad.any():
        raise ValueError(
            f"point_labels must be in {{-1, 0, 1, 2, 3}} (1 foreground, 0 background, -1 padding, "
            f"2/3 box corners); got {sorted(set(labels[bad].tolist()))}"
        )


def check_boxes(boxes: np.ndarray) -> None:
    if (boxes[..., 2] < boxes[..., 0]).any() or (boxes[..., 3] < boxes[..., 1]).any():
        raise ValueError("boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")


def int_labels(point_labels: Any) -> np.ndarray:
    """Point labels as int64, refusing non-numeric, non-finite and fractional values."""
    lab = np.asarray(point_labels)
    if lab.dtype.kind not in "iuf" or not np.isfinite(lab).all():
        raise ValueError(f"point_labels must be integers, got dtype {lab.dtype}")
    if lab.dtype.kind == "f" and not np.equal(np.round(lab), lab).all():
        raise ValueError("point_labels must be whole numbers")
    return lab.astype(np.int64)


@dataclass(frozen=True)
class Prompts:
    """Checked prompts in original-image pixels.

    Attributes:
        coords: BxNx2 points (x, y), float64, or None.
        labels: BxN int64 labels, or None.
        boxes: Bx4 boxes (x0, y0, x1, y1), float64, or None.
        mask_input: Bx1xhxw float32 low-res logits, or None.
        batch: B, the number of prompts decoded together.
        batched: whether results keep the leading B axis (B > 1).
    """

    coords: np.ndarray | None
    labels: np.ndarray | None
    boxes: np.ndarray | None
    mask_input: np.ndarray | None
    batch: int
    batched: bool


def validate_prompts(
    point_coords: Any,
    point_labels: Any,
    box: Any,
    mask_input: Any,
    mask_input_size: tuple[int, int],
) -> Prompts:
    """Check `predict`'s prompt arguments; every problem is a ValueError saying what is expected.

    B prompts are decoded at once: B boxes (Bx4), or B point sets (BxNx2, or Nx2 shared by every
    box), or B masks (Bx1xhxw, or 1xhxw shared). Coordinates outside the image are allowed.
    """
    if point_coords is None and point_labels is not None:
        raise ValueError("point_labels were given without point_coords")
    if point_coords is not None and point_labels is None:
        raise ValueError("point_coords need point_labels (1 foreground, 0 background)")
    if point_coords is None and box is None and mask_input is None:
        raise ValueError("no prompt: give point_coords + point_labels, a box, or a mask_input")

    n: int | None = None  # B: from the boxes, else the point sets, else the masks
    boxes = None
    if box is not None:
        boxes = finite_array("box", box)
        if boxes.ndim == 1:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
            raise ValueError(f"box must have shape (4,) or (B, 4), got {np.shape(box)}")
        check_boxes(boxes)
        n = boxes.shape[0]

    coords = labels = None
    if point_coords is not None:
        coords = finite_array("point_coords", point_coords)
        labels = int_labels(point_labels)
        if coords.ndim == 2:
            coords, labels = coords[None], labels[None] if labels.ndim == 1 else labels
        if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[1] == 0:
            raise ValueError(
                f"point_coords must have shape (N, 2) (or (B, N, 2) with B boxes), "
                f"got {np.shape(point_coords)}"
            )
        if labels.shape != coords.shape[:2]:
            raise ValueError(
                f"point_labels shape {np.shape(point_labels)} does not match point_coords "
                f"shape {np.shape(point_coords)}: one label per point"
            )
        check_labels(labels)
        if n is None:
            n = coords.shape[0]
        elif coords.shape[0] == 1 and n > 1:
            coords, labels = np.repeat(coords, n, 0), np.repeat(labels, n, 0)
        if coords.shape[0] != n:
            raise ValueError(f"{coords.shape[0]} point sets for {n} boxes")

    masks = None
    if mask_input is not None:
        masks = finite_array("mask_input", mask_input, np.float32)
        h, w = mask_input_size
        if masks.shape == (1, h, w):
            masks = masks[None]
        if n is None and masks.ndim == 4:
            n = masks.shape[0]
        if masks.shape == (1, 1, h, w) and n is not None and n > 1:
            masks = np.repeat(masks, n, 0)
        if masks.shape != (n, 1, h, w):
            raise ValueError(
                f"mask_input must have shape (1, {h}, {w}) (low-res logits of an earlier "
                f"predict) or ({n or 'B'}, 1, {h}, {w}); got {np.shape(mask_input)}"
            )
    n = n or 1
    return Prompts(coords, labels, boxes, masks, n, n > 1)


CLICK_LABELS = (0, 1)


def click_label(label: int) -> int:
    """A click's label, which is 1 (foreground) or 0 (background) for users (the web app).

    The predictors also take -1 (padding) and 2 / 3 (box corners), which are internal.

    Raises:
        ValueError: another value.
    """
    if label not in CLICK_LABELS:
        raise ValueError(f"label {label}: 1 = foreground, 0 = background")
    return label


def check_click_prompt(
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    box: Sequence[float] | None,
    frame_size: tuple[int, int] | None = None,
) -> Prompts:
    """Check a user's clicks and box with the predictors' rules (`validate_prompts`), plus the
    click labels (`click_label`) and, where `frame_size` is given, the frame bounds.

    For prompts that are checked before a predictor sees them (the web app's video mode queues
    them for a tracking job); the image mode leaves the check to the predictor.

    Args:
        points: N (x, y) clicks in pixels; labels: N labels; box: (x0, y0, x1, y1) pixels or None.
        frame_size: (width, height): points and boxes outside it are refused (the video mode);
            None allows them (the model takes them; the image mode warns).

    Returns:
        The checked `Prompts`.

    Raises:
        ValueError: naming the problem (labels not one per point, no prompt, a label other than
            0 / 1, non-finite numbers, a box with x1 < x0 or y1 < y0, outside the frame).
    """
    p = validate_prompts(
        np.asarray(points, dtype=np.float64) if len(points) else None,
        np.asarray(labels) if len(points) or len(labels) else None,
        None if box is None else np.asarray(box, dtype=np.float64),
        None,
        (0, 0),
    )
    for lab in labels:
        click_label(int(lab))
    if frame_size is not None:
        w, h = frame_size
        for i, (x, y) in enumerate(points):
            if not (0 <= x <= w and 0 <= y <= h):
                raise ValueError(f"point {i} ({x}, {y}) is outside the {w}x{h} frame")
        if box is not None:
            x0, y0, x1, y1 = box
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise ValueError(f"the box {list(box)} is outside the {w}x{h} frame")
    return p


class ImageNotSetError(ValueError, RuntimeError):
    """Predicting before an image is set (a ValueError like samkit's other bad input, and the
    RuntimeError the official predictor raises)."""
