"""`samkit auto`: the generator's masks as COCO files, a corrupt image skipped, a killed run resumed;
with a SAM 2 model, its generator and its \"0 masks\" explanation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit import Sam2AutomaticMaskGenerator, SamAutomaticMaskGenerator
from samkit.amg.coco import json_image_entry
from samkit.cli import main
from tests.cli.conftest import AUTO_OPTS, MODEL, SHAPES, run_cli
from tests.conftest import IMAGES, load_rgb
from tests.families import FAMILIES
from tests.processes import kill_at_first_output
from tests.server.conftest import coco_decode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_auto_outputs_match_generator_and_survive_a_corrupt_image(tmp_path, sam1_shapes, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _small_copy(IMAGES / "dog.jpg", src / "dog.jpg")
    shutil.copy(SHAPES / "shapes_1.png", src / "shapes_1.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["auto", str(src), "--out", str(out), *AUTO_OPTS, *MODEL], capsys)
    assert code == 1  # one image failed
    assert "broken.jpg" in err and "1 failed" in stdout and "2 images segmented" in stdout
    assert "masks/s" in err  # the progress line
    assert sorted(p.name for p in out.iterdir()) == [
        "_annotations.coco.json",  # the run's COCO dataset (tests/amg/test_coco_dataset.py)
        "dog.json",
        "dog_overlay.png",
        "shapes_1.json",
        "shapes_1_overlay.png",
    ]
    gen = SamAutomaticMaskGenerator(
        sam1_shapes, points_per_side=3, pred_iou_thresh=0.2, stability_score_thresh=0.5
    )
    for name in ("dog.jpg", "shapes_1.png"):
        image = load_rgb(str(src / name))
        expected = gen.generate(image)
        doc = json.loads((out / f"{Path(name).stem}.json").read_text())
        assert doc["images"][0]["file_name"] == name  # the default --format coco
        assert (doc["images"][0]["height"], doc["images"][0]["width"]) == image.shape[:2]
        assert len(doc["annotations"]) == len(expected) > 0
        for ann, rec in zip(doc["annotations"], expected):
            np.testing.assert_array_equal(coco_decode(ann["segmentation"]), rec["segmentation"])
            x, y, w, h = rec["bbox"]  # COCO's box is one pixel larger than the official one
            assert ann["area"] == rec["area"] and ann["bbox"] == [x, y, w + 1, h + 1]
            assert ann["predicted_iou"] == pytest.approx(rec["predicted_iou"], abs=1e-6)
        overlay = Image.open(out / f"{Path(name).stem}_overlay.png")
        assert overlay.size == (image.shape[1], image.shape[0])


def _small_copy(src: Path, dest: Path, long_side: int = 400) -> None:
    """A copy of a shared image with its long side scaled to `long_side` (keeps AMG tests fast)."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        s = long_side / max(im.size)
        im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR).save(dest)


N_KILL = 4


@pytest.mark.slow
def test_auto_is_resumable_after_a_kill(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    images = [*sorted(IMAGES.glob("*.jpg")), SHAPES / "shapes_1.png"]
    for i in range(N_KILL):
        _small_copy(images[i % len(images)], src / f"img{i:02d}.png", long_side=256)
    out = tmp_path / "out"
    argv = ["auto", str(src), "--out", str(out), *AUTO_OPTS, *MODEL]
    kill_at_first_output(argv, out, cwd=tmp_path, timeout=120)
    done_at_kill = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert 0 < len(done_at_kill) < N_KILL, "the kill should land mid-run"

    code, stdout, err = run_cli(argv, capsys)  # the rerun: in this process (no second start)
    assert code == 0, err
    assert f"{len(done_at_kill)} skipped" in stdout
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(
        ["_annotations.coco.json"]
        + [n for i in range(N_KILL) for n in (f"img{i:02d}.json", f"img{i:02d}_overlay.png")]
    )
    assert names == expected  # no duplicates, no leftover temporary files
    for name, mtime in done_at_kill.items():
        assert (out / name).stat().st_mtime_ns == mtime  # complete outputs were not redone
    for i in range(N_KILL):
        doc = json.loads((out / f"img{i:02d}.json").read_text())
        h, w = doc["images"][0]["height"], doc["images"][0]["width"]
        for ann in doc["annotations"]:
            assert coco_decode(ann["segmentation"]).shape == (h, w)
        with Image.open(out / f"img{i:02d}_overlay.png") as im:
            im.load()
            assert im.size == (w, h)


SAM2_MODEL = FAMILIES["sam2"].cli_model
SAM2_OPTS = ["--points-per-side", "3", "--stability-score-thresh", "0", "--quiet"]


@pytest.fixture(scope="module")
def small_dog(tmp_path_factory):
    src = tmp_path_factory.mktemp("in")
    with Image.open(IMAGES / "dog.jpg") as im:
        im.convert("RGB").resize((300, 200), Image.BILINEAR).save(src / "dog.png")
    return src / "dog.png"


def test_auto_with_a_sam2_model_matches_the_sam2_generator(tmp_path, small_dog, capsys):
    out = tmp_path / "out"
    argv = ["auto", str(small_dog), "--out", str(out), *SAM2_OPTS, "--pred-iou-thresh", "0"]
    assert main([*argv, *SAM2_MODEL]) == 0
    capsys.readouterr()
    doc = json.loads((out / "dog.json").read_text())
    model = FAMILIES["sam2"].fixture_model()
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
    assert main(["auto", str(small_dog), "--out", str(out), *SAM2_OPTS, *SAM2_MODEL]) == 0
    err = capsys.readouterr().err
    doc = json.loads((out / "dog.json").read_text())
    assert doc["annotations"] == [] and json_image_entry(doc)["samkit"]["pred_iou_thresh"] == 0.8
    assert (
        "dog.png: 0 masks: all 27 candidate masks were removed: 27 by predicted IoU <= 0.8" in err
    )
    assert "lower --pred-iou-thresh" in err


def test_auto_use_m2m_needs_sam2(tmp_path, small_dog, capsys):
    argv = ["auto", str(small_dog), "--out", str(tmp_path), *SAM2_OPTS, "--use-m2m", *MODEL]
    assert main(argv) != 0
    assert "--use-m2m needs a SAM 2" in capsys.readouterr().err
