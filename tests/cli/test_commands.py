"""The `samkit` command line, run on ../shared/images with the fixture models."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.cli import main
from tests.conftest import FIXTURES, IMAGES, load_rgb
from tests.processes import kill_at_first_output, samkit_env

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def predictor(sam1_shapes):
    from samkit import SamPredictor

    return SamPredictor(sam1_shapes)


def _coco_decode(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_segment_point_multimask_matches_predictor(tmp_path, predictor, capsys):
    code, out, _ = _run(
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
        np.testing.assert_array_equal(_coco_decode(rec["segmentation"]), masks[i])
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
    code, _, _ = _run(
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
        np.testing.assert_array_equal(_coco_decode(r["segmentation"]), m)
        assert r["score"] == pytest.approx(float(scores[r["box_index"], 0]), abs=1e-6)


def test_segment_bfloat16_keeps_the_float32_masks(tmp_path, predictor, capsys):
    args = ["segment", str(IMAGES / "groceries.jpg"), "--box", "50,40,420,500"]
    code, _, _ = _run([*args, "--out", str(tmp_path), *MODEL, "--dtype", "bfloat16"], capsys)
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
    code, _, err = _run(
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
    code, _, err = _run(
        ["segment", str(tmp_path / "nope.jpg"), "--point", "1,1", "--out", str(tmp_path), *MODEL],
        capsys,
    )
    assert code == 2 and "nope.jpg" in err
    base = ["segment", str(IMAGES / "dog.jpg"), "--point", "1,1", "--out", str(tmp_path)]
    code, _, err = _run([*base, "--model", str(SHAPES / "config.json")], capsys)
    assert code == 2 and "--checkpoint" in err
    code, _, err = _run([*base, "--model", "vit_nope"], capsys)
    assert code == 2 and "unknown samkit variant" in err and "vit_b" in err


def test_random_weights_warns_loudly(tmp_path, capsys):
    code, _, err = _run(
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


AUTO_OPTS = [
    "--points-per-side",
    "3",
    "--pred-iou-thresh",
    "0.2",
    "--stability-score-thresh",
    "0.5",
]


def test_auto_outputs_match_generator_and_survive_a_corrupt_image(tmp_path, sam1_shapes, capsys):
    from samkit import SamAutomaticMaskGenerator

    src = tmp_path / "in"
    src.mkdir()
    _small_copy(IMAGES / "dog.jpg", src / "dog.jpg")
    shutil.copy(SHAPES / "shapes_1.png", src / "shapes_1.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    code, stdout, err = _run(["auto", str(src), "--out", str(out), *AUTO_OPTS, *MODEL], capsys)
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
            np.testing.assert_array_equal(_coco_decode(ann["segmentation"]), rec["segmentation"])
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


def _free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: connections are refused


N_KILL = 4


@pytest.mark.slow
def test_auto_is_resumable_after_a_kill(tmp_path):
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

    cmd = [sys.executable, "-m", "samkit", *argv]
    rerun = subprocess.run(
        cmd, capture_output=True, text=True, env=samkit_env(), cwd=tmp_path, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_at_kill)} skipped" in rerun.stdout
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
            assert _coco_decode(ann["segmentation"]).shape == (h, w)
        with Image.open(out / f"img{i:02d}_overlay.png") as im:
            im.load()
            assert im.size == (w, h)


def test_embed_roundtrip_and_segment_with_embedding(tmp_path, predictor, capsys):
    from samkit.io.embeddings import load_embedding

    code, stdout, _ = _run(
        [
            "embed",
            str(IMAGES / "dog.jpg"),
            str(SHAPES / "shapes_1.png"),
            "--out",
            str(tmp_path),
            *MODEL,
        ],
        capsys,
    )
    assert code == 0 and "dog.safetensors" in stdout
    emb = load_embedding(tmp_path / "dog.safetensors")
    assert emb.original_size == (534, 800) and emb.input_size == (171, 256)
    assert emb.family == "sam1" and emb.variant == str(SHAPES / "config.json")
    assert emb.img_size == 256 and tuple(emb.embedding.shape) == (1, 256, 16, 16)

    image = load_rgb("dog.jpg")
    predictor.set_image(image)
    ref = predictor.predict(np.array([[300, 200]]), np.array([1]))
    emb.apply(predictor)
    got = predictor.predict(np.array([[300, 200]]), np.array([1]))
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-6)

    # skipped on a rerun; used by segment --embedding; refused for another image
    code, stdout, _ = _run(
        ["embed", str(IMAGES / "dog.jpg"), "--out", str(tmp_path), *MODEL], capsys
    )
    assert code == 0 and "skipped" in stdout
    seg = tmp_path / "seg"
    code, _, _ = _run(
        [
            "segment",
            str(IMAGES / "dog.jpg"),
            "--point",
            "300,200",
            "--multimask",
            "--embedding",
            str(tmp_path / "dog.safetensors"),
            "--out",
            str(seg),
            *MODEL,
        ],
        capsys,
    )
    assert code == 0
    for i in range(3):
        np.testing.assert_array_equal(np.array(Image.open(seg / f"dog_mask_{i}.png")), ref[0][i])
    code, _, err = _run(
        [
            "segment",
            str(IMAGES / "groceries.jpg"),
            "--point",
            "300,200",
            "--embedding",
            str(tmp_path / "dog.safetensors"),
            "--out",
            str(seg),
            *MODEL,
        ],
        capsys,
    )
    assert code == 2 and "different image" in err


def test_load_embedding_rejects_other_files(tmp_path):
    import torch
    from safetensors.torch import save_file

    from samkit.io.embeddings import load_embedding

    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_embedding(tmp_path / "junk.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="not a samkit embedding"):
        load_embedding(tmp_path / "w.safetensors")


def test_download_offline_error_says_what_to_do(tmp_path, monkeypatch, capsys):
    from samkit.configs import sam as configs

    port = _free_closed_port()
    v = configs.get_variant("vit_b")
    url = f"http://127.0.0.1:{port}/{v.filename}"
    monkeypatch.setitem(configs.VARIANTS, "vit_b", dataclasses.replace(v, url=url))
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    code, _, err = _run(["download", "vit_b"], capsys)
    assert code == 2
    assert url in err and str(tmp_path / "cache" / v.filename) in err and "--checkpoint" in err
    assert "Traceback" not in err
    # a command without --checkpoint gives the same advice
    code, _, err2 = _run(
        [
            "segment",
            str(IMAGES / "dog.jpg"),
            "--point",
            "1,1",
            "--out",
            str(tmp_path),
            "--model",
            "vit_b",
        ],
        capsys,
    )
    assert code == 2 and url in err2 and "--checkpoint" in err2
    assert not list((tmp_path / "cache").glob("*.part"))


def test_info_lists_variants_and_present_checkpoints(tmp_path, monkeypatch, capsys):
    from samkit.configs.sam import get_variant

    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path))
    (tmp_path / get_variant("vit_l").filename).write_bytes(b"")
    code, out, _ = _run(["info", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["cache_dir"] == str(tmp_path)
    rows = {r["name"]: r for r in info["variants"]}
    assert {"vit_b", "vit_l", "vit_h"} <= set(rows)
    assert rows["vit_l"]["present"] and not rows["vit_b"]["present"]
    code, out, _ = _run(["info"], capsys)
    assert code == 0 and str(tmp_path) in out and "vit_h" in out


def test_python_dash_m_and_help():
    r = subprocess.run(
        [sys.executable, "-m", "samkit", "--help"], capture_output=True, text=True, env=samkit_env()
    )
    assert r.returncode == 0
    for cmd in ("segment", "auto", "embed", "download", "info", "serve"):
        assert cmd in r.stdout
    from samkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert text.startswith("usage: samkit " + name)
    serve = sub.choices["serve"].format_help()
    assert "127.0.0.1" in serve


SAM2 = FIXTURES / "sam2_tiny"
SAM2_MODEL = ["--model", str(SAM2 / "config.json"), "--checkpoint", str(SAM2 / "sam2_tiny.pt")]


def test_sam2_segment_and_embed(tmp_path, capsys):
    from samkit import Sam2ImagePredictor, build_sam2
    from samkit.io.embeddings import load_embedding

    code, _, err = _run(
        ["embed", str(IMAGES / "dog.jpg"), "--out", str(tmp_path), *SAM2_MODEL], capsys
    )
    assert code == 0, err
    emb = load_embedding(tmp_path / "dog.safetensors")
    assert emb.family == "sam2" and emb.original_size == (534, 800)
    assert set(emb.tensors) == {"image_embedding", "high_res_feats_0", "high_res_feats_1"}
    code, _, err = _run(
        ["segment", str(IMAGES / "dog.jpg"), "--point", "400,260", "--multimask",
         "--embedding", str(tmp_path / "dog.safetensors"), "--out", str(tmp_path), *SAM2_MODEL],
        capsys,
    )  # fmt: skip
    assert code == 0, err

    predictor = Sam2ImagePredictor(
        build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt")
    )
    predictor.set_image(load_rgb("dog.jpg"))
    masks, scores, _ = predictor.predict(np.array([[400, 260]]), np.array([1]))
    doc = json.loads((tmp_path / "dog.json").read_text())
    assert len(doc["masks"]) == 3
    for i, rec in enumerate(doc["masks"]):
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / rec["file"])), masks[i] > 0)
        assert rec["score"] == pytest.approx(float(scores[i]), abs=1e-5)
    # a SAM 1 embedding is refused for a SAM 2 model
    _run(["embed", str(SHAPES / "shapes_1.png"), "--out", str(tmp_path / "s1"), *MODEL], capsys)
    code, _, err = _run(
        ["segment", str(SHAPES / "shapes_1.png"), "--point", "10,10", "--out", str(tmp_path),
         "--embedding", str(tmp_path / "s1" / "shapes_1.safetensors"), *SAM2_MODEL],
        capsys,
    )  # fmt: skip
    assert code == 2 and "is a SAM 1 embedding" in err and "is SAM 2" in err
