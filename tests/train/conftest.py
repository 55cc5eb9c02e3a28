"""Small models and datasets for the training tests."""

from __future__ import annotations

import pytest
import torch

from samkit.configs.sam import (
    MaskDecoderConfig,
    PromptEncoderConfig,
    SamConfig,
    TwoWayTransformerConfig,
    ViTConfig,
)


def tiny_config(img_size: int = 64, dim: int = 32) -> SamConfig:
    """A SAM 1 architecture small enough for unit tests (64 px, 4x4 embedding)."""
    grid = img_size // 16
    return SamConfig(
        image_encoder=ViTConfig(
            img_size=img_size,
            embed_dim=32,
            depth=2,
            num_heads=2,
            window_size=2,
            global_attn_indexes=(1,),
            out_chans=dim,
        ),
        prompt_encoder=PromptEncoderConfig(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size)
        ),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=dim,
            transformer=TwoWayTransformerConfig(embedding_dim=dim, mlp_dim=2 * dim),
            iou_head_hidden_dim=dim,
        ),
    )


@pytest.fixture
def tiny_sam():
    from samkit import build_sam

    torch.manual_seed(0)
    model = build_sam(tiny_config())
    # non-trivial weights everywhere (fresh init zeroes pos_embed / rel_pos)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def tiny_sam2_config(img_size: int = 64, dim: int = 32):
    """A SAM 2 architecture small enough for unit tests: Hiera embed 16 (stages 1-2-2-1, windows
    4-4-2-2, one global block), FPN / decoder width `dim`; 64 px gives a 4x4 embedding, high-res
    features of 16x16 and 8x8, and 16x16 low-res masks."""
    import dataclasses

    from samkit.configs.sam2 import (
        FpnNeckConfig,
        HieraConfig,
        Sam2Config,
        sam2_mask_decoder_config,
    )

    trunk = HieraConfig(
        embed_dim=16,
        num_heads=1,
        stages=(1, 2, 2, 1),
        global_att_blocks=(4,),
        window_pos_embed_bkg_spatial_size=(4, 4),
        window_spec=(4, 4, 2, 2),
    )
    dec = sam2_mask_decoder_config(dim)
    dec = dataclasses.replace(
        dec,
        transformer=dataclasses.replace(dec.transformer, mlp_dim=2 * dim),
        iou_head_hidden_dim=dim,
    )
    grid = img_size // 16
    return Sam2Config(
        trunk=trunk,
        neck=FpnNeckConfig(
            d_model=dim, backbone_channel_list=trunk.channel_list, pos_num_feats=dim
        ),
        image_size=img_size,
        prompt_encoder=PromptEncoderConfig(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size)
        ),
        mask_decoder=dec,
    )


@pytest.fixture
def tiny_sam2():
    from samkit import build_sam2

    torch.manual_seed(0)
    model = build_sam2(tiny_sam2_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model
