"""MobileSAM / HQ-SAM builders: official layouts, architecture inference, family detection, and
the errors for a checkpoint or model of another family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.build.family import checkpoint_family
from samkit.build.light import (
    build_mobile_sam,
    build_sam_hq,
    infer_light_config,
    model_from_config,
)
from samkit.build.registry import get_family, spec_family
from samkit.configs.light import SamHQConfig
from samkit.configs.sam import get_variant
from samkit.modeling.mobile_sam import MobileSam
from samkit.modeling.sam_hq import SamHQ
from samkit.predict.sam import SamPredictor
from samkit.predict.sam_hq import SamHQPredictor
from tests.conftest import FIXTURES

HERE = Path(__file__).resolve().parents[1] / "fixtures"
LAYOUTS = HERE / "sam_hq" / "official_layouts.json"
CKPTS = {
    "mobile_sam": HERE / "mobile_sam" / "mobile_sam_tiny.pt",
    "sam_hq_vit_b": HERE / "sam_hq" / "vit_b" / "sam_hq_vit_b_tiny.pth",
    "sam_hq_vit_tiny": HERE / "sam_hq" / "vit_tiny" / "sam_hq_vit_tiny_tiny.pth",
}


@pytest.mark.parametrize(
    "variant", ["mobile_sam", "sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq_vit_tiny"]
)
def test_variant_has_the_official_state_dict_layout(variant: str) -> None:
    """Keys, order, shapes and dtypes of the official builders' models (recorded from the
    official code by tools/reference/light_image/official_keys.py)."""
    want = json.loads(LAYOUTS.read_text())[variant]
    with torch.device("meta"):
        model = model_from_config(get_variant(variant).config)
    got = [
        [k, list(v.shape), str(v.dtype).replace("torch.", "")]
        for k, v in model.state_dict().items()
    ]
    assert got == want
    # ... and reading the architecture back from those shapes gives the same config
    shapes = {k: torch.empty(s, dtype=getattr(torch, d), device="meta") for k, s, d in want}
    assert infer_light_config(shapes) == get_variant(variant).config


def test_variant_names_and_aliases() -> None:
    assert get_variant("vit_t").name == get_variant("MobileSAM").name == "mobile_sam"
    for name in ("mobile_sam", "vit_t"):
        assert spec_family(name) == "mobile_sam"
    for name in ("sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq_vit_tiny"):
        assert spec_family(name) == "sam_hq"
    assert get_family("mobile_sam").load("predictor") is SamPredictor
    assert get_family("sam_hq").load("predictor") is SamHQPredictor


def test_checkpoint_families() -> None:
    assert checkpoint_family(CKPTS["mobile_sam"]) == "mobile_sam"
    assert checkpoint_family(CKPTS["sam_hq_vit_b"]) == "sam_hq"
    assert checkpoint_family(CKPTS["sam_hq_vit_tiny"]) == "sam_hq"
    assert checkpoint_family(FIXTURES / "sam1_tiny" / "sam1_tiny.pth") == "sam1"


def test_checkpoint_of_another_family_is_refused_by_name() -> None:
    from samkit import build_sam

    with pytest.raises(ValueError, match=r"MobileSAM checkpoint.*build_mobile_sam"):
        build_sam(checkpoint=CKPTS["mobile_sam"])
    with pytest.raises(ValueError, match=r"HQ-SAM checkpoint.*build_sam_hq"):
        build_mobile_sam(checkpoint=CKPTS["sam_hq_vit_tiny"])
    with pytest.raises(ValueError, match=r"SAM 1 checkpoint.*build_sam"):
        build_sam_hq(checkpoint=FIXTURES / "sam1_tiny" / "sam1_tiny.pth")
    with pytest.raises(ValueError, match="no sam_hq model"):
        build_sam_hq("mobile_sam")
    with pytest.raises(ValueError, match="unknown samkit variant"):
        build_mobile_sam("mobile_sam_xl")
    with pytest.raises(ValueError, match="variant name, a config, or checkpoint"):
        build_sam_hq()


def test_truncated_checkpoint_names_the_missing_keys(tmp_path: Path) -> None:
    sd = torch.load(CKPTS["sam_hq_vit_b"], map_location="cpu", weights_only=True)
    del sd["mask_decoder.hf_mlp.layers.0.weight"]
    path = tmp_path / "cut.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"hf_mlp\.layers\.0\.weight"):
        build_sam_hq(checkpoint=path)


def test_random_weight_builds_run_end_to_end() -> None:
    """A variant name without a checkpoint builds random weights (benchmarks) that predict."""
    torch.manual_seed(0)
    sd = torch.load(CKPTS["mobile_sam"], map_location="cpu", weights_only=True)
    model = build_mobile_sam(infer_light_config(sd))  # the fixture's size, random weights
    assert isinstance(model, MobileSam) and model.variant == "TinyViT 16/32/48/320 x 1/2/1/1"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    idx = model.image_encoder.layers[1].blocks[0].attn.attention_bias_idxs
    assert idx.shape == (49, 49) and int(idx.max()) == 48 and int(idx[0, 0]) == 0
    p = SamPredictor(model)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    p.set_image(image)
    masks, iou, low = p.predict(np.array([[10.0, 20.0]]), np.array([1]))
    assert masks.shape == (3, 96, 128) and iou.shape == (3,) and low.shape == (3, 256, 256)


def test_hq_model_outputs_one_mask_and_hq_token_only_changes_it() -> None:
    model = build_sam_hq(checkpoint=CKPTS["sam_hq_vit_b"])
    assert isinstance(model, SamHQ) and isinstance(
        infer_light_config(model.state_dict()), SamHQConfig
    )
    p = SamHQPredictor(model)
    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    p.set_image(image)
    pt, lb = np.array([[40.0, 50.0]]), np.array([1])
    both, iou, low = p.predict(pt, lb, multimask_output=True, return_logits=True)
    hq, iou_hq, low_hq = p.predict(
        pt, lb, multimask_output=True, return_logits=True, hq_token_only=True
    )
    assert both.shape == hq.shape == (1, 120, 160) and iou.shape == (1,)
    np.testing.assert_array_equal(iou, iou_hq)  # the SAM mask's score either way
    assert np.abs(low - low_hq).max() > 1e-3
    # the default after a hq_token_only call is the official one again
    again, _, _ = p.predict(pt, lb, multimask_output=True, return_logits=True)
    np.testing.assert_array_equal(again, both)
    # stored features (embedding files) give the same answer without the encoder
    feats = p.get_image_features()
    assert sorted(feats) == ["image_embedding", "interm_embedding"]
    assert p.image_feature_bytes() == 4 * (32 + 64) * 64 * 64
    q = SamHQPredictor(model)
    q.set_image_features({k: v.clone() for k, v in feats.items()}, (120, 160))
    restored, _, _ = q.predict(pt, lb, multimask_output=True, return_logits=True)
    np.testing.assert_allclose(restored, both, rtol=0, atol=1e-6)


def test_hq_predictor_and_decoder_refuse_what_they_cannot_do() -> None:
    hq_model = build_sam_hq(checkpoint=CKPTS["sam_hq_vit_b"])
    with pytest.raises(ValueError, match="needs an HQ-SAM model"):
        SamHQPredictor(build_mobile_sam(checkpoint=CKPTS["mobile_sam"]))
    with pytest.raises(ValueError, match="early feature"):
        SamHQPredictor(hq_model).set_embedding(torch.zeros(1, 32, 64, 64), (64, 64))
    with pytest.raises(ValueError, match="interm_embedding"):
        SamHQPredictor(hq_model).set_image_features(
            {"image_embedding": torch.zeros(1, 32, 64, 64)}, (64, 64)
        )
    plain = SamPredictor(hq_model)  # the SAM 1 predictor has no HQ features to give
    plain.set_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="SamHQPredictor"):
        plain.predict(np.array([[5.0, 5.0]]), np.array([1]))
