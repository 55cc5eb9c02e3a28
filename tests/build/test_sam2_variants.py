"""Every official SAM 2 / 2.1 variant: built on the meta device, checked against the official
layout (state-dict keys and shapes, parameter counts, heads and windows).

Expected values are written out here from the official sources, not read from samkit:
* Hiera sizes from facebookresearch/sam2 `sam2/configs/sam2/sam2_hiera_{t,s,b+,l}.yaml` and
  `sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml` (the image path is the same in both).
* Model sizes from the official README tables ("Size (M)"): tiny 38.9, small 46, base_plus 80.8,
  large 224.4 for both SAM 2 and SAM 2.1. They count the whole video model, so the memory
  modules (counted by `video_param_count`, checked exactly against the fixture checkpoint) are
  added to the image-path count. The README truncates to one decimal (38.96 M -> 38.9).
* Key names from the fixture checkpoint `sam2_tiny.pt` (same names as the official
  `sam2.1_hiera_tiny.pt`), generalised by `expected_image_state_dict`, which is itself checked
  against that checkpoint.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from samkit.build.sam2 import VIDEO_KEY_PREFIXES, sam2_from_config
from samkit.configs.sam import get_variant, variant_names
from tests.conftest import FIXTURES

HIERA = {  # embed_dim, num_heads, stages, global_att_blocks, bkg pos-embed size, window_spec
    "t": (96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7), (8, 4, 14, 7)),
    "s": (96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7), (8, 4, 14, 7)),
    "b+": (112, 2, (2, 3, 16, 3), (12, 16, 20), (14, 14), (8, 4, 14, 7)),
    "l": (144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), (8, 4, 16, 8)),
}
README_SIZE_M = {"t": 38.9, "s": 46.0, "b+": 80.8, "l": 224.4}
LONG = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}
VARIANTS = [(v, s) for v in ("sam2", "sam2.1") for s in HIERA]
FIXTURE_HIERA = (16, 1, (1, 2, 3, 1), (5,), (7, 7), (8, 4, 14, 7))


def _fixture_state_dict() -> dict[str, torch.Tensor]:
    path = FIXTURES / "sam2_tiny" / "sam2_tiny.pt"
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _heads_path_keys(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Prompt encoder + mask decoder + no_mem_embed keys (identical for every official size)."""
    return {
        k: tuple(v.shape)
        for k, v in sd.items()
        if k.startswith(("sam_prompt_encoder.", "sam_mask_decoder.")) or k == "no_mem_embed"
    }


