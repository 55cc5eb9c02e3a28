"""`samkit segment`: masks as the predictor gives them, batches of boxes, bf16, prompts outside the
image used with a warning, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from samkit import SamPredictor, build_sam
from samkit.cli import main
from tests.cli.conftest import MODEL, SHAPES, run_cli
from tests.conftest import IMAGES, load_rgb
from tests.server.conftest import coco_decode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_segment_point_multimask_matches_predictor(tmp_path, predictor, capsys):
    code, out, _ = run_cli(
        [
            "segment",
            str(IMAGES / "dog.jpg"),
            "--point",
            "400,260",
            "--point",
            "120,80,0",
            "--multimask",
            "--out",
            str(tmp_path),
            *MODEL,
        ],
        capsys,
    )
    assert code == 0, out
    image = load_rgb("dog.jpg")
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[400, 260], [120, 80]]), np.array([1, 0]))
    doc = json.loads((tmp_path / "dog.json").read_text())
    assert doc["image"] == {"file_name": "dog.jpg", "height": 534, "width": 800}
    assert doc["prompt"]["labels"] == [1, 0] and doc["prompt"]["multimask"] is True
    assert len(doc["masks"]) == 3
    for i, rec in enumerate(doc["masks"]):
        png = np.array(Image.open(tmp_path / rec["file"]))
        assert png.dtype == bool and png.shape == (534, 800)
        np.testing.assert_array_equal(png, masks[i])
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), masks[i])
        assert rec["area"] == int(masks[i].sum())
        assert rec["score"] == pytest.approx(float(scores[i]), abs=1e-6)
        ys, xs = np.nonzero(masks[i])
        assert rec["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        rle = {
            "size": rec["segmentation"]["size"],
            "counts": rec["segmentation"]["counts"].encode(),
        }
        assert rec["bbox"] == mask_utils.toBbox(rle).tolist()  # COCO's box
    assert doc["overlay_shows"] == [int(np.argmax(scores))]
    overlay = np.array(Image.open(tmp_path / "dog_overlay.png"))
    assert overlay.shape == image.shape
    # mask colours over the best mask, and the foreground point drawn in green at its place
    best = masks[int(np.argmax(scores))]
    assert np.abs(overlay.astype(int) - image).sum(-1)[best].mean() > 20
    r, g, b = overlay[260, 400].astype(int)
    assert g > 150 and r < 120 and b < 120


def test_segment_boxes_batch_single_mask(tmp_path, predictor, capsys):
    boxes = [[50, 40, 420, 500], [380, 100, 790, 520]]
    code, _, _ = run_cli(
        [
            "segment",
            str(IMAGES / "groceries.jpg"),
            *[x for b in boxes for x in ("--box", ",".join(map(str, b)))],
            "--out",
            str(tmp_path),
            *MODEL,
        ],
        capsys,
    )
    assert code == 0
    predictor.set_image(load_rgb("groceries.jpg"))
    masks, scores, _ = predictor.predict(box=np.array(boxes, float), multimask_output=False)
    doc = json.loads((tmp_path / "groceries.json").read_text())
    assert [(r["box_index"], r["candidate"]) for r in doc["masks"]] == [(0, 0), (1, 0)]
    for r in doc["masks"]:
        m = masks[r["box_index"], 0]
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / r["file"])), m)
        np.testing.assert_array_equal(coco_decode(r["segmentation"]), m)
        assert r["score"] == pytest.approx(float(scores[r["box_index"], 0]), abs=1e-6)


def test_segment_bfloat16_keeps_the_float32_masks(tmp_path, predictor, capsys):
    args = ["segment", str(IMAGES / "groceries.jpg"), "--box", "50,40,420,500"]
    code, _, _ = run_cli([*args, "--out", str(tmp_path), *MODEL, "--dtype", "bfloat16"], capsys)
    assert code == 0
    predictor.set_image(load_rgb("groceries.jpg"))
    exact = predictor.predict(box=np.array([50.0, 40, 420, 500]), multimask_output=False)[0][0]
    doc = json.loads((tmp_path / "groceries.json").read_text())
    fast = np.array(Image.open(tmp_path / doc["masks"][0]["file"]))
    assert (
        exact.any() and np.logical_and(fast, exact).sum() / np.logical_or(fast, exact).sum() > 0.97
    )
    with pytest.raises(SystemExit) as exc:  # argparse refuses it, listing the choices
        main([*args, "--out", str(tmp_path), *MODEL, "--dtype", "int4"])
    assert exc.value.code == 2 and "bfloat16" in capsys.readouterr().err


def test_segment_errors_are_clear(tmp_path, capsys):
    code, _, err = run_cli(
        ["segment", str(IMAGES / "dog.jpg"), "--out", str(tmp_path), *MODEL], capsys
    )
    assert code == 2 and "--point" in err and "--box" in err
    for bad, msg in [
        ("--point=1", "X,Y"),
        ("--point=1,2,5", "LABEL"),
        ("--box=5,5,1,1", "X1 >= X0"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["segment", str(IMAGES / "dog.jpg"), bad, "--out", str(tmp_path), *MODEL])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    code, _, err = run_cli(
        ["segment", str(tmp_path / "nope.jpg"), "--point", "1,1", "--out", str(tmp_path), *MODEL],
        capsys,
    )
    assert code == 2 and "nope.jpg" in err
    base = ["segment", str(IMAGES / "dog.jpg"), "--point", "1,1", "--out", str(tmp_path)]
    code, _, err = run_cli([*base, "--model", str(SHAPES / "config.json")], capsys)
    assert code == 2 and "--checkpoint" in err
    code, _, err = run_cli([*base, "--model", "vit_nope"], capsys)
    assert code == 2 and "unknown samkit variant" in err and "vit_b" in err


def test_random_weights_warns_loudly(tmp_path, capsys):
    code, _, err = run_cli(
        [
            "segment",
            str(SHAPES / "shapes_1.png"),
            "--point",
            "100,100",
            "--out",
            str(tmp_path),
            "--model",
            str(SHAPES / "config.json"),
            "--random-weights",
        ],
        capsys,
    )
    assert code == 0
    assert "WARNING" in err and "RANDOM" in err and "MEANINGLESS" in err
    assert json.loads((tmp_path / "shapes_1.json").read_text())["random_weights"] is True


def test_prompts_outside_the_image_are_used_with_a_warning(tmp_path, capsys):
    image = SHAPES / "shapes_1.png"  # 640 x 480
    argv = ["segment", str(image), "--point", "-10,-10", "--point", "200,150",
            "--box", "-20,100,700,300", "--out", str(tmp_path), *MODEL]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: point 0 (-10, -10) is outside the 640x480 image" in err
    assert "warning: box 0 (-20, 100, 700, 300) reaches outside the 640x480 image" in err
    assert "point 1" not in err
    predictor = SamPredictor(
        build_sam(SHAPES / "config.json", checkpoint=SHAPES / "sam1_shapes.pth")
    )
    predictor.set_image(load_rgb(str(image)))
    masks, _, _ = predictor.predict(
        np.array([[-10, -10], [200, 150]]),
        np.array([1, 1]),
        np.array([-20, 100, 700, 300]),
        multimask_output=False,
    )
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "shapes_1_mask_0.png")), masks[0])
    # inside the image: no warning
    assert main(["segment", str(image), "--point", "0,480", "--out", str(tmp_path), *MODEL]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_a_device_torch_cannot_use_is_a_clean_error(tmp_path, capsys):
    img = IMAGES / "dog.jpg"
    code = main(
        ["segment", str(img), "--point", "1,1", *MODEL, "--device", "cuda", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and "Traceback" not in err


def test_out_that_is_a_file_is_a_clean_error(tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    code = main(
        ["segment", str(IMAGES / "dog.jpg"), "--point", "1,1", *MODEL, "--out", str(not_a_folder)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "file.txt" in err
