"""`samkit auto` / `write_coco_json` write a COCO file that pycocotools loads; SA-1B on request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samkit.amg import mask_to_rle_pytorch, write_coco_json
from samkit.cli import main
from tests.conftest import FIXTURES, load_rgb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")
SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
AMG = ["--points-per-side", "4", "--pred-iou-thresh", "0.2", "--stability-score-thresh", "0.5"]


def _records(h: int = 20, w: int = 30) -> tuple[list[dict], torch.Tensor]:
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, 2:8, 3:12] = True
    masks[1, 10:18, 15:29] = True
    masks[2, 0, :] = True  # touches the border
    out = []
    for m, rle in zip(masks, mask_to_rle_pytorch(masks)):
        ys, xs = np.nonzero(m.numpy())
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        out.append(
            {
                "segmentation": rle,
                "area": int(m.sum()),
                "bbox": box,
                "predicted_iou": 0.9,
                "point_coords": [[5.5, 4.5]],
                "stability_score": 0.97,
                "crop_box": [0, 0, w, h],
            }
        )
    return out, masks


def test_default_is_a_coco_file_pycocotools_loads(tmp_path):
    coco_mod = pytest.importorskip("pycocotools.coco")
    mask_utils = pytest.importorskip("pycocotools.mask")
    records, masks = _records()
    path = tmp_path / "x.json"
    write_coco_json(path, {"file_name": "x.png", "height": 20, "width": 30, "image_id": 5}, records)
    coco = coco_mod.COCO(str(path))
    assert coco.getImgIds() == [5]
    assert coco.loadImgs(5)[0]["file_name"] == "x.png"
    assert coco.getCatIds() == [1] and coco.loadCats(1)[0]["name"] == "object"
    ann_ids = coco.getAnnIds(imgIds=[5])
    assert ann_ids == [1, 2, 3]  # COCO ids start at 1
    for ann, m, rec in zip(coco.loadAnns(ann_ids), masks, records):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), m.numpy())
        assert ann["image_id"] == 5 and ann["category_id"] == 1 and ann["iscrowd"] == 0
        rle = {"size": [20, 30], "counts": ann["segmentation"]["counts"].encode()}
        # COCO's box (pycocotools' toBbox), one pixel wider and taller than the record's
        # official SAM box (w = x_max - x_min)
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
        x, y, w, h = rec["bbox"]
        assert ann["bbox"] == [x, y, w + 1, h + 1]
        assert ann["area"] == int(m.sum()) == int(mask_utils.area(rle))
        assert ann["predicted_iou"] == ann["score"] == 0.9 and ann["crop_box"] == rec["crop_box"]


def test_sa1b_layout_on_request(tmp_path):
    records, _ = _records()
    doc = write_coco_json(
        tmp_path / "x.json", {"height": 20, "width": 30, "image_id": 5}, records, format="sa1b"
    )
    assert set(doc) == {"image", "annotations"}
    assert doc["image"]["image_id"] == 5
    assert [a["id"] for a in doc["annotations"]] == [0, 1, 2]
    assert "image_id" not in doc["annotations"][0]
    assert [a["bbox"] for a in doc["annotations"]] == [r["bbox"] for r in records]  # official
    sam3_like = [{"segmentation": records[0]["segmentation"], "score": 0.5}]
    with pytest.raises(ValueError, match=r"record 0 has no 'area'.*format='coco'"):
        write_coco_json(tmp_path / "y.json", {"height": 20, "width": 30}, sam3_like, format="sa1b")
    with pytest.raises(ValueError, match="coco, sa1b"):
        write_coco_json(tmp_path / "y.json", {"height": 20, "width": 30}, records, format="voc")
    assert not (tmp_path / "y.json").exists()


def test_auto_writes_coco_by_default_and_sa1b_with_format(tmp_path, sam1_shapes, capsys):
    coco_mod = pytest.importorskip("pycocotools.coco")
    from samkit import SamAutomaticMaskGenerator

    image = SHAPES / "shapes_1.png"
    assert main(["auto", str(image), "--out", str(tmp_path / "c"), "--quiet", *AMG, *MODEL]) == 0
    expected = SamAutomaticMaskGenerator(
        sam1_shapes, points_per_side=4, pred_iou_thresh=0.2, stability_score_thresh=0.5
    ).generate(load_rgb(str(image)))
    assert len(expected) > 0
    coco = coco_mod.COCO(str(tmp_path / "c" / "shapes_1.json"))
    (img_id,) = coco.getImgIds()
    assert coco.loadImgs(img_id)[0]["file_name"] == "shapes_1.png"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
    assert len(anns) == len(expected)
    for ann, rec in zip(anns, expected):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), rec["segmentation"])
        x, y, w, h = rec["bbox"]
        assert ann["bbox"] == [x, y, w + 1, h + 1] and ann["area"] == rec["area"]

    out = tmp_path / "c"
    assert main(["auto", str(image), "--out", str(out), "--format", "sa1b", "--quiet", *AMG, *MODEL]) == 0  # fmt: skip
    doc = json.loads((out / "shapes_1.json").read_text())
    assert doc["image"]["file_name"] == "shapes_1.png"  # rewritten: the format is a setting
    assert len(doc["annotations"]) == len(expected)
    assert [a["bbox"] for a in doc["annotations"]] == [r["bbox"] for r in expected]  # official
    err = capsys.readouterr().err
    assert "skipped" not in err


def test_help_names_both_formats():
    from samkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices["auto"].format_help().split())
    assert "coco = a COCO instance" in text and "loads with pycocotools.coco.COCO" in text
    assert "sa1b = Meta's SA-1B per-image layout" in text and "not loadable by COCO" in text
