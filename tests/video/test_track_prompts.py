"""Video prompts: parsing, grouping and the errors that name the argument."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samkit.video.formats import write_palette_png
from samkit.video.track_prompts import (
    load_prompts_json,
    parse_box,
    parse_mask,
    parse_point,
    resolve_prompts,
)

N, H, W = 10, 48, 64


def resolve(*raws):
    return resolve_prompts(list(raws), N, H, W)


def test_points_and_box_of_one_object_are_grouped():
    ps = resolve(
        parse_point("2:1:10,20"),
        parse_point("2:1:30.5,40,0"),
        parse_box("2:1:5,6,50,40"),
        parse_point("0:3:1,2"),
    )
    assert [(p.frame, p.obj_id) for p in ps] == [(0, 3), (2, 1)]
    assert ps[1].points == [(10.0, 20.0, 1), (30.5, 40.0, 0)] and ps[1].box == (5, 6, 50, 40)
    assert ps[1].mask is None


def test_masks_binary_label_and_star(tmp_path):
    binary = np.zeros((H, W), np.uint8)
    binary[5:10, 5:10] = 255
    from PIL import Image

    Image.fromarray(binary).save(tmp_path / "bin.png")
    labels = np.zeros((H, W), np.uint8)
    labels[0:5, 0:5], labels[20:30, 20:30], labels[40:, 60:] = 1, 4, 255
    write_palette_png(tmp_path / "ann.png", labels)
    ps = resolve(
        parse_mask(f"1:7:{tmp_path / 'bin.png'}"), parse_mask(f"0:*:{tmp_path / 'ann.png'}")
    )
    assert [(p.frame, p.obj_id) for p in ps] == [(0, 1), (0, 4), (1, 7)]  # 255 (void) skipped
    assert np.array_equal(ps[2].mask, binary > 0) and np.array_equal(ps[1].mask, labels == 4)
    (p,) = resolve(parse_mask(f"0:4:{tmp_path / 'ann.png'}"))
    assert p.obj_id == 4 and p.mask.sum() == 100
    with pytest.raises(
        ValueError,
        match=r"--mask 0:2:.*ann\.png: object 2 is not in ann\.png \(its ids: 1, 4, 255\)",
    ):
        resolve(parse_mask(f"0:2:{tmp_path / 'ann.png'}"))
    write_palette_png(tmp_path / "small.png", np.ones((10, 10), np.uint8))
    with pytest.raises(ValueError, match="the mask is 10x10, the video 64x48"):
        resolve(parse_mask(f"0:1:{tmp_path / 'small.png'}"))
    with pytest.raises(ValueError, match="no such file"):
        resolve(parse_mask(f"0:1:{tmp_path / 'missing.png'}"))
    with pytest.raises(ValueError, match="both a mask and points"):
        resolve(parse_mask(f"0:4:{tmp_path / 'ann.png'}"), parse_point("0:4:3,3"))


def test_prompts_json(tmp_path):
    from PIL import Image

    # a binary mask (one channel, one level): the object's, whatever its id
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(tmp_path / "m.png")
    doc = [
        {"frame": 0, "obj": 1, "point": [10, 10]},
        {"frame": 0, "obj": 1, "points": [[20, 20, 0]]},
        {"frame": 3, "obj": 2, "box": [1, 2, 30, 40]},
        {"frame": 5, "obj": 3, "mask": "m.png"},  # relative to the JSON file
    ]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    ps = resolve(*load_prompts_json(tmp_path / "p.json"))
    assert [(p.frame, p.obj_id) for p in ps] == [(0, 1), (3, 2), (5, 3)]
    assert ps[0].points == [(10.0, 10.0, 1), (20.0, 20.0, 0)] and ps[2].mask.all()
    for bad, msg in (
        ({"frame": 0, "point": [1, 1]}, "needs 'frame' and 'obj'"),
        ({"frame": 0, "obj": 1, "point": [1, 1], "box": [0, 0, 1, 1]}, "exactly one of"),
        ({"frame": 0, "obj": 1, "box": [0, 0, 1]}, "a box is"),
        ({"frame": "x", "obj": 1, "point": [1, 1]}, "frame must be an integer"),
        ({"frame": 0, "obj": 1, "point": [1, "nan"]}, "must be finite"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps([doc[0], bad]))
        with pytest.raises(ValueError, match=f"bad.json item 1: .*{msg}"):
            load_prompts_json(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        load_prompts_json(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "raw,msg",
    [
        (
            lambda: parse_point("12:1:5,5"),
            r"--point 12:1:5,5: frame 12 is outside the video \(frames 0..9\)",
        ),
        (lambda: parse_point("-1:1:5,5"), "frame -1 is outside"),
        (lambda: parse_point("0:0:5,5"), "object ids must be in 1..255, got 0"),
        (lambda: parse_point("0:1:5,5,2"), "LABEL must be 1"),
        (lambda: parse_point("0:1:500,5"), r"point \(500, 5\) is outside the 64x48 frame"),
        (lambda: parse_point("0:1:5"), "expected FRAME:OBJ:X,Y"),
        (lambda: parse_point("0:1"), "expected FRAME:OBJ:X,Y"),
        (lambda: parse_point("a:1:5,5"), "FRAME must be an integer"),
        (lambda: parse_point("0:1:x,5"), "X 'x' is not a number"),
        (lambda: parse_box("0:1:30,30,10,10"), "X1 >= X0"),
        (lambda: parse_box("0:1:0,0,100,10"), "outside the 64x48 frame"),
        (lambda: parse_box("0:1:0,0,10"), "expected FRAME:OBJ:X0,Y0,X1,Y1"),
        (lambda: parse_point("0:*:5,5"), "OBJ must be an integer"),
    ],
)
def test_bad_prompts(raw, msg):
    with pytest.raises(ValueError, match=msg):
        resolve(raw())


def test_no_prompts_and_two_boxes():
    with pytest.raises(ValueError, match="no prompts"):
        resolve()
    with pytest.raises(ValueError, match="a second box for object 1 on frame 0"):
        resolve(parse_box("0:1:0,0,5,5"), parse_box("0:1:1,1,6,6"))
