"""EdgeTAM image path: the official SAM2ImagePredictor's outputs on the sam2_tiny cases with the
tiny EdgeTAM of tests/fixtures/edgetam (README there: storage, tolerances from a float64 run;
tools/reference/light_video records them), the architecture read from the checkpoint, the
official variant and the family seam."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from samkit.build.edgetam import build_edgetam, infer_edgetam_config, resolve_edgetam_config
from samkit.build.registry import config_family, family_of, spec_family, state_dict_family
from samkit.configs.edgetam import EdgeTamConfig, RepVitConfig
from samkit.modeling.edgetam import EdgeTam, EdgeTamImage
from samkit.predict.sam2 import Sam2ImagePredictor
from tests.conftest import ROOT, load_rgb

FIX = ROOT / "tests" / "fixtures" / "edgetam"
CKPT = FIX / "edgetam_tiny.pt"
LOGIT_ATOL = 1e-5  # low-res logits and IoUs (float32 drift from float64 is <= 2.7e-6)
FULL_LOGIT_ATOL = 5e-5  # full-resolution logits (two bilinear upsamplings)
STAT_ATOL = 1e-5  # channel mean / std of the features (drift 1.1e-8)
MASK_MISMATCH = 1e-4


def _manifest() -> dict:
    return json.loads((FIX / "manifest.json").read_text())


@pytest.fixture(scope="module")
def ref():
    return np.load(FIX / "image_cases.npz")


@pytest.fixture(scope="module")
def model():
    return build_edgetam(checkpoint=CKPT)


@pytest.fixture(scope="module")
def predictor(model):
    return Sam2ImagePredictor(model)


def _unpack(a: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(a, axis=-1)[..., :width].astype(bool)


def _check_masks(ref, key: str, masks: np.ndarray, stride: int) -> None:
    m = np.asarray(masks) > 0.5
    sub = m[..., ::stride, ::stride]
    stored = _unpack(ref[key], sub.shape[-1])
    assert stored.shape == sub.shape, key
    assert np.mean(stored != sub) <= MASK_MISMATCH, key
    area = m.reshape(*m.shape[:-2], -1).sum(-1)
    tol = MASK_MISMATCH * m.shape[-1] * m.shape[-2]
    assert np.all(np.abs(area - ref[key + "_area"]) <= tol), key


def _check_logits(ref, key: str, logits: np.ndarray, stride: int, atol: float) -> None:
    v = np.asarray(logits, dtype=np.float32)
    np.testing.assert_allclose(v[..., ::stride, ::stride], ref[key], rtol=0, atol=atol)
    absmax = np.abs(v).reshape(*v.shape[:-2], -1).max(-1)
    np.testing.assert_allclose(absmax, ref[key + "_absmax"], rtol=0, atol=atol)


def _check_stats(ref, pre: str, name: str, t: torch.Tensor) -> None:
    flat = t[0].double().reshape(t.shape[1], -1).numpy()
    np.testing.assert_allclose(flat.mean(-1), ref[f"{pre}{name}_chan_mean"], atol=STAT_ATOL)
    np.testing.assert_allclose(flat.std(-1, ddof=1), ref[f"{pre}{name}_chan_std"], atol=STAT_ATOL)


@pytest.mark.parametrize("name", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_image_features(predictor, ref, name):
    stem = name[:-4]
    img = load_rgb(name)
    info = _manifest()["images"][name]
    assert hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest() == info["rgb_sha256"]
    predictor.set_image(img)
    feats = predictor.get_image_features()
    pre = f"image_{stem}/"
    np.testing.assert_array_equal(ref[pre + "orig_hw"], img.shape[:2])
    _check_stats(ref, pre, "image_embed", feats["image_embedding"])
    _check_stats(ref, pre, "high_res_feats_0", feats["high_res_feats_0"])
    _check_stats(ref, pre, "high_res_feats_1", feats["high_res_feats_1"])
    if stem == "truck":
        for key, got in (
            ("image_embed_stride2", feats["image_embedding"][:, :, ::2, ::2]),
            ("high_res_feats_0_stride8", feats["high_res_feats_0"][:, :, ::8, ::8]),
            ("high_res_feats_1_stride4", feats["high_res_feats_1"][:, :, ::4, ::4]),
        ):
            stored = ref[pre + key].astype(np.float32)
            np.testing.assert_allclose(got.float().numpy(), stored, rtol=2e-3, atol=1e-4)


CASES = list(_manifest()["cases"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_matches_official(predictor, ref, case):
    stride = _manifest()["storage"]["image_logit_stride"]
    mstride = _manifest()["storage"]["image_mask_stride"]
    pre, kw = case["prefix"], case["kwargs"]
    if case["call"] == "predict":
        predictor.set_image(load_rgb(case["image"]))
        call = {k: np.asarray(kw[k]) for k in ("point_coords", "point_labels", "box") if k in kw}
        if case.get("mask_input_from"):
            call["mask_input"] = ref[pre + "mask_input"].astype(np.float32)
        masks, ious, low = predictor.predict(
            multimask_output=kw["multimask_output"],
            return_logits=kw.get("return_logits", False),
            **call,
        )
        np.testing.assert_allclose(ious, ref[pre + "iou_predictions"], rtol=0, atol=LOGIT_ATOL)
        _check_logits(ref, pre + "low_res_logits", low, stride, LOGIT_ATOL)
        if kw.get("return_logits"):
            _check_logits(ref, pre + "logits", masks, 8, FULL_LOGIT_ATOL)
            masks = np.asarray(masks) > 0
        _check_masks(ref, pre + "masks", masks, mstride)
    else:
        predictor.set_image_batch([load_rgb(n) for n in case["images"]])
        ms, ios, lows = predictor.predict_batch(
            [np.asarray(p) for p in kw["point_coords_batch"]],
            [np.asarray(p) for p in kw["point_labels_batch"]],
            multimask_output=kw["multimask_output"],
        )
        for i in range(len(case["images"])):
            np.testing.assert_allclose(ios[i], ref[f"{pre}iou_predictions_{i}"], atol=LOGIT_ATOL)
            _check_logits(ref, f"{pre}low_res_logits_{i}", lows[i], stride, LOGIT_ATOL)
            _check_masks(ref, f"{pre}masks_{i}", ms[i], mstride)


def test_architecture_is_read_from_the_checkpoint(model):
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)["model"]
    cfg = infer_edgetam_config(sd)
    assert cfg.trunk == RepVitConfig(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1))
    assert (cfg.d_model, cfg.memory.mem_dim, cfg.memory.attn_num_layers) == (64, 16, 2)
    assert (cfg.perceiver.depth, cfg.perceiver.dim_head, cfg.perceiver.num_tokens) == (2, 16, 512)
    # the official config.json says the same, except the trunk (its timm name is repvit_m1; the
    # recorder passed the tiny sizes to timm, see the fixture README)
    from_json, _ = resolve_edgetam_config(FIX / "config.json")
    assert dataclasses.replace(from_json, trunk=cfg.trunk) == cfg
    assert isinstance(model, EdgeTam) and model.family == "edgetam"
    assert set(model.state_dict()) == set(sd)
    assert model.variant.startswith("EdgeTAM RepViT (16, 32, 64, 128)")


def test_official_variant_and_family_seam():
    with torch.device("meta"):
        from samkit.build.edgetam import edgetam_from_config

        m = edgetam_from_config(EdgeTamConfig())
    assert m.variant == "edgetam"
    n_params = sum(p.numel() for p in m.parameters())
    assert 13_000_000 < n_params < 15_000_000  # 13.9 M (official edgetam.pt)
    assert spec_family("edgetam") == "edgetam"
    assert family_of(m).display == "EdgeTAM"
    assert config_family(json.loads((FIX / "config.json").read_text())) == "edgetam"
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)["model"]
    assert state_dict_family(sd) == "edgetam"
    image_only = {
        k: v
        for k, v in sd.items()
        if k.startswith(("image_encoder", "sam_")) or k == "no_mem_embed"
    }
    assert state_dict_family(image_only) == "edgetam"
    assert isinstance(build_edgetam(checkpoint=_save(image_only)), EdgeTamImage)


def _save(sd: dict) -> str:
    import tempfile

    path = tempfile.mkdtemp() + "/edgetam_image.pt"
    torch.save({"model": sd}, path)
    return path


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs a variant"):
        build_edgetam()
    with pytest.raises(ValueError, match="EdgeTAM variant is edgetam"):
        build_edgetam("sam2.1_hiera_t")
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)["model"]
    with pytest.raises(ValueError):  # the official size does not hold the tiny tensors
        bad = tmp_path / "tiny.pt"
        torch.save({"model": sd}, bad)
        build_edgetam("edgetam", checkpoint=bad)
    with pytest.raises(ValueError, match="not an EdgeTAM checkpoint"):
        infer_edgetam_config({k: v for k, v in sd.items() if "trunk" not in k})


def test_bfloat16_image_path_is_close_to_float32(predictor):
    """bfloat16 runs the RepViT trunk channels-last; features come back contiguous (embedding
    files need that) and within bfloat16 rounding of float32."""
    img = load_rgb("truck.jpg")
    low_pred = Sam2ImagePredictor(build_edgetam(checkpoint=CKPT, dtype=torch.bfloat16))
    point, label = np.array([[500.0, 375.0]]), np.array([1])
    out = {}
    for name, p in (("fp32", predictor), ("bf16", low_pred)):
        p.set_image(img)
        out[name] = (p.get_image_features(), *p.predict(point, label, multimask_output=False))
    (f32, m32, iou32, low32), (f16, m16, iou16, low16) = out["fp32"], out["bf16"]
    for key, t in f16.items():
        assert t.is_contiguous(), key
        rel = (t.float() - f32[key]).norm() / f32[key].norm()
        assert rel < 2e-2, (key, float(rel))
    np.testing.assert_allclose(iou16, iou32, atol=1e-2)
    np.testing.assert_allclose(low16, low32, atol=2e-2)
    assert np.mean(m16 == m32) > 0.99


def test_fused_trunk_is_the_same_function(model):
    """`RepViT.fuse_` (timm's inference re-parameterisation) changes float rounding only."""
    import copy

    trunk = model.image_encoder.trunk
    fused = copy.deepcopy(trunk).fuse_()
    assert fused.fused and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for a, b in zip(trunk(x), fused(x), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * float(a.abs().max()))
