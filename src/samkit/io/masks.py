"""Mask encoding (PNG, COCO RLE, records); image decoding lives in `samkit.io.images` (re-exported).

Shared by the command line (`samkit segment / auto / embed`) and the web app.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from samkit.io.atomic import (  # noqa: F401  (re-exported for the CLI and the engine)
    atomic_write_bytes,
    mask_png_bytes,
)
from samkit.io.images import (  # noqa: F401 - re-exported: the decoder's old home
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    ImageDecodeError,
    decode_image,
)
from samkit.io.rle import rle_counts_to_string


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of an HxW bool mask in column-major order, starting with a run of zeros."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    return np.concatenate(([0], counts)) if flat.size and flat[0] else counts


def masks_to_coco_rle(masks: np.ndarray | torch.Tensor) -> list[dict[str, Any]]:
    """COCO RLEs (`{"size": [H, W], "counts": str}`, pycocotools-compatible) of NxHxW masks."""
    m = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be NxHxW, got shape {m.shape}")
    m = m.astype(bool, copy=False)
    h, w = m.shape[1:]

    def encode(x: np.ndarray) -> dict[str, Any]:
        return {"size": [h, w], "counts": rle_counts_to_string(_runs(x))}

    if len(m) > 1 and h * w >= 1 << 20:  # numpy releases the GIL: big masks in parallel
        return list(_rle_pool().map(encode, m))
    return [encode(x) for x in m]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _rle_pool() -> ThreadPoolExecutor:
    """Two threads for RLE-encoding masks in parallel (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="samkit-rle")
        return _POOL


def masks_bbox_xywh(masks: np.ndarray | torch.Tensor) -> list[list[int]]:
    """Boxes of NxHxW masks as [x, y, w, h] covering the mask's pixels (w = x_max - x_min + 1).

    This is COCO's convention (what `pycocotools.mask.toBbox` gives, the same box as
    `samkit.io.rle.bbox_from_rle`), used by every COCO-style record samkit writes; only the
    official generator's records (`SamAutomaticMaskGenerator.generate`, `--format sa1b`) keep the
    official w = x_max - x_min. An empty mask gets [0, 0, 0, 0].
    """
    m = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    out = []
    for x in m.astype(bool, copy=False):
        rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
        if rows.size == 0:
            out.append([0, 0, 0, 0])
        else:
            out.append(
                [
                    int(cols[0]),
                    int(rows[0]),
                    int(cols[-1] - cols[0] + 1),
                    int(rows[-1] - rows[0] + 1),
                ]
            )
    return out


def mask_records(masks: np.ndarray, scores: Sequence[float]) -> list[dict[str, Any]]:
    """One record per mask: `score`, `area`, `bbox` (XYWH, COCO's `toBbox` convention) and
    `segmentation` (COCO RLE)."""
    masks = np.asarray(masks).astype(bool, copy=False)
    rles = masks_to_coco_rle(masks)
    boxes = masks_bbox_xywh(masks)
    areas = [int(np.count_nonzero(m)) for m in masks]
    return [
        {"score": float(s), "area": a, "bbox": b, "segmentation": r}
        for s, a, b, r in zip(scores, areas, boxes, rles)
    ]


def draw_prompts(
    image: Image.Image,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    boxes: Sequence[Sequence[float]] = (),
) -> Image.Image:
    """Draw points (green foreground, red background, white rim) and boxes on an RGB image."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    r = max(5, round(max(out.size) / 90))
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=max(2, r // 2 + 1))
        draw.rectangle([x0, y0, x1, y1], outline=(30, 144, 255), width=max(1, r // 2))
    for (x, y), lab in zip(points, labels):
        fill = (40, 200, 60) if int(lab) == 1 else (230, 40, 40)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=2)
    return out


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
