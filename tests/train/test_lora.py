"""LoRA and adapters: zero init is the identity, merging is exact, merged checkpoints load; on SAM 1
(ViT) and on SAM 2 (Hiera and the shared decoder; the exact resume of both is
tests/train/test_loop.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from samkit import build_sam, build_sam2
from samkit.build.sam2 import resolve_sam2_config
from samkit.checkpoint import read_state_dict, save_checkpoint
from samkit.train.families import Features, family_ops
from samkit.train.lora import (
    LoRALinear,
    adapter_state_dict,
    add_adapters,
    apply_lora,
    configure_trainable,
    infer_adapters,
    merge_lora,
)
from tests.families import FAMILIES, tiny_sam2_config, tiny_sam_config

SAM2_FIXTURE = FAMILIES["sam2"].dir


def _outputs(model: nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(2, 3, 64, 64, generator=g) * 255
    pts = torch.rand(2, 2, 2, generator=g) * 64
    with torch.no_grad():
        emb = model.image_encoder(model.preprocess(img))
        sparse, dense = model.prompt_encoder(points=(pts, torch.ones(2, 2)), boxes=None, masks=None)
        low, _iou = model.mask_decoder(
            emb, model.prompt_encoder.get_dense_pe(), sparse, dense, True, repeat_image=False
        )
    return emb, low


def _randomise_lora(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.05)


def test_zero_init_lora_leaves_outputs_unchanged(tiny_sam) -> None:
    emb0, low0 = _outputs(tiny_sam)
    names = apply_lora(tiny_sam, rank=4, alpha=8)
    assert len(names) == 4  # 2 blocks x (qkv, proj)
    emb1, low1 = _outputs(tiny_sam)
    torch.testing.assert_close(emb1, emb0, rtol=0, atol=0)
    torch.testing.assert_close(low1, low0, rtol=0, atol=0)
    # base keys are unchanged, LoRA adds lora_A / lora_B
    keys = set(tiny_sam.state_dict())
    assert "image_encoder.blocks.0.attn.qkv.weight" in keys
    assert "image_encoder.blocks.0.attn.qkv.lora_A" in keys


def test_lora_changes_outputs_and_merge_is_exact(tiny_sam, tmp_path) -> None:
    official_keys = set(tiny_sam.state_dict())
    emb0, _ = _outputs(tiny_sam)
    apply_lora(tiny_sam, rank=2, alpha=4, targets=["qkv"], blocks=[1])
    _randomise_lora(tiny_sam)
    emb_lora, low_lora = _outputs(tiny_sam)
    assert (emb_lora - emb0).abs().max() > 1e-4  # LoRA does something
    assert merge_lora(tiny_sam) == 1
    assert not any(isinstance(m, LoRALinear) for m in tiny_sam.modules())
    emb_m, low_m = _outputs(tiny_sam)
    torch.testing.assert_close(emb_m, emb_lora, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(low_m, low_lora, rtol=1e-5, atol=1e-5)
    # the merged model saves as an official-format state dict that build_sam loads on its own
    path = save_checkpoint(tiny_sam, tmp_path / "merged.safetensors")
    assert set(read_state_dict(path)) == official_keys
    loaded = build_sam(checkpoint=path)
    emb_l, low_l = _outputs(loaded)
    torch.testing.assert_close(emb_l, emb_m, rtol=0, atol=0)
    torch.testing.assert_close(low_l, low_m, rtol=0, atol=0)


def test_lora_argument_errors(tiny_sam) -> None:
    with pytest.raises(ValueError, match="targets"):
        apply_lora(tiny_sam, 4, targets=["mlp"])
    with pytest.raises(ValueError, match="rank"):
        apply_lora(tiny_sam, 0)
    with pytest.raises(ValueError, match="out of range"):
        apply_lora(tiny_sam, 2, blocks=[5])
    apply_lora(tiny_sam, 2)
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(tiny_sam, 2)


def test_configure_trainable_with_lora_and_freeze(tiny_sam) -> None:
    apply_lora(tiny_sam, 2)
    configure_trainable(tiny_sam, "none", peft=True)
    train = {n for n, p in tiny_sam.named_parameters() if p.requires_grad}
    enc = {n for n in train if n.startswith("image_encoder")}
    assert enc and all(".lora_" in n for n in enc)
    assert any(n.startswith("mask_decoder") for n in train)
    assert any(n.startswith("prompt_encoder") for n in train)
    configure_trainable(tiny_sam, "encoder+prompt", peft=True)
    train = {n for n, p in tiny_sam.named_parameters() if p.requires_grad}
    assert not any(n.startswith("prompt_encoder") for n in train)
    trainable, total = configure_trainable(tiny_sam, "encoder", peft=False)
    assert 0 < trainable < total
    enc_train = [n for n, p in tiny_sam.image_encoder.named_parameters() if p.requires_grad]
    assert enc_train and all(".lora_" in n for n in enc_train)  # LoRA itself always trains
    with pytest.raises(ValueError, match="freeze"):
        configure_trainable(tiny_sam, "decoder")


def test_adapters_zero_init_and_roundtrip(tiny_sam) -> None:
    emb0, _ = _outputs(tiny_sam)
    add_adapters(tiny_sam, hidden=8)
    emb1, _ = _outputs(tiny_sam)
    torch.testing.assert_close(emb1, emb0, rtol=0, atol=0)
    with torch.no_grad():
        for k, v in tiny_sam.named_parameters():
            if ".adapter.up." in k:
                v.normal_(0, 0.1)
    emb2, low2 = _outputs(tiny_sam)
    assert (emb2 - emb0).abs().max() > 1e-4
    sd = adapter_state_dict(tiny_sam)
    assert infer_adapters(sd) == (8, [0, 1])
    base = {k: v for k, v in tiny_sam.state_dict().items() if ".adapter." not in k}
    # rebuild from the base weights + adapters and get the same outputs
    other = build_sam(tiny_sam_config())
    other.load_state_dict(base)
    add_adapters(other, *infer_adapters(sd)[:1], blocks=infer_adapters(sd)[1])
    _missing, unexpected = other.load_state_dict(sd, strict=False)
    assert not unexpected
    emb3, low3 = _outputs(other)
    torch.testing.assert_close(emb3, emb2, rtol=0, atol=0)
    torch.testing.assert_close(low3, low2, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ SAM 2


def _sam2_outputs(model: nn.Module, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Image embedding, high-res features, masks, IoU and object scores of two images / prompts."""
    g = torch.Generator().manual_seed(seed)
    s = model.image_size
    img = torch.rand(2, 3, s, s, generator=g)
    pts = torch.rand(2, 2, 2, generator=g) * s
    ops = family_ops(model)
    with torch.no_grad():
        out = model.encode_image(model.preprocess(img))
        feats = Features(out["image_embed"], out["high_res_feats"])
        low, iou, obj = ops.decode(
            feats, torch.arange(2), (pts, torch.ones(2, 2)), None, None, True
        )
    return out["image_embed"], *out["high_res_feats"], low, iou, obj


