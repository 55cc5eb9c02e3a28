"""Every official SAM 2 / 2.1 variant builds (meta device) with the full official key layout:
the image path plus the memory modules, so an official checkpoint loads with no unused tensor.

The expected memory-module keys are the fixture checkpoint's (1 memory-attention layer with
feed-forward 64 and attention downsample 8, 1 fuser block) widened to the official yaml values
(4 layers, feed-forward 2048, downsample 1, 2 fuser blocks); SAM 2 (July 2024) files have no
`no_obj_embed_spatial` and no `obj_ptr_tpos_proj` (official sam2_hiera_*.yaml).
"""

from __future__ import annotations

import re

import pytest
import torch

from samkit.build.sam2 import VIDEO_KEY_PREFIXES, sam2_from_config
from samkit.configs.sam import get_variant
from tests.build.test_sam2_variants import (
    HIERA,
    VARIANTS,
    _fixture_state_dict,
    _heads_path_keys,
    expected_image_state_dict,
    video_param_count,
)

WIDEN = {  # fixture shape -> official shape, by key pattern
    r"memory_attention\.layers\.0\.(self_attn|cross_attn_image)\.q_proj\.weight": (256, 256),
    r"memory_attention\.layers\.0\.self_attn\.[kv]_proj\.weight": (256, 256),
    r"memory_attention\.layers\.0\.cross_attn_image\.[kv]_proj\.weight": (256, 64),
    r"memory_attention\.layers\.0\.\w+\.[qkv]_proj\.bias": (256,),
    r"memory_attention\.layers\.0\.\w+\.out_proj\.weight": (256, 256),
    r"memory_attention\.layers\.0\.linear1\.weight": (2048, 256),
    r"memory_attention\.layers\.0\.linear1\.bias": (2048,),
    r"memory_attention\.layers\.0\.linear2\.weight": (256, 2048),
}


def expected_video_keys(sam21: bool) -> dict[str, tuple[int, ...]]:
    out = {}
    for k, v in _fixture_state_dict().items():
        if not k.startswith(VIDEO_KEY_PREFIXES):
            continue
        if not sam21 and k.startswith(("no_obj_embed_spatial", "obj_ptr_tpos_proj.")):
            continue
        shape = tuple(v.shape)
        for pattern, wide in WIDEN.items():
            if re.fullmatch(pattern, k):
                shape = wide
        if k.startswith("memory_attention.layers.0."):
            for i in range(4):
                out[k.replace("layers.0.", f"layers.{i}.")] = shape
        elif k.startswith("memory_encoder.fuser.layers.0."):
            for i in range(2):
                out[k.replace("layers.0.", f"layers.{i}.")] = shape
        else:
            out[k] = shape
    return out


@pytest.mark.parametrize(("version", "size"), VARIANTS)
def test_official_variant_builds_the_full_layout(version, size):
    cfg = get_variant(f"{version}_hiera_{size}").config
    with torch.device("meta"):
        model = sam2_from_config(cfg)
    embed, _, stages, _, bkg, windows = HIERA[size]
    sam21 = version == "sam2.1"
    expected = {
        **expected_image_state_dict(embed, stages, bkg, windows),
        **_heads_path_keys(_fixture_state_dict()),
        **expected_video_keys(sam21),
    }
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    video = sum(p.numel() for k, p in model.named_parameters() if k.startswith(VIDEO_KEY_PREFIXES))
    assert video == video_param_count(sam21=sam21)
    # an official-layout state dict loads with nothing left over and nothing missing
    sd = {k: torch.empty(s, device="meta") for k, s in expected.items()}
    with torch.device("meta"):
        target = sam2_from_config(cfg)
    result = target.load_state_dict(sd, strict=True, assign=True)  # raises on any mismatch
    assert not result.missing_keys and not result.unexpected_keys
    assert model.memory_attention.layers[0].cross_attn_image.rope_k_repeat
    assert (model.add_tpos_enc_to_obj_ptrs, model.proj_tpos_enc_in_obj_ptrs) == (sam21, sam21)


def test_fixture_video_keys_widen_to_the_official_count():
    assert len(expected_video_keys(True)) == 73 + 3 * 26 + 9
