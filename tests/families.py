"""The model families that family-parametrised tests run over: one row per family.

A test that holds for every family takes `family` from `FAMILY_NAMES` (pytest ids "sam1",
"sam2") and reads everything family-specific from its `Family` row: the tiny fixture model in
`../shared/fixtures`, the predictor and generator classes, the official names that differ, the
tolerances measured on that fixture. Adding a family to such a test is adding a row here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from samkit import (
    Sam2AutomaticMaskGenerator,
    Sam2ImagePredictor,
    SamAutomaticMaskGenerator,
    SamPredictor,
    build_sam,
    build_sam2,
)
from samkit.configs.sam import (
    MaskDecoderConfig,
    PromptEncoderConfig,
    SamConfig,
    TwoWayTransformerConfig,
    ViTConfig,
)
from samkit.configs.sam2 import FpnNeckConfig, HieraConfig, Sam2Config, sam2_mask_decoder_config
from tests.conftest import FIXTURES


@dataclasses.dataclass(frozen=True)
class Family:
    """What a family-parametrised test needs to know about one model family.

    Attributes:
        name: the model's `family` ("sam1" / "sam2"), also the pytest id.
        fixture: folder of the tiny random-weight fixture model under ../shared/fixtures.
        checkpoint: its checkpoint file in that folder.
        build: `build_sam` / `build_sam2` (config path or dataclass, checkpoint=...).
        predictor: the image predictor class.
        generator: the automatic mask generator class.
        official_generator: the official generator's class name (fixture manifests record it).
        reset: the predictor's official name for forgetting the image.
        mask_decoder: the model's mask decoder (the attribute names differ officially).
        tiny_config: a random-init architecture small enough for training tests (64 px).
        amg_point_atol: how far a generator's point may be from the official one (SAM 2's
            official generator keeps its points in float32; SAM 1's in float64: exact).
        decoder_cache_atol: how far a cached-decoder answer may be from a fresh predictor's
            (absolute, logit units; measured on the fixture, see tests/predict/test_predictors).
    """

    name: str
    fixture: str
    checkpoint: str
    build: Callable[..., nn.Module]
    predictor: type
    generator: type
    official_generator: str
    reset: str
    mask_decoder: Callable[[nn.Module], nn.Module]
    tiny_config: Callable[..., Any]
    amg_point_atol: float
    decoder_cache_atol: float

    @property
    def dir(self) -> Path:
        return FIXTURES / self.fixture

    @property
    def cli_model(self) -> list[str]:
        """The command-line options that load the tiny fixture model."""
        return [
            "--model",
            str(self.dir / "config.json"),
            "--checkpoint",
            str(self.dir / self.checkpoint),
        ]

    def fixture_model(self, **kw: Any) -> nn.Module:
        """A fresh copy of the tiny fixture model (keyword arguments go to `build`)."""
        return self.build(self.dir / "config.json", checkpoint=self.dir / self.checkpoint, **kw)

    def tiny_model(self, seed: int = 0) -> nn.Module:
        """The `tiny_config` architecture with seeded random weights."""
        torch.manual_seed(seed)
        return self.build(self.tiny_config())

    def __str__(self) -> str:
        return self.name


def tiny_sam_config(img_size: int = 64, dim: int = 32) -> SamConfig:
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


def tiny_sam2_config(img_size: int = 64, dim: int = 32) -> Sam2Config:
    """A SAM 2 architecture small enough for unit tests: Hiera embed 16 (stages 1-2-2-1, windows
    4-4-2-2, one global block), FPN / decoder width `dim`; 64 px gives a 4x4 embedding, high-res
    features of 16x16 and 8x8, and 16x16 low-res masks."""
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


FAMILIES: dict[str, Family] = {
    "sam1": Family(
        name="sam1",
        fixture="sam1_tiny",
        checkpoint="sam1_tiny.pth",
        build=build_sam,
        predictor=SamPredictor,
        generator=SamAutomaticMaskGenerator,
        official_generator="SamAutomaticMaskGenerator",
        reset="reset_image",
        mask_decoder=lambda model: model.mask_decoder,
        tiny_config=tiny_sam_config,
        amg_point_atol=0.0,
        decoder_cache_atol=1e-6,
    ),
    "sam2": Family(
        name="sam2",
        fixture="sam2_tiny",
        checkpoint="sam2_tiny.pt",
        build=build_sam2,
        predictor=Sam2ImagePredictor,
        generator=Sam2AutomaticMaskGenerator,
        official_generator="SAM2AutomaticMaskGenerator",
        reset="reset_predictor",
        mask_decoder=lambda model: model.sam_mask_decoder,
        tiny_config=tiny_sam2_config,
        amg_point_atol=1e-4,
        decoder_cache_atol=1e-5,
    ),
}
FAMILY_NAMES = list(FAMILIES)


@functools.cache
def shared_fixture_model(name: str) -> nn.Module:
    """One fixture model per family for the whole session, for tests that do not change it."""
    return FAMILIES[name].fixture_model()


def parametrize_families(argname: str = "family") -> pytest.MarkDecorator:
    """`@parametrize_families()`: the test runs once per `Family` row (ids "sam1", "sam2")."""
    return pytest.mark.parametrize(argname, list(FAMILIES.values()), ids=str)
