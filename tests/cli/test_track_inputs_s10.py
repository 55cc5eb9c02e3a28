"""`samkit track`'s inputs found wrong by a fresh-user trial (session 10): label PNGs holding one
id were read as binary masks, photos as empty masks, a hidden clicked object went unreported
and `--point -1:...` was an unknown option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.cli.argparsing import join_negative_coordinates
from samkit.video.formats import write_palette_png
from samkit.video.track_prompts import parse_mask, resolve_prompts
from tests.conftest import FIXTURES
from tests.video.clips import moving_shapes, write_jpeg_folder

TINY = FIXTURES / "sam2_tiny"
MODEL = ["--model", str(TINY / "config.json"), "--checkpoint", str(TINY / "sam2_tiny.pt")]
N, H, W = 2, 96, 128


def resolve(spec: str):
    return resolve_prompts([parse_mask(spec)], N, H, W)


def test_label_png_with_one_id_is_labels_not_binary(tmp_path):
    lab = np.zeros((H, W), np.uint8)
    lab[10:30, 10:30] = 2
    write_palette_png(tmp_path / "00000.png", lab)  # samkit's own output: palette, id 2 only
    with pytest.raises(ValueError, match=r"object 1 is not in 00000\.png \(its ids: 2\)"):
        resolve(f"0:1:{tmp_path / '00000.png'}")
    (p,) = resolve(f"0:2:{tmp_path / '00000.png'}")
    assert p.obj_id == 2 and np.array_equal(p.mask, lab == 2)
    (p,) = resolve(f"0:*:{tmp_path / '00000.png'}")
    assert p.obj_id == 2


@pytest.mark.parametrize("mode,on", [("L", 255), ("L", 1), ("L", 7), ("1", 1), ("RGB", 255)])
def test_binary_masks_still_binary(tmp_path, mode, on):
    m = np.zeros((H, W), np.uint8)
    m[20:40, 30:50] = on
    im = Image.fromarray(m).convert(mode) if mode != "1" else Image.fromarray(m > 0)
    im.save(tmp_path / "m.png")
    (p,) = resolve(f"0:5:{tmp_path / 'm.png'}")
    assert p.obj_id == 5 and np.array_equal(p.mask, m > 0)
    with pytest.raises(ValueError, match="OBJ '\\*' takes every object id of a label PNG"):
        resolve(f"0:*:{tmp_path / 'm.png'}")


def test_photo_or_many_grey_levels_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / "p.jpg")
    with pytest.raises(
        ValueError,
        match=r"--mask 0:1:.*p\.jpg: p\.jpg is a colour \(RGB\) image, "
        r"not a mask: a mask file is a label PNG",
    ):
        resolve(f"0:1:{tmp_path / 'p.jpg'}")
    grey = np.tile(np.arange(W, dtype=np.uint8), (H, 1))
    Image.fromarray(grey).save(tmp_path / "g.png")
    with pytest.raises(
        ValueError,
        match=r"g\.png is a grey image with levels 0, 1, 2, 3, 4, "
        r"\.\.\. \(128 levels\), not a mask",
    ):
        resolve(f"0:1:{tmp_path / 'g.png'}")
    two = np.full((H, W), 100, np.uint8)
    two[:5] = 200  # two levels, no background 0
    Image.fromarray(two).save(tmp_path / "t.png")
    with pytest.raises(ValueError, match=r"levels 100, 200, not a mask"):
        resolve(f"0:1:{tmp_path / 't.png'}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    write_jpeg_folder(d / "frames", moving_shapes(n=N, h=H, w=W))
    return d / "frames"


def test_negative_frame_is_the_values_frame_not_an_option(clip, tmp_path, capsys):
    argv = ["--point", "-1:1:5,5", "--box", "-2:1:0,0,5,5", "--mask", "-3:1:m.png"]
    assert join_negative_coordinates(argv) == [
        "--point=-1:1:5,5",
        "--box=-2:1:0,0,5,5",
        "--mask=-3:1:m.png",
    ]
    code = main(["track", str(clip), "--out", str(tmp_path), "--point", "-1:1:5,5", *MODEL])
    err = capsys.readouterr().err
    assert code == 2 and "--point -1:1:5,5: frame -1 is outside the video (frames 0..1)" in err


def test_hidden_clicked_object_is_warned(clip, tmp_path, capsys):
    # sam2_tiny shows nothing for this click on the first frame (object score -0.011)
    argv = ["track", str(clip), "--out", str(tmp_path), "--point", "0:1:100,10"]
    code = main([*argv, "--max-frames", "1", "--no-overlay", "--quiet", *MODEL])
    out = capsys.readouterr()
    doc = json.loads((tmp_path / "annotations.json").read_text())
    score = doc["annotations"][0]["object_scores"][0]
    assert code == 0 and score < 0 and doc["annotations"][0]["areas"][0] is None
    assert (
        f"samkit track: warning: object 1 is not visible on frame 0 (object score {score:.3f} "
        "< 0): add a positive click inside it or a box"
    ) in out.err
    code = main(
        [*argv, "--point", "0:2:20,40", "--max-frames", "1", "--no-overlay", "--quiet", *MODEL]
    )
    err = capsys.readouterr().err
    assert code == 0 and "object 1 is not visible" in err and "object 2" not in err