def _assert_same(a: tuple, b: tuple, tol: float = 0.0) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def test_lora_on_hiera_and_decoder_zero_init_leaves_outputs_unchanged(tiny_sam2) -> None:
    before = _sam2_outputs(tiny_sam2)
    names = apply_lora(tiny_sam2, rank=4, alpha=8, targets=["qkv", "proj", "decoder"])
    blocks = len(tiny_sam2.image_encoder.trunk.blocks)
    enc = [n for n in names if n.startswith("image_encoder.trunk.blocks.")]
    dec = [n for n in names if n.startswith("sam_mask_decoder.transformer.")]
    assert len(enc) == 2 * blocks and len(enc) + len(dec) == len(names)
    # 2 two-way layers x 3 attentions + the final token->image attention, 4 projections each
    assert len(dec) == 4 * 7
    _assert_same(_sam2_outputs(tiny_sam2), before)
    keys = set(tiny_sam2.state_dict())
    assert "image_encoder.trunk.blocks.0.attn.qkv.weight" in keys
    assert "image_encoder.trunk.blocks.0.attn.qkv.lora_A" in keys
    assert "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_B" in keys


def test_lora_merge_is_exact_and_the_merged_checkpoint_loads_with_build_sam2(tmp_path) -> None:
    """On the official-format fixture model: merged == unmerged, and the merged file has exactly
    the fixture checkpoint's image-path keys and loads with `build_sam2` unchanged."""
    cfg = SAM2_FIXTURE / "config.json"
    official = set(build_sam2(cfg, checkpoint=SAM2_FIXTURE / "sam2_tiny.pt").state_dict())
    small = _at_256(cfg)  # a smaller input keeps the test fast; no weight depends on it
    model = build_sam2(small, checkpoint=SAM2_FIXTURE / "sam2_tiny.pt")
    base = _sam2_outputs(model)
    apply_lora(model, rank=2, alpha=4, targets=["qkv", "proj", "decoder"], blocks=[1, 5])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.05)
    lora = _sam2_outputs(model)
    assert (lora[0] - base[0]).abs().max() > 1e-4 and (lora[3] - base[3]).abs().max() > 1e-4
    assert merge_lora(model) == 4 + 28
    merged = _sam2_outputs(model)
    _assert_same(merged, lora, tol=1e-4)
    path = save_checkpoint(model, tmp_path / "merged.safetensors")
    assert set(read_state_dict(path)) == official
    build_sam2(cfg, checkpoint=path)  # the official-size model loads it (strict)
    loaded = build_sam2(small, checkpoint=path)
    _assert_same(_sam2_outputs(loaded), merged)


