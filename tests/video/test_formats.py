"""Palette PNGs, YouTube-VIS JSON (checked with pycocotools), the overlay MP4 and DAVIS folders."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.video.eval.davis import read_davis
from samkit.video.formats import (
    VisRecorder,
    davis_palette,
    label_map,
    mask_record,
    read_label_png,
    split_label_map,
    write_palette_png,
)
from samkit.video.overlay import Mp4Writer, render_overlay
from tests.video.clips import make_davis, moving_shapes

# The first ten colours and the last one of the DAVIS_PALETTE bytes in sam2's tools/vos_inference.py
OFFICIAL_HEAD = b"\x00\x00\x00\x80\x00\x00\x00\x80\x00\x80\x80\x00\x00\x00\x80\x80\x00\x80\x00\x80\x80\x80\x80\x80@\x00\x00\xc0\x00\x00"
OFFICIAL_LAST = b"\xe0\xe0\xc0"


def test_davis_palette_is_the_official_one():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[:10].tobytes() == OFFICIAL_HEAD and pal[255].tobytes() == OFFICIAL_LAST
    assert len({tuple(c) for c in pal}) == 256


def test_palette_png_round_trip_and_overlap_rule(tmp_path):
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 2:10, 2:20] = True  # object 7
    masks[1, 5:15, 10:25] = True  # object 2 overlaps 7: the smaller id wins
    masks[2, 18:20, 0:3] = True  # object 255
    labels = label_map(masks, [7, 2, 255])
    assert labels[6, 12] == 2 and labels[3, 3] == 7 and labels[19, 0] == 255 and labels[0, 29] == 0
    path = write_palette_png(tmp_path / "00000.png", labels)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert np.array_equal(np.array(im), labels)
        assert bytes(im.getpalette()[:30]) == OFFICIAL_HEAD
    assert np.array_equal(read_label_png(path), labels)
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind
    parts = split_label_map(labels)
    assert sorted(parts) == [2, 7] and parts[2].sum() == (labels == 2).sum()  # 255 = void
    with pytest.raises(ValueError, match=r"1\.\.255"):
        label_map(masks[:1], [256])
    with pytest.raises(ValueError, match="O = len"):
        label_map(masks, [1, 2])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: an annotation must be an indexed"):
        read_label_png(tmp_path / "rgb.png")


def test_rle_area_and_box_agree_with_pycocotools():
    rng = np.random.default_rng(0)
    for k in range(5):
        m = rng.random((37, 53)) > 0.7 if k else np.zeros((37, 53), bool)
        m[k, :] = k == 3
        rec = mask_record(m)
        if not m.any():
            assert rec is None
            continue
        rle, area, box = rec
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle["counts"] == ref["counts"].decode() and rle["size"] == [37, 53]
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
        assert area == int(mask_utils.area(ref))
        assert box == [int(v) for v in mask_utils.toBbox(ref)]


def test_youtube_vis_document(tmp_path):
    frames = [np.zeros((2, 12, 16), bool) for _ in range(4)]
    frames[0][0, 1:4, 2:6] = True
    frames[0][1, 5:9, 8:15] = True
    frames[2][0, 2:5, 3:7] = True  # object 2 absent (empty) on frame 2
    rec = VisRecorder(4, 12, 16, [f"{i:05d}.jpg" for i in range(4)])
    rec.add(0, [1, 2], frames[0], [0.5, -0.25])
    rec.add(2, [1, 2], frames[2], [1.0, -3.0])
    doc = rec.write(tmp_path / "annotations.json", "clip")
    assert json.loads((tmp_path / "annotations.json").read_text()) == doc
    assert doc["videos"][0]["file_names"][3] == "clip/00003.jpg"
    assert doc["videos"][0]["length"] == 4
    a1, a2 = doc["annotations"]
    assert (a1["object_id"], a2["object_id"]) == (1, 2)
    assert a1["segmentations"][1] is None and a1["segmentations"][3] is None  # not tracked
    assert a2["segmentations"][2] is None and a2["areas"][2] is None  # tracked, absent
    assert a1["object_scores"] == [0.5, None, 1.0, None] and a2["object_scores"][2] == -3.0
    assert a1["tracked_frames"] == [0, 2]
    for a, obj in ((a1, 0), (a2, 1)):
        for t, seg in enumerate(a["segmentations"]):
            if seg is not None:
                assert np.array_equal(mask_utils.decode(seg).astype(bool), frames[t][obj])
                assert a["areas"][t] == frames[t][obj].sum()
    assert a1["bboxes"][0] == [2, 1, 4, 3]
    assert a2["score"] == pytest.approx(1 / (1 + np.exp(0.25)))  # mean over present frames
    with pytest.raises(ValueError, match="outside the video"):
        rec.add(4, [1], frames[0][:1])
    with pytest.raises(ValueError, match="expected"):
        rec.add(1, [1], np.zeros((1, 5, 5), bool))


def test_overlay_colours_and_mp4(tmp_path):
    rgb = moving_shapes(n=1, h=48, w=64)[0]
    labels = np.zeros((48, 64), np.uint8)
    labels[30:46, 2:20] = 3
    out = render_overlay(
        rgb, labels, points=[(3, 50, 10, 1), (3, 55, 20, 0)], boxes=[(3, 40, 5, 60, 25)]
    )
    assert out.shape == rgb.shape and out.dtype == np.uint8
    pal = davis_palette()[3].astype(float)
    inner = (slice(31, 33), slice(3, 5))  # inside the mask, away from the outline and the id
    np.testing.assert_allclose(out[inner], (0.5 * rgb[inner] + 0.5 * pal).round(), atol=0.51)
    assert np.array_equal(out[0:4, 0:30], rgb[0:4, 0:30])  # background untouched
    assert (out[10, 50] == davis_palette()[3]).all()  # the positive click's dot

    for h, w in ((48, 64), (47, 63)):  # odd sizes are kept too
        path = tmp_path / f"o{w}.mp4"
        with Mp4Writer(path, w, h, fps=12) as wr:
            for f in moving_shapes(n=5, h=h, w=w):
                wr.write(f)
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
            assert (len(decoded), s.width, s.height, float(s.average_rate)) == (5, w, h, 12.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o63.mp4", "o64.mp4"]


def test_interrupted_mp4_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), Mp4Writer(tmp_path / "overlay.mp4", 64, 48) as wr:
        wr.write(moving_shapes(n=1)[0])
        raise KeyboardInterrupt
    bad = np.zeros((48, 64), np.uint8)
    with pytest.raises(ValueError, match="expected a 48x64x3 uint8"):  # noqa: SIM117
        with Mp4Writer(tmp_path / "overlay.mp4", 64, 48) as wr:
            wr.write(bad)
    assert list(tmp_path.iterdir()) == []


def test_davis_reader(tmp_path):
    root = make_davis(tmp_path / "davis")
    vids = read_davis(root)
    assert [v.name for v in vids] == ["a", "b"]
    v = vids[0]
    assert (v.height, v.width, v.object_ids, len(v.frame_names)) == (48, 64, [1, 2], 4)
    assert sorted(v.annotations) == [0, 1, 2, 3]
    assert set(np.unique(v.labels(2))) == {0, 1, 2}
    assert [x.name for x in read_davis(root, ["b"])] == ["b"]


def test_davis_reader_errors(tmp_path):
    root = make_davis(tmp_path / "d1", videos=("a",))
    (root / "Annotations" / "a" / "00000.png").rename(root / "Annotations" / "a" / "00009.png")
    with pytest.raises(ValueError, match=r"00009\.png: annotation has no frame of the same name"):
        read_davis(root)
    (root / "Annotations" / "a" / "00009.png").unlink()
    assert read_davis(root)[0].first_frames == {1: 1, 2: 1}  # objects may appear later
    for a in (root / "Annotations" / "a").glob("*.png"):
        a.unlink()
    with pytest.raises(ValueError, match=r"video a has no annotation PNG"):
        read_davis(root)
    write_palette_png(root / "Annotations" / "a" / "00000.png", np.ones((40, 64), np.uint8))
    with pytest.raises(
        ValueError, match=r"00000\.png: annotation is 64x40 but the frames of a are 64x48"
    ):
        read_davis(root)
    write_palette_png(root / "Annotations" / "a" / "00000.png", np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="hold no object"):
        read_davis(root)
    with pytest.raises(ValueError, match="no such folder"):
        read_davis(tmp_path / "missing")
    root2 = make_davis(tmp_path / "d2", videos=("a",))
    shutil.rmtree(root2 / "Annotations")
    with pytest.raises(ValueError, match=r"not a DAVIS-layout folder \(no Annotations/ folder"):
        read_davis(root2)
    root3 = make_davis(tmp_path / "d3", videos=("a",))
    (root3 / "JPEGImages" / "c").mkdir()
    with pytest.raises(ValueError, match="c: video c has frames but no annotation folder"):
        read_davis(root3)


def test_mp4_gets_the_umask_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with Mp4Writer(tmp_path / "overlay.mp4", 64, 48) as wr:
            wr.write(np.zeros((48, 64, 3), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "overlay.mp4").stat().st_mode & 0o777 == 0o644
