"""Image decoding (with decompression-bomb limits) and mask encoding (PNG, COCO RLE, records).

Shared by the command line (`samkit segment / auto / embed`) and the web app.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from samkit.amg.rle import rle_counts_to_string
from samkit.fileio import (  # noqa: F401  (re-exported for the CLI and the engine)
    atomic_write_bytes,
    mask_png_bytes,
)

# Formats the app and CLI decode; anything else is "not an image" (no exotic parsers).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm")
DEFAULT_MAX_PIXELS = 64_000_000


class ImageDecodeError(ValueError):
    """The data is not a decodable image, or it is too large (decompression bomb)."""


def decode_image(
    source: bytes | str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an image to HxWx3 uint8 RGB, applying its EXIF orientation.

    The pixel count is checked from the header before any pixel is decoded.

    Args:
        source: encoded bytes, or a file path (the CLI; the web app only passes bytes).
        max_pixels: refuse images with more pixels than this.

    Raises:
        ImageDecodeError: not an image in a supported format, truncated, or over `max_pixels`.
    """
    if isinstance(source, bytes):
        fp: Any = io.BytesIO(source)
        name = "the upload"
    else:
        fp, name = Path(source), str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=IMAGE_FORMATS) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageDecodeError(
                        f"{name} is {w}x{h} = {w * h:,} pixels, over the limit of "
                        f"{max_pixels:,} pixels (decompression bomb protection)"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = np.array(img.convert("RGB"))
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"{name} is too large to decode safely: {e}") from None
    except FileNotFoundError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name} is not an image in a supported format ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises all three for bad data
        raise ImageDecodeError(
            f"{name} is not a readable image ({type(e).__name__}: {e})"
        ) from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageDecodeError(f"{name} decodes to an empty image")
    return rgb


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
    """Boxes of NxHxW masks as [x, y, w, h] with the official convention (w = x_max - x_min).

    An empty mask gets [0, 0, 0, 0].
    """
    m = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    out = []
    for x in m.astype(bool, copy=False):
        rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
        if rows.size == 0:
            out.append([0, 0, 0, 0])
        else:
            out.append(
                [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0]), int(rows[-1] - rows[0])]
            )
    return out


def mask_records(masks: np.ndarray, scores: Sequence[float]) -> list[dict[str, Any]]:
    """One record per mask: `score`, `area`, `bbox` (XYWH) and `segmentation` (COCO RLE)."""
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
