"""EdgeTAM image path: the official SAM2ImagePredictor's outputs on the sam2_tiny cases with the
tiny EdgeTAM of tests/fixtures/edgetam (README there: storage, tolerances from a float64 run;
tools/reference/light_video records them; tests/fixtures/light_image.py compares), the
architecture read from the checkpoint, the official variant and the family seam."""

from __future__ import annotations

import dataclasses
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
from tests.fixtures.light_image import ImageCases, manifest

FIX = ROOT / "tests" / "fixtures" / "edgetam"
CKPT = FIX / "edgetam_tiny.pt"
CASES = manifest(FIX)["cases"]


@pytest.fixture(scope="module")
def cases() -> ImageCases:
    return ImageCases(FIX)


@pytest.fixture(scope="module")
def model():
    return build_edgetam(checkpoint=CKPT)


@pytest.fixture(scope="module")
def predictor(model):
    return Sam2ImagePredictor(model)


@pytest.mark.parametrize("name", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_image_features(predictor, cases, name):
    cases.check_features(predictor, name)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_matches_official(predictor, cases, case):
    cases.check_case(predictor, case)


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
