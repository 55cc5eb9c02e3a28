"""Writers for automatic-mask-generation results: one image's COCO or SA-1B JSON, PNG overlays."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from samkit.amg.coco import DEFAULT_CATEGORIES, check_categories, coco_annotation
from samkit.io import overlay
from samkit.io.atomic import atomic_write_text
from samkit.io.overlay import distinct_colours
from samkit.io.rle import segmentation_to_mask, to_coco_rle
from samkit.predict.inputs import as_rgb_uint8

JSON_FORMATS = ("coco", "sa1b")


def write_coco_json(
    path: str | os.PathLike,
    image_info: dict[str, Any],
    records: Sequence[dict[str, Any]],
    format: str = "coco",
    categories: Sequence[dict[str, Any]] = DEFAULT_CATEGORIES,
) -> dict[str, Any]:
    """Write one image's masks as annotation JSON (atomically), and return the document.

    Two layouts (`format`):

    - `"coco"` (default): a COCO instance-segmentation file that COCO tools load
      (`pycocotools.coco.COCO(path)`, detectron2, FiftyOne): `images` (one entry, `id`),
      `annotations` (`id` from 1, `image_id`, `category_id`, `segmentation` as COCO RLE,
      `area`, `bbox` XYWH as `pycocotools.mask.toBbox` gives it, `iscrowd` 0, `score`, plus
      SAM's `predicted_iou`, `stability_score`, `point_coords`, `crop_box`; see
      `samkit.amg.coco`) and `categories` (default: one class, "object": SAM masks have none).
      For many images, `samkit.amg.coco.coco_dataset` writes one file with unique ids.
    - `"sa1b"`: the per-image layout of Meta's SA-1B dataset and of the official
      `amg.py --convert-to-rle`: `{"image": {...}, "annotations": [...]}` with annotation ids
      from 0, no `image_id` / `category_id` / `iscrowd`, and the records' own `area` and
      `bbox` (the official convention, w = x_max - x_min: one pixel less than COCO's). COCO
      tools cannot load it.

    Args:
        path: output .json file.
        image_info: must have `height` and `width`; `file_name` and `image_id` are copied when
            given (`image_id` defaults to 0); other keys are kept in the image entry.
        records: `SamAutomaticMaskGenerator.generate` records in any output mode.
        format: "coco" or "sa1b".
        categories: the COCO categories (`"coco"`); a record's `category_id` (default 1)
            must be one of them.

    Returns:
        The written document.

    Raises:
        ValueError: unknown format, no height / width, a mask of another size, or an unknown
            category.
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
    if format == "coco":
        cats = check_categories(categories)
        ids = [c["id"] for c in cats]
        for i, r in enumerate(records):
            try:
                annotations.append(coco_annotation(r, i + 1, image_id, h, w, ids))
            except ValueError as e:
                raise ValueError(f"record {i}: {e}") from None
        entry = {"id": image_id, **{k: v for k, v in image.items() if k != "image_id"}}
        doc: dict[str, Any] = {
            "info": {"description": "samkit automatic masks"},
            "images": [entry],
            "annotations": annotations,
            "categories": cats,
        }
    else:
        for i, r in enumerate(records):
            seg = to_coco_rle(r["segmentation"])
            if seg["size"] != [h, w]:
                raise ValueError(
                    f"record {i}: mask size {seg['size']} does not match image {h}x{w}"
                )
            try:
                ann = {
                    "id": i,
                    "segmentation": seg,
                    "area": int(r["area"]),
                    "bbox": [float(v) for v in r["bbox"]],
                    "predicted_iou": float(r["predicted_iou"]),
                    "point_coords": [[float(c) for c in p] for p in r["point_coords"]],
                    "stability_score": float(r["stability_score"]),
                    "crop_box": [float(v) for v in r["crop_box"]],
                }
            except KeyError as e:
                raise ValueError(
                    f"record {i} has no {e.args[0]!r}: the SA-1B layout takes SAM 1 / 2 generator "
                    "records (area, bbox, predicted_iou, point_coords, stability_score, "
                    "crop_box); use format='coco' for others (SAM 3 concepts)"
                ) from None
            annotations.append(ann)
        doc = {"image": image, "annotations": annotations}
    atomic_write_text(path, json.dumps(doc))
    return doc


def render_overlay(
    image: np.ndarray | Image.Image,
    records: Sequence[dict[str, Any]],
    alpha: float = 0.5,
    outline: bool = True,
    seed: int = 0,
) -> Image.Image:
    """Draw every mask in a distinct colour, alpha-blended over the image, with an outline.

    Larger masks are drawn first so small ones stay visible (`samkit.io.overlay.render_overlay`
    draws).

    Args:
        image: a PIL image or an HxW, HxWx1, HxWx3 or HxWx4 array, read by the rule of
            `set_image` and `generate` (`samkit.predict.inputs.as_rgb_uint8`).
        records: generator records (any output mode).
        alpha: mask opacity in [0, 1].
        outline: draw each mask's boundary opaquely.
        seed: colour seed (`samkit.io.overlay.distinct_colours`).

    Returns:
        An RGB PIL image.

    Raises:
        ValueError: an image the rule refuses, alpha outside [0, 1], or a mask of another size.
    """
    base = as_rgb_uint8(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = distinct_colours(len(records), seed)
    order = sorted(range(len(records)), key=lambda i: -int(records[i]["area"]))
    masks = []
    for i in order:
        m = segmentation_to_mask(records[i]["segmentation"])
        if m.shape != base.shape[:2]:
            raise ValueError(
                f"record {i}: mask shape {m.shape} does not match the image {base.shape[:2]}"
            )
        masks.append(m)
    return overlay.render_overlay(base, masks, colours[order], alpha=alpha, outline=outline)
