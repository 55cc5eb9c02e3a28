"""Writers for automatic-mask-generation results: SA-1B / COCO annotation JSON and PNG overlays."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samkit.amg.rle import coco_decode_rle, coco_encode_rle, mask_to_rle_pytorch, rle_to_mask


def _segmentation_to_mask(seg: Any) -> np.ndarray:
    if isinstance(seg, np.ndarray):
        return seg.astype(bool)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if isinstance(seg["counts"], (str, bytes)):
            return coco_decode_rle(seg)
        return rle_to_mask(seg)
    if hasattr(seg, "detach"):  # torch tensor
        return seg.detach().cpu().numpy().astype(bool)
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def _to_coco_rle(seg: Any) -> dict[str, Any]:
    if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
        counts = seg["counts"]
        return {
            "size": list(seg["size"]),
            "counts": counts.decode() if isinstance(counts, bytes) else counts,
        }
    if isinstance(seg, dict):
        return coco_encode_rle(seg)
    import torch

    mask = torch.as_tensor(_segmentation_to_mask(seg))
    return coco_encode_rle(mask_to_rle_pytorch(mask[None])[0])


def write_coco_json(
    path: str | os.PathLike, image_info: dict[str, Any], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Write one image's masks as SA-1B / COCO annotation JSON (atomically), and return it.

    Args:
        path: output .json file.
        image_info: must have `height` and `width`; `file_name` and `image_id` are copied when
            given (`image_id` defaults to 0).
        records: `SamAutomaticMaskGenerator.generate` records in any output mode.

    Returns:
        The written document `{"image": {...}, "annotations": [...]}`.
    """
    if "height" not in image_info or "width" not in image_info:
        raise ValueError("image_info needs 'height' and 'width'")
    h, w = int(image_info["height"]), int(image_info["width"])
    image = {"image_id": int(image_info.get("image_id", 0)), "height": h, "width": w}
    if "file_name" in image_info:
        image["file_name"] = str(image_info["file_name"])
    image.update({k: v for k, v in image_info.items() if k not in image})
    annotations = []
    for i, r in enumerate(records):
        seg = _to_coco_rle(r["segmentation"])
        if [int(v) for v in seg["size"]] != [h, w]:
            raise ValueError(f"record {i}: mask size {seg['size']} does not match image {h}x{w}")
        annotations.append(
            {
                "id": i,
                "segmentation": seg,
                "area": int(r["area"]),
                "bbox": [float(v) for v in r["bbox"]],
                "predicted_iou": float(r["predicted_iou"]),
                "point_coords": [[float(c) for c in p] for p in r["point_coords"]],
                "stability_score": float(r["stability_score"]),
                "crop_box": [float(v) for v in r["crop_box"]],
            }
        )
    doc = {"image": image, "annotations": annotations}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return doc


def _colours(n: int, seed: int) -> np.ndarray:
    """n distinct-ish RGB colours: golden-ratio hues, shuffled saturation/value."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.random()) % 1.0
    sat = 0.65 + 0.3 * rng.random(n)
    val = 0.75 + 0.25 * rng.random(n)
    i = np.floor(hues * 6).astype(int) % 6
    f = hues * 6 - np.floor(hues * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    table = np.stack(
        [
            np.stack([val, t, p], -1),
            np.stack([q, val, p], -1),
            np.stack([p, val, t], -1),
            np.stack([p, q, val], -1),
            np.stack([t, p, val], -1),
            np.stack([val, p, q], -1),
        ]
    )
    return (table[i, np.arange(n)] * 255).round().astype(np.uint8)


def render_overlay(
    image: np.ndarray | Image.Image,
    records: Sequence[dict[str, Any]],
    alpha: float = 0.5,
    outline: bool = True,
    seed: int = 0,
) -> Image.Image:
    """Draw every mask in a distinct colour, alpha-blended over the image, with an outline.

    Larger masks are drawn first so small ones stay visible.

    Args:
        image: HxWx3 uint8 RGB array or PIL image.
        records: generator records (any output mode).
        alpha: mask opacity in [0, 1].
        outline: draw each mask's boundary opaquely.
        seed: colour seed.

    Returns:
        An RGB PIL image.
    """
    if isinstance(image, Image.Image):
        from samkit.imageio import array_to_rgb_uint8, pil_to_array

        image = array_to_rgb_uint8(pil_to_array(image))
    base = np.asarray(image)
    if base.ndim != 3 or base.shape[2] != 3 or base.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {base.shape} {base.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = base.astype(np.float32)
    colours = _colours(len(records), seed).astype(np.float32)
    order = sorted(range(len(records)), key=lambda i: -int(records[i]["area"]))
    for i in order:
        m = _segmentation_to_mask(records[i]["segmentation"])
        if m.shape != base.shape[:2]:
            raise ValueError(f"record {i}: mask shape {m.shape} != image {base.shape[:2]}")
        out[m] = (1 - alpha) * out[m] + alpha * colours[i]
        if outline:
            edge = m.copy()
            inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
            edge[1:-1, 1:-1] &= ~inner
            out[edge] = colours[i]
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
