"""Small random-weight light models for the slot tests (seconds to build, run and train):
MobileSAM with a 4-stage TinyViT, HQ-SAM with a 2-block ViT or that TinyViT, EfficientTAM with a
2-block ViT; SAM 1's tiny prompt encoder / decoder (`tests.families.tiny_sam_config`)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from samkit.build.efficienttam import build_efficienttam
from samkit.build.light import build_mobile_sam, build_sam_hq
from samkit.configs.efficienttam import ViTDetConfig, efficienttam_config
from samkit.configs.light import MobileSamConfig, SamHQConfig, TinyViTConfig
from tests.families import tiny_sam_config

DIM = 32  # prompt / decoder width of the SAM 1-style models


def _tiny_vit(img_size: int) -> TinyViTConfig:
    return TinyViTConfig(
        img_size=img_size,
        embed_dims=(16, 32, 48, 320),
        depths=(1, 2, 1, 1),
        num_heads=(1, 2, 2, 4),
        window_sizes=(4, 4, 4, 4),
        num_classes=10,
        out_chans=DIM,
    )


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights everywhere (fresh inits zero some tensors), fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def tiny_mobile_sam_config(img_size: int = 128) -> MobileSamConfig:
    """(TinyViT's size is not in its tensors: a checkpoint of it loads with this config.)"""
    base = tiny_sam_config(img_size, DIM)
    return MobileSamConfig(
        image_encoder=_tiny_vit(img_size),
        prompt_encoder=base.prompt_encoder,
        mask_decoder=base.mask_decoder,
    )


def tiny_mobile_sam(seed: int = 0, img_size: int = 128) -> nn.Module:
    torch.manual_seed(seed)
    return _perturb(build_mobile_sam(tiny_mobile_sam_config(img_size)), seed)


def tiny_sam_hq(seed: int = 0, img_size: int = 64, tiny_vit: bool = False) -> nn.Module:
    base = tiny_sam_config(img_size, DIM)
    enc = _tiny_vit(img_size) if tiny_vit else base.image_encoder
    vit_dim = enc.embed_dims[2] if tiny_vit else enc.embed_dim
    cfg = SamHQConfig(
        image_encoder=enc,
        prompt_encoder=base.prompt_encoder,
        mask_decoder=base.mask_decoder,
        vit_dim=vit_dim,
    )
    torch.manual_seed(seed)
    return _perturb(build_sam_hq(cfg), seed)


def tiny_efficienttam(seed: int = 0, img_size: int = 128) -> nn.Module:
    cfg = efficienttam_config(32, 2, image_size=img_size)
    trunk = ViTDetConfig(
        embed_dim=32, depth=2, num_heads=2, window_block_indexes=(0,), window_size=4
    )
    cfg = dataclasses.replace(cfg, trunk=trunk)
    torch.manual_seed(seed)
    return _perturb(build_efficienttam(cfg), seed)
