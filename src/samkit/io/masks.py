"""THE mask codec's file formats: mask PNGs, palette (id-map) PNGs, boxes and records.

The run-length encodings are in `samkit.io.rle` (re-exported here); image decoding lives in
`samkit.io.images` (re-exported: this module's old home). Shared by the command line
(`samkit segment / auto / embed / track`), the web app, video formats and evaluation.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from samkit.io.atomic import atomic_write_bytes
from samkit.io.images import (  # noqa: F401 - re-exported: the decoder's old home
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    ImageDecodeError,
    decode_image,
)
from samkit.io.rle import masks_to_coco_rle, rle_to_mask

__all__ = [
    "atomic_write_bytes",
    "coco_segmentation_to_mask",
    "davis_palette",
    "label_map",
    "mask_png_bytes",
    "mask_record",
    "mask_records",
    "masks_bbox_xywh",
    "masks_to_coco_rle",
    "palette_png_bytes",
    "png_bytes",
    "read_label_png",
    "split_label_map",
    "write_mask_png",
    "write_palette_png",
]


def png_bytes(image: Image.Image, compress_level: int | None = None) -> bytes:
    """The PNG file of a PIL image (zlib level 0-9; None: PIL's default)."""
    buf = io.BytesIO()
    options = {} if compress_level is None else {"compress_level": compress_level}
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def mask_png_bytes(mask: np.ndarray, compress_level: int = 6) -> bytes:
    """THE mask PNG of samkit: a 1-bit black (0) / white (1) PNG of an HxW mask.

    Every mask PNG samkit writes (`samkit segment`, `examples/quickstart.py`, the web app's
    "Download mask PNG") comes from here, so they all have this one pixel format. PIL reads it
    back as the same bool array (`np.array(Image.open(p))`); tools that know only 8-bit images
    (OpenCV, most viewers) read it as 0 / 255 greyscale.

    Args:
        mask: HxW array; non-zero pixels are the object.
        compress_level: zlib level 0-9 (the web app uses 1 for speed).

    Raises:
        ValueError: `mask` is not two-dimensional or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty HxW array, got shape {mask.shape}")
    return png_bytes(Image.fromarray(mask.astype(bool)), compress_level)


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write `mask_png_bytes(mask)` to `path` atomically (user's umask permissions)."""
    return atomic_write_bytes(path, mask_png_bytes(mask))


def davis_palette() -> np.ndarray:
    """(256, 3) uint8: the DAVIS / PASCAL VOC palette (id 1 dark red, 2 green, 3 olive, ...)."""
    ids = np.arange(256)
    pal = np.zeros((256, 3), np.int64)
    for j in range(8):
        for ch in range(3):
            pal[:, ch] |= ((ids >> (3 * j + ch)) & 1) << (7 - j)
    return pal.astype(np.uint8)


def label_map(masks: Any, obj_ids: Sequence[int]) -> np.ndarray:
    """Merge per-object masks into an HxW uint8 id map (smaller ids win where masks overlap).

    Args:
        masks: (O, H, W) bool-like masks (a torch tensor or an array; logits must be
            thresholded first).
        obj_ids: the O object ids, each in 1..255.

    Raises:
        ValueError: another shape, or an id outside 1..255.
    """
    m = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != len(obj_ids):
        raise ValueError(
            f"masks must be (O, H, W) with O = len(obj_ids) = {len(obj_ids)}, got {m.shape}"
        )
    out = np.zeros(m.shape[1:], np.uint8)
    for i in sorted(range(len(obj_ids)), key=lambda k: -int(obj_ids[k])):
        oid = int(obj_ids[i])
        if not 1 <= oid <= 255:
            raise ValueError(f"object id {oid} cannot be stored in a palette PNG (1..255)")
        out[m[i].astype(bool)] = oid
    return out


def palette_png_bytes(labels: np.ndarray) -> bytes:
    """An indexed PNG with the DAVIS palette of an HxW uint8 id map."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be an HxW uint8 array, got {labels.dtype} {labels.shape}")
    im = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    im.putpalette(davis_palette().tobytes())
    return png_bytes(im)


def write_palette_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write an id map as a DAVIS palette PNG (atomically)."""
    return atomic_write_bytes(path, palette_png_bytes(labels))


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """An annotation PNG as an HxW uint8 id map (palette "P" or grayscale "L" PNGs).

    Raises:
        ValueError: naming the file when it is unreadable or an RGB / other-mode image.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(
                    f"{path}: an annotation must be an indexed (palette) or grayscale PNG whose "
                    f"pixel values are object ids, got mode {im.mode}"
                )
            return np.array(im, dtype=np.uint8)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable PNG ({e})") from None


def split_label_map(labels: np.ndarray, ignore: Sequence[int] = (0, 255)) -> dict[int, np.ndarray]:
    """`{object_id: HxW bool mask}` for the ids present (0 background and 255 void skipped)."""
    ids = [int(i) for i in np.unique(labels) if int(i) not in ignore]
    return {i: labels == i for i in ids}


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


def mask_record(mask: np.ndarray) -> tuple[dict[str, Any], int, list[int]] | None:
    """(COCO RLE, area, XYWH box) of an HxW bool mask, or None when it is empty.

    The box uses the COCO convention (width = last column - first column + 1).
    """
    m = np.asarray(mask).astype(bool)
    area = int(np.count_nonzero(m))
    if area == 0:
        return None
    return masks_to_coco_rle(m[None])[0], area, masks_bbox_xywh(m[None])[0]


def coco_segmentation_to_mask(seg: Any, h: int, w: int) -> np.ndarray:
    """A COCO annotation's `segmentation` (polygon list, or RLE dict with list or string counts)
    as an HxW bool mask of an h x w image.

    Polygons (x0, y0, x1, y1, ... in pixels) are filled by PIL, outline pixels included.

    Raises:
        ValueError: a polygon with fewer than 6 or an odd number of coordinates, an RLE of
            another size or whose runs do not add up, or another type.
    """
    if isinstance(seg, list):
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        for poly in seg:
            if not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2:
                raise ValueError("a polygon needs an even number (>= 6) of coordinates")
            xy = [(float(x), float(y)) for x, y in zip(poly[::2], poly[1::2])]
            draw.polygon(xy, fill=1, outline=1)
        return np.array(canvas, dtype=bool)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        rh, rw = (int(s) for s in seg["size"])
        if (rh, rw) != (h, w):
            raise ValueError(f"RLE size {rh}x{rw} differs from the image size {h}x{w}")
        return rle_to_mask(seg)
    raise ValueError("expected a polygon list or an RLE dict with 'size' and 'counts'")
