"""`samkit auto` with a SAM 2 model (config + checkpoint), and its "0 masks" explanation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.amg.coco import json_image_entry
from samkit.cli import main
from tests.conftest import FIXTURES, IMAGES, load_rgb
from tests.server.conftest import coco_decode

SAM2 = FIXTURES / "sam2_tiny"
SAM2_MODEL = ["--model", str(SAM2 / "config.json"), "--checkpoint", str(SAM2 / "sam2_tiny.pt")]
SHAPES = FIXTURES / "sam1_shapes"
SAM1_MODEL = [
    "--model",
    str(SHAPES / "config.json"),
    "--checkpoint",
    str(SHAPES / "sam1_shapes.pth"),
]
OPTS = ["--points-per-side", "3", "--stability-score-thresh", "0", "--quiet"]


@pytest.fixture(scope="module")
def small_dog(tmp_path_factory):
    src = tmp_path_factory.mktemp("in")
    with Image.open(IMAGES / "dog.jpg") as im:
        im.convert("RGB").resize((300, 200), Image.BILINEAR).save(src / "dog.png")
    return src / "dog.png"


def test_auto_with_a_sam2_model_matches_the_sam2_generator(tmp_path, small_dog, capsys):
    from samkit import Sam2AutomaticMaskGenerator, build_sam2

    out = tmp_path / "out"
    argv = ["auto", str(small_dog), "--out", str(out), *OPTS, "--pred-iou-thresh", "0"]
    assert main([*argv, *SAM2_MODEL]) == 0
    capsys.readouterr()
    doc = json.loads((out / "dog.json").read_text())
    model = build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt")
    gen = Sam2AutomaticMaskGenerator(
        model, points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    expected = gen.generate(load_rgb(str(small_dog)))
    assert len(doc["annotations"]) == len(expected) > 0
    for ann, rec in zip(doc["annotations"], expected):
        np.testing.assert_array_equal(coco_decode(ann["segmentation"]), rec["segmentation"])
    assert json_image_entry(doc)["samkit"]["pred_iou_thresh"] == 0.0


def test_auto_explains_zero_masks_and_uses_the_sam2_default(tmp_path, small_dog, capsys):
    out = tmp_path / "out"
    # random weights predict IoUs of about 0.5: SAM 2's default pred_iou_thresh 0.8 keeps none
    assert main(["auto", str(small_dog), "--out", str(out), *OPTS, *SAM2_MODEL]) == 0
    err = capsys.readouterr().err
    doc = json.loads((out / "dog.json").read_text())
    assert doc["annotations"] == [] and json_image_entry(doc)["samkit"]["pred_iou_thresh"] == 0.8
    assert (
        "dog.png: 0 masks: all 27 candidate masks were removed: 27 by predicted IoU <= 0.8" in err
    )
    assert "lower --pred-iou-thresh" in err


def test_auto_use_m2m_needs_sam2(tmp_path, small_dog, capsys):
    argv = ["auto", str(small_dog), "--out", str(tmp_path), *OPTS, "--use-m2m", *SAM1_MODEL]
    assert main(argv) != 0
    assert "--use-m2m needs a SAM 2" in capsys.readouterr().err
