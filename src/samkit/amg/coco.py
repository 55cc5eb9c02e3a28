"""COCO instance-segmentation annotations of automatic masks, and a run's one COCO dataset file.

Conventions (what `pycocotools` computes from the mask itself):

- `segmentation`: COCO RLE `{"size": [h, w], "counts": str}` (`samkit.io.rle.to_coco_rle`).
- `area`: the mask's pixel count (`pycocotools.mask.area`).
- `bbox`: XYWH covering the mask's pixels, `pycocotools.mask.toBbox` (w = x_max - x_min + 1).
  The official SAM generator's records, and so `generate()` and the SA-1B layout, use
  w = x_max - x_min, one pixel less; COCO files never do.
- `iscrowd` 0; `score` = `predicted_iou`, so that the annotations are also a COCO results list
  (`COCO.loadRes`); SAM's `predicted_iou`, `stability_score`, `point_coords` and `crop_box` are
  kept as extra fields. A SAM 3 record (`samkit.amg.sam3`) has a `score` instead (the
  detector's, official) and keeps `box_xyxy` (the detector's box, pixels).
- `category_id`: a record's own `category_id` when it has one, else 1. Categories are a list
  (`DEFAULT_CATEGORIES` is the one class "object" of SAM 1 / 2 masks), so that text concepts
  (SAM 3) can each become a category.
- Ids start at 1 (`COCOeval` treats annotation id 0 as "unmatched").
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from samkit.io.atomic import atomic_path
from samkit.io.rle import area_from_rle, bbox_from_rle, rle_counts, to_coco_rle

DEFAULT_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "object", "supercategory": "object"},
)
SAM_FIELDS = ("predicted_iou", "stability_score", "point_coords", "crop_box")
SAM3_FIELDS = ("box_xyxy",)  # kept from a SAM 3 record (its score is the annotation's `score`)


def check_categories(categories: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated copies of COCO categories: each a dict with a unique int `id` >= 1 and a
    non-empty str `name` (other keys, e.g. `supercategory`, are kept).

    Raises:
        ValueError: an empty list, a missing / duplicate / non-positive id, or a missing name.
    """
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, c in enumerate(categories):
        cid = c.get("id") if isinstance(c, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1 or cid in seen:
            raise ValueError(f"category {i}: needs a unique integer 'id' >= 1, got {c!r:.80}")
        if not isinstance(c.get("name"), str) or not c["name"]:
            raise ValueError(f"category {i}: needs a non-empty 'name', got {c!r:.80}")
        seen.add(cid)
        out.append(dict(c))
    if not out:
        raise ValueError("categories must list at least one category")
    return out


def coco_annotation(
    record: dict[str, Any],
    ann_id: int,
    image_id: int,
    height: int,
    width: int,
    category_ids: Sequence[int] = (1,),
) -> dict[str, Any]:
    """One COCO annotation (conventions in the module docstring) of a generator record.

    Args:
        record: a `generate()` record in any output mode, or an annotation read back from a
            samkit COCO / SA-1B file: `segmentation`, `predicted_iou`, `stability_score`,
            `point_coords`, `crop_box`, optionally `category_id` (a SAM 3 record: `score`
            instead of the four SAM fields, optionally `box_xyxy`). Its own `area` / `bbox`
            are not used: both are computed from the mask.
        ann_id, image_id: the annotation's and its image's ids.
        height, width: the image size; the mask must have it.
        category_ids: the ids of the file's categories.

    Raises:
        ValueError: a mask of another size, a missing field, or an unknown category_id.
    """
    seg = to_coco_rle(record["segmentation"])
    if seg["size"] != [height, width]:
        raise ValueError(f"mask size {seg['size']} does not match the image's {height}x{width}")
    runs = {"size": seg["size"], "counts": rle_counts(seg)}  # the string decoded once
    category_id = record.get("category_id", 1)
    if category_id not in category_ids:
        raise ValueError(f"category_id {category_id!r} is not one of {list(category_ids)}")
    if "predicted_iou" not in record and "score" in record:  # SAM 3 (samkit.amg.sam3)
        iou = float(record["score"])
        sam = {k: [float(v) for v in record[k]] for k in SAM3_FIELDS if k in record}
    else:
        try:
            iou = float(record["predicted_iou"])
            sam = {
                "predicted_iou": iou,
                "stability_score": float(record["stability_score"]),
                "point_coords": [[float(c) for c in p] for p in record["point_coords"]],
                "crop_box": [float(v) for v in record["crop_box"]],
            }
        except KeyError as e:
            raise ValueError(
                f"the record has no {e.args[0]!r} (needs {', '.join(SAM_FIELDS)}, or a SAM 3 "
                "record's 'score')"
            ) from None
    return {
        "id": int(ann_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "segmentation": seg,
        "area": area_from_rle(runs),
        "bbox": bbox_from_rle(runs),
        "iscrowd": 0,
        "score": iou,
        **sam,
    }


class CocoDatasetWriter:
    """Writes one COCO dataset file image by image (see `coco_dataset`); not made directly."""

    def __init__(self, f: IO[str], categories: list[dict[str, Any]]) -> None:
        self._f = f
        self._category_ids = [c["id"] for c in categories]
        self._images: list[dict[str, Any]] = []
        self._image_ids: set[int] = set()
        self.annotations = 0

    def add_image(
        self,
        image_id: int,
        file_name: str,
        height: int,
        width: int,
        records: Sequence[dict[str, Any]],
    ) -> int:
        """Add an image and its masks (ids go on from the previous image's); returns how many.

        Raises:
            ValueError: a repeated image id, a bad size, or a bad record (`coco_annotation`).
        """
        image_id, height, width = int(image_id), int(height), int(width)
        if image_id in self._image_ids:
            raise ValueError(f"image id {image_id} ({file_name}) is already in the dataset")
        if height < 1 or width < 1:
            raise ValueError(f"{file_name}: image size {height}x{width} must be positive")
        lines = []
        for i, r in enumerate(records):
            ann_id = self.annotations + i + 1
            try:
                ann = coco_annotation(r, ann_id, image_id, height, width, self._category_ids)
            except ValueError as e:
                raise ValueError(f"{file_name}: mask {i}: {e}") from None
            lines.append(json.dumps(ann))
        for line in lines:
            self._f.write((",\n" if self.annotations else "\n") + line)
            self.annotations += 1
        self._image_ids.add(image_id)
        self._images.append(
            {"id": image_id, "file_name": str(file_name), "height": height, "width": width}
        )
        return len(lines)


@contextlib.contextmanager
def coco_dataset(
    path: str | os.PathLike[str],
    categories: Sequence[dict[str, Any]] = DEFAULT_CATEGORIES,
    info: dict[str, Any] | None = None,
) -> Iterator[CocoDatasetWriter]:
    """Write a COCO dataset file atomically, one image at a time (memory: the image list).

    The file is `{"info", "categories", "annotations", "images"}` (images last, so annotations
    stream to disk), one annotation per line; `pycocotools.coco.COCO(path)` loads it, and
    `coco.loadRes(json.load(open(path))["annotations"])` reads its masks as results (each has a
    `score`). The file appears only when the block ends without an exception.

    Args:
        path: the .json file.
        categories: COCO categories (`check_categories`).
        info: the `info` entry (JSON-serialisable).

    Example:
        with coco_dataset("out/dataset.json") as ds:
            ds.add_image(1, "a.png", 480, 640, generator.generate(image))
    """
    cats = check_categories(categories)
    head = {"info": dict(info or {}), "categories": cats}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(head)[:-1] + ', "annotations": [')
        writer = CocoDatasetWriter(f, cats)
        yield writer
        f.write('\n], "images": [')
        f.write(",".join("\n" + json.dumps(im) for im in writer._images))
        f.write("\n]}\n")


def read_annotation_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Any]]:
    """(image entry, annotations) of a one-image file `samkit.amg.io.write_coco_json` wrote,
    in either layout.

    Raises:
        ValueError: the file is not such a document.  OSError: it cannot be read.
    """
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    image = json_image_entry(doc)
    if image is None:
        raise ValueError(f"{path} is not a one-image COCO or SA-1B annotation file")
    return image, doc["annotations"]


def json_image_entry(doc: Any) -> dict[str, Any] | None:
    """The image entry of a one-image document `write_coco_json` wrote (either layout), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        return None
    image = doc.get("image")
    if image is None and isinstance(doc.get("images"), list) and len(doc["images"]) == 1:
        image = doc["images"][0]
    return image if isinstance(image, dict) else None