def _at_256(config_json: Path):
    cfg, _ = resolve_sam2_config(config_json)
    pe = dataclasses.replace(
        cfg.prompt_encoder, image_embedding_size=(16, 16), input_image_size=(256, 256)
    )
    return dataclasses.replace(cfg, image_size=256, prompt_encoder=pe)


def test_hiera_adapters_zero_init_and_roundtrip(tiny_sam2) -> None:
    before = _sam2_outputs(tiny_sam2)
    names = add_adapters(tiny_sam2, hidden=8, blocks=[0, 2, 5])
    assert names[0] == "image_encoder.trunk.blocks.0.mlp.adapter"
    _assert_same(_sam2_outputs(tiny_sam2), before)
    with torch.no_grad():
        for k, v in tiny_sam2.named_parameters():
            if ".adapter.up." in k:
                v.normal_(0, 0.1)
    changed = _sam2_outputs(tiny_sam2)
    assert (changed[0] - before[0]).abs().max() > 1e-4
    sd = adapter_state_dict(tiny_sam2)
    assert infer_adapters(sd) == (8, [0, 2, 5])
    base = {k: v for k, v in tiny_sam2.state_dict().items() if ".adapter." not in k}
    other = build_sam2(tiny_sam2_config())
    other.load_state_dict(base)
    hidden, blocks = infer_adapters(sd)
    add_adapters(other, hidden, blocks=blocks)
    _missing, unexpected = other.load_state_dict(sd, strict=False)
    assert not unexpected
    _assert_same(_sam2_outputs(other), changed)
    with pytest.raises(ValueError, match="already has an adapter"):
        add_adapters(other, 4, blocks=[2])


def test_configure_trainable_sam2_names(tiny_sam2) -> None:
    apply_lora(tiny_sam2, 2)
    configure_trainable(tiny_sam2, "none", peft=True)
    train = {n for n, p in tiny_sam2.named_parameters() if p.requires_grad}
    enc = {n for n in train if n.startswith("image_encoder")}
    assert enc and all(".lora_" in n for n in enc) and "no_mem_embed" not in train
    assert "sam_mask_decoder.conv_s0.weight" in train
    assert any(n.startswith("sam_prompt_encoder") for n in train)
    configure_trainable(tiny_sam2, "encoder+prompt", peft=True)
    train = {n for n, p in tiny_sam2.named_parameters() if p.requires_grad}
    assert not any(n.startswith("sam_prompt_encoder") for n in train)
    apply_lora(tiny_sam2, 2, targets=["decoder"])
    configure_trainable(tiny_sam2, "none", peft=True)
    dec = [n for n, p in tiny_sam2.sam_mask_decoder.named_parameters() if p.requires_grad]
    assert dec and all(".lora_" in n for n in dec)  # decoder LoRA freezes its base weights