def expected_image_state_dict(
    embed_dim: int, stages: tuple[int, ...], bkg: tuple[int, int], window_spec: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """Image-encoder keys and shapes of the official Hiera + FpnNeck layout."""
    t = "image_encoder.trunk."
    keys: dict[str, tuple[int, ...]] = {
        t + "pos_embed": (1, embed_dim, *bkg),
        t + "pos_embed_window": (1, embed_dim, window_spec[0], window_spec[0]),
        t + "patch_embed.proj.weight": (embed_dim, 3, 7, 7),
        t + "patch_embed.proj.bias": (embed_dim,),
    }
    i = 0
    for stage, n in enumerate(stages):
        dim = embed_dim * 2**stage
        for j in range(n):
            d_in = dim // 2 if (stage > 0 and j == 0) else dim
            b = f"{t}blocks.{i}."
            keys.update(
                {
                    b + "norm1.weight": (d_in,),
                    b + "norm1.bias": (d_in,),
                    b + "attn.qkv.weight": (3 * dim, d_in),
                    b + "attn.qkv.bias": (3 * dim,),
                    b + "attn.proj.weight": (dim, dim),
                    b + "attn.proj.bias": (dim,),
                    b + "norm2.weight": (dim,),
                    b + "norm2.bias": (dim,),
                    b + "mlp.layers.0.weight": (4 * dim, dim),
                    b + "mlp.layers.0.bias": (4 * dim,),
                    b + "mlp.layers.1.weight": (dim, 4 * dim),
                    b + "mlp.layers.1.bias": (dim,),
                }
            )
            if d_in != dim:
                keys[b + "proj.weight"] = (dim, d_in)
                keys[b + "proj.bias"] = (dim,)
            i += 1
    channels = [embed_dim * 2**s for s in range(len(stages))][::-1]
    for k, c in enumerate(channels):
        keys[f"image_encoder.neck.convs.{k}.conv.weight"] = (256, c, 1, 1)
        keys[f"image_encoder.neck.convs.{k}.conv.bias"] = (256,)
    return keys


def video_param_count(
    num_layers: int = 4,
    dim_feedforward: int = 2048,
    attn_downsample: int = 1,
    fuser_layers: int = 2,
    sam21: bool = True,
    d: int = 256,
    mem_dim: int = 64,
    num_maskmem: int = 7,
) -> int:
    """Parameters of the official video-only modules (memory attention / encoder, pointers)."""
    a = d // attn_downsample
    self_attn = 3 * (d * a + a) + (a * d + d)
    cross_attn = (d * a + a) + 2 * (mem_dim * a + a) + (a * d + d)
    layer = self_attn + cross_attn + 2 * d * dim_feedforward + dim_feedforward + d + 3 * 2 * d
    memory_attention = num_layers * layer + 2 * d
    chans = [1, 4, 16, 64, 256]  # mask downsampler: conv 3x3 + LayerNorm2d per stride-2 step
    downsampler = sum(i * o * 9 + 3 * o for i, o in itertools.pairwise(chans)) + d * d + d
    cx_block = d + (49 * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    memory_encoder = downsampler + (d * d + d) + fuser_layers * cx_block + (d * mem_dim + mem_dim)
    other = num_maskmem * mem_dim + 2 * d + 3 * (d * d + d) + 17  # tpos, no_mem_pos, no_obj_ptr
    if sam21:  # no_obj_embed_spatial, obj_ptr_tpos_proj
        other += mem_dim + d * mem_dim + mem_dim
    return memory_attention + memory_encoder + other


def test_expected_layout_matches_the_fixture_checkpoint():
    sd = _fixture_state_dict()
    embed, _, stages, _, bkg, windows = FIXTURE_HIERA
    expected = {**expected_image_state_dict(embed, stages, bkg, windows), **_heads_path_keys(sd)}
    image_path = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith(VIDEO_KEY_PREFIXES)}
    assert image_path == expected
    assert len(sd) == 324 and len(image_path) == 251


def test_video_param_count_matches_the_fixture_checkpoint():
    sd = _fixture_state_dict()
    video = sum(v.numel() for k, v in sd.items() if k.startswith(VIDEO_KEY_PREFIXES))
    # fixture memory modules: 1 layer, feed-forward 64, attention downsample 8, 1 fuser layer
    assert video == video_param_count(1, 64, 8, 1, sam21=True) == 1_149_425


@pytest.mark.parametrize(("version", "size"), VARIANTS)
def test_official_variant_layout(version, size):
    name = f"{version}_hiera_{size}"
    variant = get_variant(name)
    assert variant.family == "sam2" and variant.name == name
    assert get_variant(f"{version}_hiera_{LONG[size]}") is variant
    date = "072824" if version == "sam2" else "092824"
    assert variant.url == (
        f"https://dl.fbaipublicfiles.com/segment_anything_2/{date}/{version}_hiera_{LONG[size]}.pt"
    )
    assert variant.sha256 is None or len(variant.sha256) == 64

    with torch.device("meta"):
        model = sam2_from_config(variant.config, video=False)
    assert all(p.is_meta for p in model.parameters())

    embed, heads, stages, global_blocks, bkg, windows = HIERA[size]
    expected = {
        **expected_image_state_dict(embed, stages, bkg, windows),
        **_heads_path_keys(_fixture_state_dict()),
    }
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected

    n_params = sum(p.numel() for p in model.parameters())
    # every state-dict entry is a parameter except the 2x128 random-Fourier matrix (a buffer)
    assert n_params + 2 * 128 == sum(math.prod(s) for s in expected.values())
    total_m = (n_params + video_param_count(sam21=version == "sam2.1")) / 1e6
    assert README_SIZE_M[size] <= total_m < README_SIZE_M[size] + 0.1, total_m

    # heads double and windows follow window_spec, lagging one block at each stage change
    trunk = model.image_encoder.trunk
    stage_of = [s for s, n in enumerate(stages) for _ in range(n)]
    first = {sum(stages[:s]) for s in range(1, len(stages))}
    for i, blk in enumerate(trunk.blocks):
        assert blk.attn.num_heads == heads * 2 ** stage_of[i]
        lag = stage_of[i] - 1 if i in first else stage_of[i]
        assert blk.window_size == (0 if i in global_blocks else windows[lag])
        assert (blk.q_stride is not None) == (i in first)
    assert trunk.channel_list == [embed * 8, embed * 4, embed * 2, embed]
    dec = model.sam_mask_decoder
    assert dec.use_high_res_features and dec.pred_obj_scores and dec.dynamic_multimask_via_stability
    assert model.image_encoder.scalp == 1
    assert model.image_encoder.neck.fpn_top_down_levels == [2, 3]
    assert model.image_encoder.neck.fpn_interp_model == "nearest"


def test_tiny_windows_spelled_out():
    with torch.device("meta"):
        model = sam2_from_config(get_variant("sam2.1_hiera_t").config)
    windows = [b.window_size for b in model.image_encoder.trunk.blocks]
    assert windows == [8, 8, 4, 4, 14, 0, 14, 0, 14, 0, 14, 7]


def test_registry_lists_every_sam2_variant():
    names = set(variant_names("sam2"))
    assert names == {f"{v}_hiera_{s}" for v, s in VARIANTS}
    assert "vit_b" in variant_names("sam1")


@pytest.mark.parametrize(("version", "size"), VARIANTS)
def test_checkpoint_layout_identifies_the_variant(version, size):
    from samkit.build.sam2 import infer_sam2_variant

    with torch.device("meta"):
        sd = dict(
            sam2_from_config(get_variant(f"sam2.1_hiera_{size}").config, video=False).state_dict()
        )
    sd["memory_attention.norm.weight"] = torch.empty(256, device="meta")
    if version == "sam2.1":
        sd["no_obj_embed_spatial"] = torch.empty(1, 64, device="meta")
    assert infer_sam2_variant(sd) == f"{version}_hiera_{size}"


def test_unknown_checkpoint_layout_is_an_error():
    from samkit import build_sam2
    from samkit.build.sam2 import infer_sam2_variant

    with pytest.raises(ValueError, match="matches no official SAM 2"):
        infer_sam2_variant(_fixture_state_dict())  # the fixture's trunk is not an official size
    with pytest.raises(ValueError, match="matches no official SAM 2"):
        build_sam2(checkpoint=FIXTURES / "sam2_tiny" / "sam2_tiny.pt")
    with pytest.raises(ValueError, match="needs a variant name"):
        build_sam2()
