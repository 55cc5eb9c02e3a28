"""EfficientTAM configs, builder, architecture inference and its two new modules (the ViT trunk and
the pooled memory cross-attention); parity with the official outputs is in
tests/predict/test_parity_efficienttam.py and tests/video/test_parity.py (the video sessions)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from samkit.build.efficienttam import (
    build_efficienttam,
    efficienttam_from_config,
    efficienttam_variant_names,
    infer_efficienttam_variant,
    resolve_efficienttam_config,
)
from samkit.build.registry import state_dict_family
from samkit.configs.efficienttam import efficienttam_config_from_official
from samkit.layers.rope import RoPEAttention
from samkit.modeling.efficienttam_attention import EfficientRoPEAttention
from samkit.modeling.vitdet import ViTDet
from tests.conftest import FIXTURES, ROOT

FIX = ROOT / "tests" / "fixtures" / "efficienttam"


def _meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    cfg, _ = resolve_efficienttam_config(name)
    with torch.device("meta"):
        return efficienttam_from_config(cfg).state_dict()


def test_variants_registered():
    names = efficienttam_variant_names()
    for size in ("ti", "s"):
        for suffix in ("", "_1", "_2", "_512x512"):
            assert f"efficienttam_{size}{suffix}" in names
    cfg, name = resolve_efficienttam_config("efficienttam_s_2")
    assert (name, cfg.trunk.embed_dim, cfg.trunk.num_heads, cfg.cross_attention) == (
        "efficienttam_s_2",
        384,
        6,
        "efficient2",
    )
    assert resolve_efficienttam_config("efficienttam_ti_512x512")[0].memory.attn_feat_sizes == (
        32,
        32,
    )


def test_wrong_family_variant_is_refused():
    with pytest.raises(ValueError, match="EfficientTAM variants are"):
        resolve_efficienttam_config("sam2.1_hiera_t")


@pytest.mark.parametrize(
    ("name", "variant"),
    [("efficienttam_ti", "efficienttam_ti"), ("efficienttam_s_1", "efficienttam_s_1")],
)
def test_model_says_its_variant(name, variant):
    cfg, _ = resolve_efficienttam_config(name)
    with torch.device("meta"):
        model = efficienttam_from_config(cfg)
    assert model.family == "efficienttam"
    assert model.variant == variant
    assert not model.use_high_res_features_in_sam
    assert "sam_mask_decoder.conv_s0.weight" not in model.state_dict()


@pytest.mark.parametrize("name", ["efficienttam_ti", "efficienttam_s"])
def test_infer_variant_from_shapes(name):
    assert infer_efficienttam_variant(_meta_state_dict(name)) == name
    # the cross-attention variants have the very same tensors
    assert infer_efficienttam_variant(_meta_state_dict(name + "_2")) == name


def test_infer_custom_size_needs_config():
    sd = torch.load(FIX / "efficienttam_tiny.pt", map_location="cpu", weights_only=True)["model"]
    with pytest.raises(ValueError, match="needs its config"):
        infer_efficienttam_variant(sd)
    with pytest.raises(ValueError, match="needs its config"):
        build_efficienttam(checkpoint=FIX / "efficienttam_tiny.pt")


def test_checkpoint_family_is_told_apart_from_sam2():
    tiny = torch.load(FIX / "efficienttam_tiny.pt", map_location="cpu", weights_only=True)["model"]
    assert state_dict_family(tiny) == "efficienttam"
    sam2 = torch.load(
        FIXTURES / "sam2_tiny" / "sam2_tiny.pt", map_location="cpu", weights_only=True
    )["model"]
    assert state_dict_family(sam2) == "sam2"
    with pytest.raises(ValueError, match="SAM 2 checkpoint"):
        build_efficienttam("efficienttam_ti", checkpoint=FIXTURES / "sam2_tiny" / "sam2_tiny.pt")


def test_fixture_config_and_checkpoint_load():
    model = build_efficienttam(FIX / "config.json", checkpoint=FIX / "efficienttam_tiny.pt")
    assert model.variant == "EfficientTAM ViT 64 wide, depth 4"
    assert model.memory_attention.layers[0].cross_attn_image.variant == 1
    assert tuple(model.image_embedding_shape) == (64, 64, 64)


def test_official_config_errors():
    raw = json.loads((FIX / "config.json").read_text())
    bad = json.loads(json.dumps(raw))
    bad["model"]["image_encoder"]["trunk"]["_target_"] = "sam2.modeling.backbones.hieradet.Hiera"
    with pytest.raises(ValueError, match="ViT trunk"):
        efficienttam_config_from_official(bad)
    bad = json.loads(json.dumps(raw))
    bad["model"]["memory_attention"]["layer"]["cross_attention"]["_target_"] = "x.Other"
    with pytest.raises(ValueError, match="cross_attention"):
        efficienttam_config_from_official(bad)
    bad = json.loads(json.dumps(raw))
    del bad["model"]["image_encoder"]["neck"]
    with pytest.raises(ValueError, match="not an EfficientTAM model config"):
        efficienttam_config_from_official(bad)
    cfg = efficienttam_config_from_official(raw)
    with pytest.raises(ValueError, match="cross_attention must be one of"):
        dataclasses.replace(cfg, cross_attention="pooled")


def test_vit_needs_a_global_block():
    with pytest.raises(ValueError, match="no global block"):
        ViTDet(embed_dim=32, depth=2, num_heads=2, window_block_indexes=(0, 1))


def test_efficient_attention_unknown_variant():
    with pytest.raises(ValueError, match="variant must be 1 or 2"):
        EfficientRoPEAttention(32, 1, variant=3)


def _reference_pooled(attn: EfficientRoPEAttention, q, k, v, n_ptr: int) -> torch.Tensor:
    """The official formula written out: rotate, pool each frame's keys / values 2x2, add
    2 log 2 to the pooled logits (variant 1) or to the pooled keys (variant 2), softmax."""
    qh = attn._separate_heads(attn.q_proj(q))
    kh = attn._separate_heads(attn.k_proj(k))
    vh = attn._separate_heads(attn.v_proj(v))
    nq = qh.shape[2]
    side = math.isqrt(nq)
    cos2, sin2 = attn.rope_tables(nq, q.device)
    from samkit.layers.rope import rotate

    qh = rotate(qh, cos2, sin2)
    n_rope = kh.shape[2] - n_ptr
    km = rotate(kh[:, :, :n_rope], cos2, sin2)

    def pool(x):
        b, nh, n, hs = x.shape
        frames = []
        for f in range(n // nq):
            g = x[:, :, f * nq : (f + 1) * nq].reshape(b, nh, side, side, hs)
            g = g.reshape(b, nh, side // 2, 2, side // 2, 2, hs).mean(dim=(3, 5))
            frames.append(g.reshape(b, nh, -1, hs))
        return torch.cat(frames, dim=2)

    kl, vl = pool(km), pool(vh[:, :, :n_rope])
    if attn.variant == 2:
        kl = kl + 2 * math.log(2)
    keys = torch.cat([kl, kh[:, :, n_rope:]], dim=2)
    vals = torch.cat([vl, vh[:, :, n_rope:]], dim=2)
    logits = qh @ keys.transpose(-2, -1) / math.sqrt(qh.shape[-1])
    if attn.variant == 1:
        logits[..., : kl.shape[2]] += 2 * math.log(2)
    out = torch.softmax(logits, dim=-1) @ vals
    b, nh, n, hs = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize(("frames", "n_ptr"), [(1, 4), (3, 8), (2, 0)])
def test_pooled_cross_attention(variant, frames, n_ptr):
    torch.manual_seed(variant * 10 + frames)
    kw = dict(kv_in_dim=16, rope_k_repeat=True, feat_sizes=(8, 8))
    attn = EfficientRoPEAttention(32, 2, variant=variant, **kw).eval()
    q = torch.randn(2, 64, 32)
    k = torch.randn(2, 64 * frames + n_ptr, 16)
    v = torch.randn(2, 64 * frames + n_ptr, 16)
    with torch.no_grad():
        out = attn(q, k, v, num_k_exclude_rope=n_ptr)
        if frames == 1:  # one frame of memory: the plain RoPE attention
            plain = RoPEAttention(32, 2, **kw).eval()
            plain.load_state_dict(attn.state_dict())
            torch.testing.assert_close(out, plain(q, k, v, num_k_exclude_rope=n_ptr))
        else:
            expected = _reference_pooled(attn, q, k, v, n_ptr)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
