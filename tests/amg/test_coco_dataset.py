"""The run's one COCO dataset file (`samkit auto` -> OUT/_annotations.coco.json): loadable by
pycocotools, usable by COCOeval as ground truth and as results, deterministic and resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.amg import mask_to_rle_pytorch
from samkit.amg.coco import coco_dataset
from samkit.cli import main
from samkit.io.atomic import temporary_sibling
from samkit.jobs import DATASET_NAME, image_ids
from tests.conftest import FIXTURES

coco_mod = pytest.importorskip("pycocotools.coco")
cocoeval_mod = pytest.importorskip("pycocotools.cocoeval")
mask_utils = pytest.importorskip("pycocotools.mask")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
AMG = ["--points-per-side", "3", "--pred-iou-thresh", "0.2", "--stability-score-thresh", "0.5"]


def _records(h: int, w: int, boxes: list[tuple[int, int, int, int]], cat: int | None = None):
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for m, (y0, y1, x0, x1) in zip(masks, boxes):
        m[y0:y1, x0:x1] = True
    out = []
    for i, rle in enumerate(mask_to_rle_pytorch(masks)):
        r = {
            "segmentation": rle,
            "predicted_iou": 0.9 - 0.1 * i,
            "stability_score": 0.95,
            "point_coords": [[1.0, 2.0]],
            "crop_box": [0, 0, w, h],
        }
        if cat is not None:
            r["category_id"] = cat
        out.append(r)
    return out, masks


def _ap_against_itself(path: Path, iou_type: str = "segm") -> float:
    gt = coco_mod.COCO(str(path))
    dt = gt.loadRes(json.loads(path.read_text())["annotations"])  # the file as results too
    ev = cocoeval_mod.COCOeval(gt, dt, iou_type)
    assert max(len(v) for v in gt.imgToAnns.values()) <= ev.params.maxDets[-1]  # AP's 100
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def test_dataset_file_is_coco_ground_truth_and_results(tmp_path):
    path = tmp_path / "d.json"
    cats = [{"id": 1, "name": "object"}, {"id": 7, "name": "dog", "supercategory": "animal"}]
    rec_a, masks_a = _records(20, 30, [(2, 8, 3, 12), (0, 20, 0, 30)])
    rec_b, masks_b = _records(16, 12, [(1, 5, 1, 11)], cat=7)
    with coco_dataset(path, categories=cats, info={"description": "t"}) as ds:
        assert ds.add_image(3, "b.png", 20, 30, rec_a) == 2
        assert ds.add_image(1, "a.png", 16, 12, rec_b) == 1
        assert ds.add_image(2, "empty.png", 5, 5, []) == 0
    coco = coco_mod.COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3] and coco.getCatIds() == [1, 7]
    assert coco.loadImgs(3)[0] == {"id": 3, "file_name": "b.png", "height": 20, "width": 30}
    assert coco.getAnnIds() == [1, 2, 3]  # unique, from 1, in the order added
    anns = coco.loadAnns([1, 2, 3])
    assert [a["image_id"] for a in anns] == [3, 3, 1]
    assert [a["category_id"] for a in anns] == [1, 1, 7]
    for ann, m in zip(anns, [*masks_a, *masks_b]):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), m.numpy())
        rle = coco.annToRLE(ann)
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
        assert ann["area"] == int(mask_utils.area(rle)) and ann["iscrowd"] == 0
        assert ann["score"] == ann["predicted_iou"]
    assert anns[1]["bbox"] == [0, 0, 30, 20]  # a full mask: the image's size (official: 29, 19)
    assert _ap_against_itself(path) == 1.0
    assert _ap_against_itself(path, "bbox") == 1.0


def test_dataset_writer_refuses_bad_input_and_leaves_no_file(tmp_path):
    path = tmp_path / "d.json"
    rec, _ = _records(20, 30, [(2, 8, 3, 12)])
    for body, message in [
        (lambda ds: ds.add_image(1, "a.png", 20, 31, rec), "does not match the image's 20x31"),
        (
            lambda ds: ds.add_image(1, "a.png", 20, 30, [{**rec[0], "category_id": 2}]),
            "category_id 2",
        ),
        (lambda ds: [ds.add_image(1, "a.png", 20, 30, rec) for _ in range(2)], "already in"),
        (
            lambda ds: ds.add_image(1, "a.png", 20, 30, [{"segmentation": rec[0]["segmentation"]}]),
            "predicted_iou",
        ),
    ]:
        with pytest.raises(ValueError, match=message), coco_dataset(path) as ds:
            body(ds)
        assert list(tmp_path.iterdir()) == []  # atomic: nothing, not even a temporary file
    for cats, message in [([], "at least one"), ([{"id": 0, "name": "x"}], "id"), ([{"id": 1}], "name")]:  # fmt: skip
        with pytest.raises(ValueError, match=message), coco_dataset(path, categories=cats):
            pass
    assert list(tmp_path.iterdir()) == []


def test_image_ids_follow_file_names():
    assert image_ids(["b.png", "a.jpg", "c.tif", "a.jpg"]) == {"a.jpg": 1, "b.png": 2, "c.tif": 3}


def _folder(src: Path) -> list[str]:
    """Three small images of the shapes fixture (two crops, one flipped) in `src`."""
    src.mkdir(parents=True)
    with Image.open(SHAPES / "shapes_1.png") as im:
        full = np.asarray(im.convert("RGB"))
    pics = {"c.png": full[:200, :240], "a.png": full[200:, 300:][:, ::-1], "b.png": full[100:300]}
    for name, a in pics.items():
        Image.fromarray(np.ascontiguousarray(a)).save(src / name)
    return sorted(pics)


@pytest.mark.slow
def test_auto_writes_one_coco_dataset_for_the_run(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _folder(src)
    (src / "broken.png").write_bytes(b"not a png")
    argv = ["auto", str(src), "--out", str(out), *AMG, *MODEL, "--quiet"]
    assert main(argv) == 1  # broken.png fails; the others are in the dataset
    text = capsys.readouterr().out
    assert f"COCO dataset {out / DATASET_NAME}" in text
    path = out / DATASET_NAME
    doc = json.loads(path.read_text())
    # ids by file name: a=1, b=2, broken=3 (failed: left out), c=4
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == [(1, "a.png"), (2, "b.png"), (4, "c.png")]  # fmt: skip
    assert doc["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert doc["info"]["samkit"]["points_per_side"] == 3
    anns = doc["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    coco = coco_mod.COCO(str(path))
    for image in doc["images"]:
        per_image = json.loads((out / f"{Path(image['file_name']).stem}.json").read_text())
        assert per_image["images"][0]["id"] == image["id"]  # the same id in both files
        with Image.open(src / image["file_name"]) as im:
            assert (image["width"], image["height"]) == im.size
        mine = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(mine) == len(per_image["annotations"]) > 0
        for a, b in zip(mine, per_image["annotations"]):
            assert a["segmentation"] == b["segmentation"] and a["bbox"] == b["bbox"]
            assert a["bbox"] == mask_utils.toBbox(coco.annToRLE(a)).tolist()
    assert _ap_against_itself(path) == 1.0

    # Resumed after a kill: one image's outputs missing, a temporary file left; same bytes.
    first = path.read_bytes()
    (out / "b.json").unlink()
    temporary_sibling(out / DATASET_NAME).write_text("{")
    assert main(argv) == 1
    assert "1 image segmented, 2 skipped" in capsys.readouterr().out
    assert path.read_bytes() == first
    assert not list(out.glob("*.tmp"))

    # The per-image layout does not change the dataset (only the setting it records).
    assert main([*argv, "--format", "sa1b"]) == 1
    sa1b = json.loads(path.read_text())
    assert sa1b["info"]["samkit"]["format"] == "sa1b"
    assert {k: sa1b[k] for k in ("images", "annotations")} == {
        k: doc[k] for k in ("images", "annotations")
    }
    boxes = [a["bbox"] for a in json.loads((out / "a.json").read_text())["annotations"]]
    assert boxes == [[x, y, w - 1, h - 1] for x, y, w, h in (a["bbox"] for a in anns[: len(boxes)])]


def test_an_image_named_like_the_dataset_is_refused(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SHAPES / "shapes_1.png", src / "_annotations.coco.png")
    out = tmp_path / "out"
    assert main(["auto", str(src), "--out", str(out), *AMG, *MODEL, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "_annotations.coco.png" in err and "rename the image" in err
    assert not any(out.iterdir())


def test_a_stopped_run_leaves_no_stale_dataset(tmp_path, monkeypatch, capsys):
    # A dataset file on disk always describes a finished run: a new run removes the previous
    # run's file before its first image, and writes its own only at the end.
    from samkit.jobs import AutoJob

    src, out = tmp_path / "in", tmp_path / "out"
    _folder(src)
    out.mkdir()
    (out / DATASET_NAME).write_text('{"images": [], "annotations": [], "categories": []}')

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(AutoJob, "run", stop)
    assert main(["auto", str(src), "--out", str(out), *AMG, *MODEL, "--quiet"]) != 0
    capsys.readouterr()
    assert list(out.iterdir()) == []
