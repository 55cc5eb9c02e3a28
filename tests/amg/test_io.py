"""SA-1B / COCO JSON writer and the PNG overlay."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.amg import coco_decode_rle, mask_to_rle_pytorch, render_overlay, write_coco_json


def _records(h: int = 20, w: int = 30) -> list[dict]:
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 2:8, 3:12] = True
    masks[1, 10:18, 15:29] = True
    out = []
    for m, rle in zip(masks, mask_to_rle_pytorch(masks)):
        ys, xs = np.nonzero(m.numpy())
        out.append(
            {
                "segmentation": rle,
                "area": int(m.sum()),
                "bbox": [
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max() - xs.min()),
                    int(ys.max() - ys.min()),
                ],
                "predicted_iou": 0.9,
                "point_coords": [[5.5, 4.5]],
                "stability_score": 0.97,
                "crop_box": [0, 0, w, h],
            }
        )
    return out


def test_write_coco_json_round_trip(tmp_path) -> None:
    records = _records()
    path = tmp_path / "sub" / "image.json"
    doc = write_coco_json(
        path,
        {"file_name": "a.jpg", "height": 20, "width": 30, "image_id": 7},
        records,
        format="sa1b",
    )
    loaded = json.loads(path.read_text())
    assert loaded == doc
    assert loaded["image"] == {"image_id": 7, "height": 20, "width": 30, "file_name": "a.jpg"}
    assert [a["id"] for a in loaded["annotations"]] == [0, 1]
    for ann, rec in zip(loaded["annotations"], records):
        assert isinstance(ann["segmentation"]["counts"], str)
        mask = coco_decode_rle(ann["segmentation"])
        assert int(mask.sum()) == ann["area"] == rec["area"]
        assert ann["bbox"] == rec["bbox"] and ann["crop_box"] == rec["crop_box"]
        assert ann["point_coords"] == rec["point_coords"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


def test_write_coco_json_decodes_with_pycocotools(tmp_path) -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    records = _records()
    doc = write_coco_json(tmp_path / "x.json", {"height": 20, "width": 30}, records)
    for ann in doc["annotations"]:
        rle = {
            "size": ann["segmentation"]["size"],
            "counts": ann["segmentation"]["counts"].encode(),
        }
        assert int(mask_utils.area(rle)) == ann["area"]


def test_write_coco_json_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="height"):
        write_coco_json(tmp_path / "x.json", {"file_name": "a.jpg"}, _records())
    with pytest.raises(ValueError, match="does not match"):
        write_coco_json(tmp_path / "x.json", {"height": 21, "width": 30}, _records())


def test_render_overlay() -> None:
    image = np.full((20, 30, 3), 100, np.uint8)
    records = _records()
    out = render_overlay(image, records, alpha=0.5)
    assert isinstance(out, Image.Image) and out.size == (30, 20) and out.mode == "RGB"
    arr = np.asarray(out)
    assert (arr[0, 0] == 100).all()  # outside every mask: unchanged
    inside_a, inside_b = arr[5, 7], arr[14, 20]
    assert not (inside_a == 100).all() and not (inside_b == 100).all()
    assert not np.array_equal(inside_a, inside_b)  # distinct colours
    assert not np.array_equal(arr[2, 3], inside_a)  # the outline is drawn opaquely
    # the image rule of set_image: greyscale is repeated into R, G and B
    grey = np.asarray(render_overlay(image[..., 0], records, alpha=0.5))
    np.testing.assert_array_equal(grey, arr)
    for bad in (image[..., :2], image[None], image[0, 0]):
        with pytest.raises(ValueError, match="HxW"):
            render_overlay(bad, records)
    with pytest.raises(ValueError, match="does not match"):
        render_overlay(image[:10], records)
