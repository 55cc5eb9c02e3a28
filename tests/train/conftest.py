"""Small models and datasets for the training tests."""

from __future__ import annotations

import pytest
import torch

from samkit.configs import (
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
