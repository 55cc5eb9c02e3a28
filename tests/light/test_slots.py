"""Every light family (MobileSAM, HQ-SAM, EfficientTAM, EdgeTAM) in every slot of the house: "a user
changes one name". What each slot does for each family is the table `SLOTS`; the tests below
run each working slot through the shared code (the same predictors, automatic masks, embedding
files, int8 / bf16, the web app's engine, Ray's model resolution and job code, the CLI) and
check each missing one is refused with a ValueError / CLI error naming what to use instead.

ONNX export and fine-tuning, which need more than a smoke run, have their own modules
(tests/light/test_onnx.py: onnxruntime vs torch; tests/light/test_finetune.py: losses fall).
Models: the tiny random-weight ones of tests/light/tiny_models.py (EdgeTAM: its fixture
checkpoint), and the fixtures' official-format checkpoints where a file is loaded (loader, CLI,
int8 / bf16).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.amg.select import mask_generator_for
from samkit.build.edgetam import build_edgetam
from samkit.build.family import checkpoint_family
from samkit.build.loaded import load_family_model
from samkit.build.registry import SLOT_FOLDERS, family_of, get_family
from samkit.cli import main
from samkit.distributed.models import resolve_model
from samkit.io.embeddings import features_of, load_embedding, save_embedding
from samkit.io.provenance import of_model
from samkit.jobs import make_generator, make_predictor
from samkit.runtime.accel import optimize
from samkit.runtime.int8 import is_int8
from samkit.server.engine import Engine
from samkit.train.families import family_ops
from tests.conftest import IMAGES, load_rgb
from tests.light.tiny_models import tiny_efficienttam, tiny_mobile_sam, tiny_sam_hq

FIX = Path(__file__).resolve().parents[1] / "fixtures"
# family -> (the --model of its fixture, or None: the checkpoint says it all; the checkpoint)
CHECKPOINTS: dict[str, tuple[str | None, Path]] = {
    "mobile_sam": (None, FIX / "mobile_sam" / "mobile_sam_tiny.pt"),
    "sam_hq": (None, FIX / "sam_hq" / "vit_b" / "sam_hq_vit_b_tiny.pth"),
    "efficienttam": (
        str(FIX / "efficienttam" / "config.json"),
        FIX / "efficienttam" / "efficienttam_tiny.pt",
    ),
    "edgetam": (None, FIX / "edgetam" / "edgetam_tiny.pt"),
}
TINY = {
    "mobile_sam": tiny_mobile_sam,
    "sam_hq": tiny_sam_hq,
    "efficienttam": tiny_efficienttam,
    "edgetam": lambda: build_edgetam(checkpoint=CHECKPOINTS["edgetam"][1]).eval(),
}
FAMILIES = list(CHECKPOINTS)

# family x registry slot: "works" (a test here or in test_onnx / test_finetune runs it), the
# words of the refusal, or "pending: <refusal>" for a slot another piece of work is adding
# (EfficientTAM's video ONNX files are the video export's, export/sam2_video.py).
SLOTS: dict[str, dict[str, str]] = {
    "mobile_sam": {
        "predictor": "works",
        "amg_generator": "works",
        "concepts": "MobileSAM models have no text-concept search",
        "trainer": "works",
        "exporter": "works",
        "onnx_predictor": "works",
        "video_predictor": "MobileSAM models have no video tracking",
        "video_exporter": "MobileSAM models have no ONNX export of video tracking",
        "onnx_video_predictor": "MobileSAM models have no onnxruntime video predictor",
    },
    "sam_hq": {
        "predictor": "works",
        "amg_generator": "works",
        "concepts": "HQ-SAM models have no text-concept search",
        "trainer": "works",
        "exporter": "works",
        "onnx_predictor": "works",
        "video_predictor": "HQ-SAM models have no video tracking",
        "video_exporter": "HQ-SAM models have no ONNX export of video tracking",
        "onnx_video_predictor": "HQ-SAM models have no onnxruntime video predictor",
    },
    "efficienttam": {
        "predictor": "works",
        "amg_generator": "works",
        "concepts": "EfficientTAM models have no text-concept search",
        "trainer": "works",
        "exporter": "works",
        "onnx_predictor": "works",
        "video_predictor": "works",
        "video_exporter": "works",
        "onnx_video_predictor": "works",
    },
    "edgetam": {
        "predictor": "works",
        "amg_generator": "works",
        "concepts": "EdgeTAM models have no text-concept search",
        "trainer": "EdgeTAM models have no fine-tuning",
        "exporter": "EdgeTAM models have no ONNX export",
        "onnx_predictor": "EdgeTAM models have no onnxruntime predictor",
        "video_predictor": "works",
        "video_exporter": "works",
        "onnx_video_predictor": "works",
    },
}
POINT = (np.array([[40.0, 30.0]]), np.array([1]))
NO_FILTERS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request: pytest.FixtureRequest) -> tuple[str, Any]:
    torch.set_num_threads(1)
    return request.param, TINY[request.param]()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", FAMILIES)
def test_registry_slots_are_the_table(family: str) -> None:
    fam = get_family(family)
    assert set(SLOTS[family]) == set(SLOT_FOLDERS) - {"model", "loader", "config_match"}
    for slot, status in SLOTS[family].items():
        pending = status.startswith("pending: ")
        if status == "works" or (pending and fam.has(slot)):
            assert fam.has(slot), (family, slot)
            assert fam.load(slot) is not None
        else:
            status = status.removeprefix("pending: ")
            assert not fam.has(slot), (family, slot)
            with pytest.raises(ValueError, match=status):
                fam.load(slot)


@pytest.mark.parametrize("family", FAMILIES)
def test_loader_reads_the_official_format_checkpoint(family: str) -> None:
    spec, ckpt = CHECKPOINTS[family]
    assert checkpoint_family(ckpt) == family
    model = load_family_model(family, spec, ckpt)
    assert family_of(model).name == family and not model.training


def test_predictor_amg_and_trainer_slots(tiny: tuple[str, Any], image: np.ndarray) -> None:
    family, model = tiny
    predictor = make_predictor(model, family)  # what samkit segment / embed / Ray use
    assert isinstance(predictor, get_family(family).load("predictor"))
    predictor.set_image(image)
    masks, iou, low = predictor.predict(*POINT, multimask_output=False)
    assert masks.shape == (1, 96, 128) and iou.shape == (1,) and low.ndim == 3
    gen = mask_generator_for(predictor, **NO_FILTERS)
    assert isinstance(gen, get_family(family).load("amg_generator"))
    records = gen.generate(image)
    assert records and all(r["segmentation"].shape == (96, 128) for r in records)
    auto = make_generator(model, family, dict(NO_FILTERS))  # samkit auto's and Ray's
    assert len(auto.generate(image)) == len(records)
    if SLOTS[family]["trainer"] == "works":
        assert isinstance(family_ops(model), get_family(family).load("trainer"))
    else:
        with pytest.raises(ValueError, match=SLOTS[family]["trainer"]):
            family_ops(model)


def test_embedding_file_round_trip(
    tiny: tuple[str, Any], image: np.ndarray, tmp_path: Path
) -> None:
    """Features -> file -> a fresh predictor: the same answer bit for bit, the same file bytes
    (HQ-SAM's file carries the encoder's early feature as well)."""
    family, model = tiny
    p = make_predictor(model, family)
    p.set_image(image)
    feats = features_of(p, family)
    meta = {
        "variant": "tiny",
        "family": family,
        "original_size": image.shape[:2],  # as samkit embed (jobs.EmbedJob) records them
        "input_size": getattr(p, "input_size", None) or (model.image_size, model.image_size),
        "img_size": model.image_size,
        "provenance": of_model(model),
    }
    first = save_embedding(tmp_path / "a.safetensors", feats, **meta)
    emb = load_embedding(first)
    assert sorted(emb.tensors) == sorted(feats)
    fresh = make_predictor(model, family)
    emb.apply(fresh)
    want = p.predict(*POINT, multimask_output=False, return_logits=True)
    got = fresh.predict(*POINT, multimask_output=False, return_logits=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    again = save_embedding(tmp_path / "b.safetensors", features_of(fresh, family), **meta)
    assert again.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["int8", "bf16"])
def test_int8_and_bf16_keep_the_masks(family: str, mode: str) -> None:
    """The house bounds of tests/runtime/test_accel.py (mask IoU >= 0.97, IoU within 0.02) on
    the fixture checkpoints; measured: mask IoU >= 0.98, IoU within 2e-3."""
    torch.set_num_threads(1)
    spec, ckpt = CHECKPOINTS[family]
    img = load_rgb(IMAGES / "truck.jpg")
    pt = (np.array([[500.0, 375.0]]), np.array([1]))
    ref_p = make_predictor(load_family_model(family, spec, ckpt), family)
    ref_p.set_image(img)
    ref = ref_p.predict(*pt, multimask_output=False)
    if mode == "int8" and family == "edgetam":  # RepViT: convolutions only
        with pytest.raises(ValueError, match=r"has none \(a convolutional encoder"):
            optimize(load_family_model(family, spec, ckpt), int8=True)
        return
    if mode == "int8":
        model = optimize(load_family_model(family, spec, ckpt), int8=True)
        assert is_int8(model.image_encoder)
    else:
        model = load_family_model(family, spec, ckpt, dtype=torch.bfloat16)
    p = make_predictor(model, family)
    p.set_image(img)
    got = p.predict(*pt, multimask_output=False)
    a, b = ref[0].astype(bool), got[0].astype(bool)
    assert (a & b).sum() / (a | b).sum() >= 0.97
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=0.02)


def test_web_engine_serves_clicks_and_everything(tiny: tuple[str, Any], image: np.ndarray) -> None:
    family, model = tiny
    engine = Engine(model, cache_bytes=64 * 2**20)
    try:
        assert engine.family == family
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        _, fut = engine.submit_image(buf.getvalue())
        entry, cached = fut.result(timeout=120)
        assert not cached and entry.original_size == (96, 128)
        out = engine.predict(entry, [(40.0, 30.0)], [1], None, multimask=False)
        direct = make_predictor(model, family)
        direct.set_image(image)
        want = direct.predict(*POINT, multimask_output=False)
        assert out["masks"][0]["area"] == int(np.asarray(want[0][0]).astype(bool).sum())
        result = engine.everything(entry, dict(NO_FILTERS)).result(timeout=300)
        assert result["annotations"]
    finally:
        engine.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_ray_driver_resolves_the_model(family: str) -> None:
    spec, ckpt = CHECKPOINTS[family]
    run = resolve_model(spec, ckpt)  # what `samkit auto --ray` ships to the actors
    assert run.family == family and family_of(run.model).name == family
    assert resolve_model(run.model).family == family  # a built model says its family


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_commands_take_the_family(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """segment / embed / segment --embedding / auto work with one name changed; the commands a
    family cannot serve say what to use instead."""
    spec, ckpt = CHECKPOINTS[family]
    model = ["--checkpoint", str(ckpt)] + (["--model", spec] if spec else [])
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8)).save(img)
    seg = ["segment", *model, "--point", "30,20", str(img)]
    assert main([*seg, "--out", str(tmp_path / "seg")]) == 0
    assert main(["embed", *model, "--out", str(tmp_path / "emb"), str(img)]) == 0
    emb = tmp_path / "emb" / "img.safetensors"
    assert load_embedding(emb).family == family
    assert main([*seg, "--embedding", str(emb), "--out", str(tmp_path / "seg2")]) == 0
    assert (tmp_path / "seg" / "img.json").read_text() == (
        tmp_path / "seg2" / "img.json"
    ).read_text()
    auto = ["auto", *model, "--points-per-side", "2", "--out", str(tmp_path / "auto"), str(img)]
    assert main(auto) == 0
    capsys.readouterr()
    assert main(["segment", *model, "--text", "dog", "--out", str(tmp_path / "t"), str(img)]) == 2
    assert "needs a SAM 3 model (--model sam3" in capsys.readouterr().err
    if SLOTS[family]["video_predictor"] != "works":
        frames = tmp_path / "frames"
        frames.mkdir()
        Image.open(img).save(frames / "00000.jpg")
        assert (
            main(["track", *model, "--point", "0:1:5,5", "--out", str(tmp_path / "v"), str(frames)])
            == 2
        )
        assert "video tracking needs a SAM 2 or" in capsys.readouterr().err
    if not get_family(family).has("exporter"):
        assert main(["export", "onnx", *model, "--out", str(tmp_path / "onnx")]) == 2
        assert "samkit export onnx needs a SAM 1 or SAM 2" in capsys.readouterr().err
