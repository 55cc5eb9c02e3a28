"""Writers for automatic-mask-generation results: COCO or SA-1B annotation JSON, PNG overlays."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from samkit.amg.rle import coco_decode_rle, coco_encode_rle, mask_to_rle_pytorch, rle_to_mask
from samkit.fileio import atomic_write_text


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


JSON_FORMATS = ("coco", "sa1b")
COCO_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


def write_coco_json(
    path: str | os.PathLike,
    image_info: dict[str, Any],
    records: Sequence[dict[str, Any]],
    format: str = "coco",
) -> dict[str, Any]:
    """Write one image's masks as annotation JSON (atomically), and return the document.

    Two layouts (`format`):

    - `"coco"` (default): a COCO instance-segmentation file that COCO tools load
      (`pycocotools.coco.COCO(path)`, detectron2, FiftyOne): `images` (one entry, `id`),
      `annotations` (`id` from 1, `image_id`, `category_id` 1, `segmentation` as COCO RLE,
      `area`, `bbox` XYWH, `iscrowd` 0, plus SAM's `predicted_iou`, `stability_score`,
      `point_coords`, `crop_box`) and `categories` (one class, "object": SAM masks have none).
    - `"sa1b"`: the per-image layout of Meta's SA-1B dataset and of the official
      `amg.py --convert-to-rle`: `{"image": {...}, "annotations": [...]}` with annotation ids
      from 0 and no `image_id` / `category_id` / `iscrowd` (COCO tools cannot load it).

    Args:
        path: output .json file.
        image_info: must have `height` and `width`; `file_name` and `image_id` are copied when
            given (`image_id` defaults to 0); other keys are kept in the image entry.
        records: `SamAutomaticMaskGenerator.generate` records in any output mode.
        format: "coco" or "sa1b".

    Returns:
        The written document.

    Raises:
        ValueError: unknown format, no height / width, or a mask of another size.
    """
    if format not in JSON_FORMATS:
        raise ValueError(f"format must be one of {', '.join(JSON_FORMATS)}, got {format!r}")
    if "height" not in image_info or "width" not in image_info:
        raise ValueError("image_info needs 'height' and 'width'")
    h, w = int(image_info["height"]), int(image_info["width"])
    image_id = int(image_info.get("image_id", 0))
    image = {"image_id": image_id, "height": h, "width": w}
    if "file_name" in image_info:
        image["file_name"] = str(image_info["file_name"])
    image.update({k: v for k, v in image_info.items() if k not in image})
    annotations = []
    for i, r in enumerate(records):
        seg = _to_coco_rle(r["segmentation"])
        if [int(v) for v in seg["size"]] != [h, w]:
            raise ValueError(f"record {i}: mask size {seg['size']} does not match image {h}x{w}")
        sam = {
            "predicted_iou": float(r["predicted_iou"]),
            "point_coords": [[float(c) for c in p] for p in r["point_coords"]],
            "stability_score": float(r["stability_score"]),
            "crop_box": [float(v) for v in r["crop_box"]],
        }
        area, bbox = int(r["area"]), [float(v) for v in r["bbox"]]
        if format == "coco":
            annotations.append(
                {
                    "id": i + 1,
                    "image_id": image_id,
                    "category_id": COCO_CATEGORY["id"],
                    "segmentation": seg,
                    "area": area,
                    "bbox": bbox,
                    "iscrowd": 0,
                    **sam,
                }
            )
        else:
            annotations.append({"id": i, "segmentation": seg, "area": area, "bbox": bbox, **sam})
    if format == "coco":
        entry = {"id": image_id, **{k: v for k, v in image.items() if k != "image_id"}}
        doc: dict[str, Any] = {
            "info": {"description": "samkit automatic masks"},
            "images": [entry],
            "annotations": annotations,
            "categories": [dict(COCO_CATEGORY)],
        }
    else:
        doc = {"image": image, "annotations": annotations}
    atomic_write_text(path, json.dumps(doc))
    return doc


def json_image_entry(doc: Any) -> dict[str, Any] | None:
    """The image entry of a document `write_coco_json` wrote (either format), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        return None
    image = doc.get("image")
    if image is None and isinstance(doc.get("images"), list) and len(doc["images"]) == 1:
        image = doc["images"][0]
    return image if isinstance(image, dict) else None


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
