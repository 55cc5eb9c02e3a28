"""Dataset parsing (folder layouts, COCO polygons / RLE), split, resize, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.io.rle import rle_string_to_counts, rle_to_mask
from samkit.train.datasets import (
    CocoDataset,
    DataError,
    FolderDataset,
    Sample,
    open_dataset,
    prepare_sample,
    split_names,
)


def _img(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _write(path, arr) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_instance_id_png(tmp_path) -> None:
    ids = np.zeros((20, 30), np.uint8)
    ids[2:6, 3:9] = 7
    ids[10:15, 10:20] = 3
    _write(tmp_path / "images" / "a.png", _img())
    _write(tmp_path / "masks" / "a.png", ids)
    ds = FolderDataset(tmp_path)
    s = ds[0]
    assert s.name == "a" and s.image.shape == (20, 30, 3)
    assert s.masks.shape == (2, 20, 30)
    np.testing.assert_array_equal(s.masks[0], ids == 3)  # instances sorted by id
    np.testing.assert_array_equal(s.masks[1], ids == 7)


def test_folder_per_instance_pngs(tmp_path) -> None:
    _write(tmp_path / "images" / "b.jpg", _img())
    for k, (y, x) in [(10, (0, 0)), (2, (5, 5))]:
        m = np.zeros((20, 30), np.uint8)
        m[y : y + 4, x : x + 4] = 255
        _write(tmp_path / "masks" / "b" / f"{k}.png", m)
    s = FolderDataset(tmp_path)[0]
    assert s.masks.shape == (2, 20, 30)
    assert s.masks[0][5, 5] and s.masks[1][0, 0]  # numeric order: 2.png before 10.png


def test_folder_errors_name_the_file(tmp_path) -> None:
    _write(tmp_path / "images" / "a.png", _img())
    _write(tmp_path / "masks" / "a.png", np.ones((10, 10), np.uint8))
    with pytest.raises(
        DataError, match=r"a\.png: mask size 10x10 .*differs from the image size 20x30"
    ):
        FolderDataset(tmp_path)
    _write(tmp_path / "masks" / "a.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DataError, match=r"masks/a\.png: no instances"):
        FolderDataset(tmp_path)
    (tmp_path / "masks" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"masks/a\.png: cannot read"):
        FolderDataset(tmp_path)
    (tmp_path / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match=r"images/a\.png: no mask"):
        FolderDataset(tmp_path)
    # per-instance folder with an empty instance
    _write(tmp_path / "masks" / "a" / "1.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DataError, match=r"1\.png: the instance mask is empty"):
        FolderDataset(tmp_path)
    # RGB masks are refused
    (tmp_path / "masks" / "a" / "1.png").unlink()
    _write(tmp_path / "masks" / "a" / "1.png", _img())
    with pytest.raises(DataError, match="single-channel"):
        FolderDataset(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        FolderDataset(tmp_path / "nothing")


def test_folder_skip_invalid_warns(tmp_path) -> None:
    ok = np.zeros((20, 30), np.uint8)
    ok[1:5, 1:5] = 1
    _write(tmp_path / "images" / "good.png", _img())
    _write(tmp_path / "masks" / "good.png", ok)
    _write(tmp_path / "images" / "bad.png", _img())
    _write(tmp_path / "masks" / "bad.png", np.ones((5, 5), np.uint8))
    _write(tmp_path / "images" / "orphan.png", _img())
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG garbage")
    _write(tmp_path / "masks" / "broken.png", ok)
    with pytest.warns(UserWarning, match="skipping"):
        ds = FolderDataset(tmp_path, skip_invalid=True)
    assert ds.names == ["good"]


def _coco(tmp_path, anns, images=None):
    _write(tmp_path / "images" / "x.png", _img(7, 9))
    data = {
        "images": images or [{"id": 1, "file_name": "x.png", "height": 7, "width": 9}],
        "annotations": anns,
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _reference_7x9() -> np.ndarray:
    m = np.zeros((7, 9), bool)
    m[1:5, 2:7] = True
    m[6, 0] = True
    m[0, 8] = True
    return m


def test_coco_polygon_and_rle(tmp_path) -> None:
    ref = _reference_7x9()
    flat = ref.T.flatten()  # column-major runs, starting with zeros
    runs, cur, n = [], False, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [
        {"id": 1, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]], "iscrowd": 0},
        {"id": 2, "image_id": 1, "segmentation": {"size": [7, 9], "counts": runs}, "iscrowd": 0},
        # compressed RLE of the same mask, as written by pycocotools.mask.encode
        {"id": 3, "image_id": 1, "segmentation": {"size": [7, 9], "counts": "6183K00000006MM"}},
        {"id": 4, "image_id": 1, "segmentation": [[0, 0, 8, 0, 8, 6]], "iscrowd": 1},
    ]
    ds = CocoDataset(_coco(tmp_path, anns))
    s = ds[0]
    assert s.masks.shape == (3, 7, 9)  # the crowd annotation is skipped
    poly = np.zeros((7, 9), bool)
    poly[1:5, 1:6] = True  # PIL fills the polygon including its outline
    np.testing.assert_array_equal(s.masks[0], poly)
    np.testing.assert_array_equal(s.masks[1], ref)
    np.testing.assert_array_equal(s.masks[2], ref)
    assert CocoDataset(_coco(tmp_path, anns), include_crowd=True)[0].masks.shape[0] == 4


def test_compressed_rle_matches_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for h, w in [(31, 17), (64, 80), (5, 300)]:
        m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        m[: h // 2, : w // 3] = True  # a long run too
        rle = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        counts = rle_string_to_counts(rle["counts"].decode())
        np.testing.assert_array_equal(rle_to_mask({"size": [h, w], "counts": counts}), m)


def test_coco_errors(tmp_path) -> None:
    good = {"id": 1, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4]]}
    missing = [
        {"id": 1, "file_name": "x.png", "height": 7, "width": 9},
        {"id": 2, "file_name": "gone.png", "height": 7, "width": 9},
    ]
    with pytest.raises(DataError, match=r"gone\.png: image listed in .*ann\.json is missing"):
        CocoDataset(_coco(tmp_path, [good, {**good, "id": 2, "image_id": 2}], missing))
    with pytest.warns(UserWarning, match="gone.png"):
        ds = CocoDataset(
            _coco(tmp_path, [good, {**good, "id": 2, "image_id": 2}], missing), skip_invalid=True
        )
    assert ds.names == ["x.png"]
    bad_rle = {"id": 5, "image_id": 1, "segmentation": {"size": [8, 9], "counts": [72]}}
    with pytest.raises(DataError, match=r"annotation 5 .*RLE size 8x9 differs"):
        CocoDataset(_coco(tmp_path, [bad_rle]))
    empty = {"id": 6, "image_id": 1, "segmentation": {"size": [7, 9], "counts": [63]}}
    with pytest.raises(DataError, match=r"annotation 6 .*empty"):
        CocoDataset(_coco(tmp_path, [empty]))
    wrong_size = [{"id": 1, "file_name": "x.png", "height": 70, "width": 9}]
    with pytest.raises(DataError, match=r"x\.png: image is 7x9 .* says 70x9"):
        CocoDataset(_coco(tmp_path, [good], wrong_size))
    with pytest.raises(DataError, match="unknown image_id"):
        CocoDataset(_coco(tmp_path, [{**good, "image_id": 9}]))
    (tmp_path / "ann.json").write_text("{not json")
    with pytest.raises(DataError, match=r"ann\.json: not a readable COCO JSON"):
        open_dataset(tmp_path / "ann.json")
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "nope")


def test_split_is_deterministic_and_order_free() -> None:
    names = [f"img_{i}" for i in range(50)]
    train, val = split_names(names, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40 and not set(train) & set(val)
    _t2, v2 = split_names(list(reversed(names)), 0.2, seed=3)
    assert set(v2) == set(val)
    _, v3 = split_names(names, 0.2, seed=4)
    assert set(v3) != set(val)
    assert split_names(["a", "b"], 0.2)[1] != []  # at least one held out
    with pytest.raises(ValueError, match="val_fraction"):
        split_names(names, 1.0)


def test_prepare_sample_resizes_and_pads_like_the_predictor() -> None:
    img = _img(120, 200)
    masks = np.zeros((1, 120, 200), bool)
    masks[0, 30:90, 50:150] = True
    p = prepare_sample(Sample("s", img, masks), 64)
    assert p.input_size == (38, 64) and p.original_size == (120, 200)
    assert tuple(p.image.shape) == (3, 38, 64)
    assert tuple(p.gt.shape) == (1, 64, 64)
    assert not p.gt[0, 38:].any()  # padding
    ys, xs = np.nonzero(p.gt[0].numpy())
    # the box scales by 64 / 200 (up to one pixel of resampling)
    assert abs(ys.min() - 30 * 0.32) <= 1 and abs(ys.max() - 89 * 0.32) <= 1
    assert abs(xs.min() - 50 * 0.32) <= 1 and abs(xs.max() - 149 * 0.32) <= 1
