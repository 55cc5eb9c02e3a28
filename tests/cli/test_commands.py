"""The `samkit` commands besides segment and auto (tests/cli/test_segment.py, test_auto.py): embed
and segment from an embedding, download, info, `python -m samkit`, SAM 2 segment / embed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from samkit import Sam2ImagePredictor
from samkit.cli import build_parser
from samkit.configs import sam as configs
from samkit.configs.sam import get_variant
from samkit.io.embeddings import load_embedding
from tests.cli.conftest import MODEL, SHAPES, run_cli
from tests.conftest import IMAGES, load_rgb
from tests.families import FAMILIES
from tests.processes import closed_port, samkit_env

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_embed_roundtrip_and_segment_with_embedding(tmp_path, predictor, capsys):
    code, stdout, _ = run_cli(
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
    code, stdout, _ = run_cli(
        ["embed", str(IMAGES / "dog.jpg"), "--out", str(tmp_path), *MODEL], capsys
    )
    assert code == 0 and "skipped" in stdout
    seg = tmp_path / "seg"
    code, _, _ = run_cli(
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
    code, _, err = run_cli(
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
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_embedding(tmp_path / "junk.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="not a samkit embedding"):
        load_embedding(tmp_path / "w.safetensors")


def test_download_offline_error_says_what_to_do(tmp_path, monkeypatch, capsys):
    port = closed_port()
    v = configs.get_variant("vit_b")
    url = f"http://127.0.0.1:{port}/{v.filename}"
    monkeypatch.setitem(configs.VARIANTS, "vit_b", dataclasses.replace(v, url=url))
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli(["download", "vit_b"], capsys)
    assert code == 2
    assert url in err and str(tmp_path / "cache" / v.filename) in err and "--checkpoint" in err
    assert "Traceback" not in err
    # a command without --checkpoint gives the same advice
    code, _, err2 = run_cli(
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
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path))
    (tmp_path / get_variant("vit_l").filename).write_bytes(b"")
    code, out, _ = run_cli(["info", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["cache_dir"] == str(tmp_path)
    rows = {r["name"]: r for r in info["variants"]}
    assert {"vit_b", "vit_l", "vit_h"} <= set(rows)
    assert rows["vit_l"]["present"] and not rows["vit_b"]["present"]
    code, out, _ = run_cli(["info"], capsys)
    assert code == 0 and str(tmp_path) in out and "vit_h" in out


def test_python_dash_m_and_help():
    r = subprocess.run(
        [sys.executable, "-m", "samkit", "--help"], capture_output=True, text=True, env=samkit_env()
    )
    assert r.returncode == 0
    for cmd in ("segment", "auto", "embed", "download", "info", "serve"):
        assert cmd in r.stdout
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert text.startswith("usage: samkit " + name)
    serve = sub.choices["serve"].format_help()
    assert "127.0.0.1" in serve


SAM2_MODEL = FAMILIES["sam2"].cli_model


def test_sam2_segment_and_embed(tmp_path, capsys):
    code, _, err = run_cli(
        ["embed", str(IMAGES / "dog.jpg"), "--out", str(tmp_path), *SAM2_MODEL], capsys
    )
    assert code == 0, err
    emb = load_embedding(tmp_path / "dog.safetensors")
    assert emb.family == "sam2" and emb.original_size == (534, 800)
    assert set(emb.tensors) == {"image_embedding", "high_res_feats_0", "high_res_feats_1"}
    code, _, err = run_cli(
        ["segment", str(IMAGES / "dog.jpg"), "--point", "400,260", "--multimask",
         "--embedding", str(tmp_path / "dog.safetensors"), "--out", str(tmp_path), *SAM2_MODEL],
        capsys,
    )  # fmt: skip
    assert code == 0, err

    predictor = Sam2ImagePredictor(FAMILIES["sam2"].fixture_model())
    predictor.set_image(load_rgb("dog.jpg"))
    masks, scores, _ = predictor.predict(np.array([[400, 260]]), np.array([1]))
    doc = json.loads((tmp_path / "dog.json").read_text())
    assert len(doc["masks"]) == 3
    for i, rec in enumerate(doc["masks"]):
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / rec["file"])), masks[i] > 0)
        assert rec["score"] == pytest.approx(float(scores[i]), abs=1e-5)
    # a SAM 1 embedding is refused for a SAM 2 model
    run_cli(["embed", str(SHAPES / "shapes_1.png"), "--out", str(tmp_path / "s1"), *MODEL], capsys)
    code, _, err = run_cli(
        ["segment", str(SHAPES / "shapes_1.png"), "--point", "10,10", "--out", str(tmp_path),
         "--embedding", str(tmp_path / "s1" / "shapes_1.safetensors"), *SAM2_MODEL],
        capsys,
    )  # fmt: skip
    assert code == 2 and "is a SAM 1 embedding" in err and "is SAM 2" in err
