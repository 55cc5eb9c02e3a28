"""LoRA and adapters: zero init is the identity, merging is exact, merged checkpoints load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samkit import build_sam
from samkit.checkpoint import read_state_dict, save_checkpoint
from samkit.train.lora import (
    LoRALinear,
    adapter_state_dict,
    add_adapters,
    apply_lora,
    configure_trainable,
    infer_adapters,
    merge_lora,
)
from tests.families import tiny_sam_config


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
