"""Building SAM 1: official layouts, config formats, architecture inference."""

from __future__ import annotations

import json
import re

import pytest
import torch

from samkit import build_sam, sam_model_registry
from samkit.build.sam import infer_sam_config, sam_from_config
from samkit.configs.sam import SamConfig, get_variant
from samkit.runtime.precision import decoder_autocast_dtype
from tests.conftest import FIXTURES

# Official totals (segment_anything model cards / SAM paper: encoders 91M / 308M / 636M).
OFFICIAL_PARAMS_M = {"vit_b": 93.7, "vit_l": 312.3, "vit_h": 641.1}
OFFICIAL_ENCODER = {  # embed_dim, depth, heads, global blocks
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def official_layout(embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]) -> dict:
    """The official state-dict keys and shapes of a 1024 px SAM 1, written out from the layout."""
    d, hd, mlp = embed_dim, embed_dim // heads, 4 * embed_dim
    shapes = {
        "image_encoder.pos_embed": (1, 64, 64, d),
        "image_encoder.patch_embed.proj.weight": (d, 3, 16, 16),
        "image_encoder.patch_embed.proj.bias": (d,),
        "image_encoder.neck.0.weight": (256, d, 1, 1),
        "image_encoder.neck.1.weight": (256,),
        "image_encoder.neck.1.bias": (256,),
        "image_encoder.neck.2.weight": (256, 256, 3, 3),
        "image_encoder.neck.3.weight": (256,),
        "image_encoder.neck.3.bias": (256,),
    }
    for i in range(depth):
        b = f"image_encoder.blocks.{i}."
        rel = 127 if i in global_idx else 27
        shapes.update(
            {
                b + "norm1.weight": (d,),
                b + "norm1.bias": (d,),
                b + "attn.rel_pos_h": (rel, hd),
                b + "attn.rel_pos_w": (rel, hd),
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "norm2.weight": (d,),
                b + "norm2.bias": (d,),
                b + "mlp.lin1.weight": (mlp, d),
                b + "mlp.lin1.bias": (mlp,),
                b + "mlp.lin2.weight": (d, mlp),
                b + "mlp.lin2.bias": (d,),
            }
        )
    return shapes


def _decoder_keys_from_fixture() -> dict:
    """Prompt encoder and mask decoder of every official SAM 1 match the fixture's (standard) ones."""
    sd = torch.load(FIXTURES / "sam1_tiny" / "sam1_tiny.pth", map_location="cpu", weights_only=True)
    return {k: tuple(v.shape) for k, v in sd.items() if not k.startswith("image_encoder.")}


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_variant_layout(name):
    cfg = get_variant(name).config
    with torch.device("meta"):
        model = sam_from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == OFFICIAL_PARAMS_M[name]
    expected = official_layout(*OFFICIAL_ENCODER[name]) | _decoder_keys_from_fixture()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected


def test_registry_call_shape(tmp_path):
    assert set(sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b"}
    model = sam_model_registry["vit_b"]()  # random weights, official call shape
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(93.7e6, rel=1e-3)
    assert not model.training


def test_build_from_fixture_config_json():
    d = FIXTURES / "sam1_tiny"
    model = build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth")
    enc = model.image_encoder
    assert len(enc.blocks) == 4 and enc.blocks[0].attn.num_heads == 2
    assert [b.window_size for b in enc.blocks] == [14, 0, 14, 0]
    # str paths work the same as Path objects
    assert isinstance(build_sam(str(d / "config.json")), torch.nn.Module)


@pytest.mark.parametrize("folder", ["sam1_tiny", "sam1_shapes"])
def test_infer_architecture_from_checkpoint(folder):
    d = FIXTURES / folder
    raw = json.loads((d / "config.json").read_text())
    from samkit.configs.sam import sam_config_from_official

    expected = sam_config_from_official(raw)
    inferred = build_sam(checkpoint=d / raw["checkpoint"])
    sd = torch.load(d / raw["checkpoint"], map_location="cpu", weights_only=True)
    assert infer_sam_config(sd) == expected
    for k, v in inferred.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_infer_official_variants(name):
    cfg = get_variant(name).config
    with torch.device("meta"):
        sd = sam_from_config(cfg).state_dict()
    assert infer_sam_config(sd) == cfg


def test_build_dtype_and_device():
    d = FIXTURES / "sam1_tiny"
    model = build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth", dtype=torch.bfloat16)
    # bf16 encoder; the decoder keeps float32 weights and runs its matmuls under bf16 autocast
    assert {p.dtype for p in model.image_encoder.parameters()} == {torch.bfloat16}
    assert model.dtype == torch.float32
    assert decoder_autocast_dtype(model.mask_decoder) == torch.bfloat16
    assert model.pixel_mean.dtype == torch.float32
    assert model.device.type == "cpu"


def test_build_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown samkit variant 'vit_x'.*vit_b"):
        build_sam("vit_x")
    with pytest.raises(ValueError, match="needs a variant"):
        build_sam()
    with pytest.raises(ValueError, match="expected a SAM 1 variant name"):
        build_sam(123)  # type: ignore[arg-type]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON config"):
        build_sam(bad)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"image_encoder": {}}))
    with pytest.raises(ValueError, match="not a SAM 1 constructor config"):
        build_sam(incomplete)


def test_mismatched_checkpoint_names_file():
    d = FIXTURES / "sam1_tiny"
    with pytest.raises(ValueError, match=re.escape(str(d / "sam1_tiny.pth"))):
        build_sam("vit_b", checkpoint=d / "sam1_tiny.pth")


def test_config_is_frozen():
    cfg = SamConfig()
    with pytest.raises(AttributeError):
        cfg.mask_threshold = 1.0  # type: ignore[misc]


def test_checkpoint_formats_give_identical_models(tmp_path):
    """Official .pth, a {"model": ...} wrapper and samkit's safetensors all load the same weights."""
    from samkit.checkpoint import save_checkpoint

    d = FIXTURES / "sam1_tiny"
    ref = build_sam(checkpoint=d / "sam1_tiny.pth")
    sd = torch.load(d / "sam1_tiny.pth", map_location="cpu", weights_only=True)
    torch.save({"model": sd}, tmp_path / "wrapped.pt")
    save_checkpoint(ref, tmp_path / "model.safetensors")
    for path in (tmp_path / "wrapped.pt", tmp_path / "model.safetensors"):
        model = build_sam(checkpoint=path)
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    data = (FIXTURES / "sam1_tiny" / "sam1_tiny.pth").read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pth"):
        build_sam(checkpoint=bad)
