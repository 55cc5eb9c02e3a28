"""SAM 3 image transform, ViT trunk and dual neck: parity with the official image features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import samkit.predict.transforms as transforms
from samkit.modeling.sam3.vit import Sam3ViT
from samkit.predict.transforms import sam3_image_to_tensor
from tests.conftest import IMAGES
from tests.modeling.sam3.f1_weights import FX, image_backbone_out, sub_state

NAMES = ("truck", "groceries", "dog")


def _stats(t: torch.Tensor) -> np.ndarray:
    t = t.detach().double()
    return np.array([t.mean(), t.std(), t.min(), t.max(), t.abs().mean()])


def _rgb(name: str) -> Image.Image:
    return Image.open(IMAGES / f"{name}.jpg").convert("RGB")


@pytest.fixture(scope="module")
def features() -> dict[str, dict]:
    heads = sub_state("tracker.sam_mask_decoder.")
    out = {}
    with torch.inference_mode():
        for name in NAMES:
            bo = image_backbone_out(name)
            s2 = bo["sam2_backbone_out"]["backbone_fpn"]
            # what the official processor's set_image applies before the stats were taken
            s2_proj = [
                torch.nn.functional.conv2d(s2[0], heads["conv_s0.weight"], heads["conv_s0.bias"]),
                torch.nn.functional.conv2d(s2[1], heads["conv_s1.weight"], heads["conv_s1.bias"]),
                s2[2],
            ]
            out[name] = {"bo": bo, "sam2_fpn": s2_proj}
    return out


@pytest.mark.slow  # the first use runs the tiny backbone on three images (tens of seconds)
@pytest.mark.parametrize("name", NAMES)
def test_pyramid_stats_match_official(features: dict, name: str) -> None:
    ref = np.load(FX / f"image_{name}.npz")
    bo = features[name]["bo"]
    fpn = bo["backbone_fpn"]
    assert [tuple(f.shape) for f in fpn] == [tuple(s) for s in ref["backbone_fpn_shapes"]]
    got = np.stack([_stats(f) for f in fpn])
    np.testing.assert_allclose(got, ref["backbone_fpn_stats"], rtol=0, atol=5e-5)
    s2 = features[name]["sam2_fpn"]
    assert [tuple(f.shape) for f in s2] == [tuple(s) for s in ref["sam2_backbone_fpn_shapes"]]
    got2 = np.stack([_stats(f) for f in s2])
    np.testing.assert_allclose(got2, ref["sam2_backbone_fpn_stats"], rtol=0, atol=5e-5)
    pos = np.stack([_stats(p) for p in bo["vision_pos_enc"]])
    # the same float32 values; float64 sums of an expanded tensor differ in the 12th digit
    np.testing.assert_allclose(pos, ref["vision_pos_enc_stats"], rtol=0, atol=1e-10)
    assert bo["vision_features"] is fpn[-1]
    if "vision_features_stats" in ref:
        np.testing.assert_allclose(
            _stats(bo["vision_features"]), ref["vision_features_stats"], rtol=0, atol=5e-5
        )


@pytest.mark.slow
def test_truck_features_match_official(features: dict) -> None:
    ref = np.load(FX / "image_truck.npz")
    bo = features["truck"]["bo"]
    for mine, key in (
        (bo["vision_features"], "vision_features_f16"),
        (bo["sam2_backbone_out"]["vision_features"], "sam2_vision_features_f16"),
    ):
        stored = ref[key].astype(np.float32)
        assert mine.shape == stored.shape
        assert np.allclose(mine.numpy(), stored, rtol=2e-3, atol=1e-4), key


def test_transform_resizes_like_torchvision_uint8() -> None:
    img = np.asarray(_rgb("dog"))
    x = sam3_image_to_tensor(img)
    assert x.shape == (3, 1008, 1008) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    # uint8 in, so every value is (k / 255 - 0.5) / 0.5 for an integer k
    k = (x.double() * 0.5 + 0.5) * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    same = sam3_image_to_tensor(torch.from_numpy(img.copy()).permute(2, 0, 1))
    assert torch.equal(x, same)
    assert torch.equal(sam3_image_to_tensor(_rgb("dog")), x)
    # float tensors go through the official ToDtype(uint8, scale=True) first
    as_float = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(sam3_image_to_tensor(as_float), x)


def test_transform_float_path_is_within_one_level(monkeypatch: pytest.MonkeyPatch) -> None:
    img = np.asarray(_rgb("groceries"))[:300, :400]
    native = sam3_image_to_tensor(img, resolution=252)
    monkeypatch.setattr(transforms, "_native_uint8_bilinear", lambda: False)
    fallback = sam3_image_to_tensor(img, resolution=252)
    # torch's uint8 kernel (fixed point) and float-then-round differ by one level on about a
    # sixth of the pixels: why the transform picks the path torchvision takes on this CPU
    assert (native - fallback).abs().max() <= 2 / 255 + 1e-6  # one uint8 step
    assert 0 < (native != fallback).float().mean() < 0.5


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float64) + 2.0,
        torch.full((3, 8, 8), 2.0),
        torch.full((3, 8, 8), float("nan")),
        torch.zeros(3, 8, 8, dtype=torch.int32),
        torch.zeros(8, 8, 3, dtype=torch.uint8),
        "image.jpg",
        np.zeros((0, 5, 3), np.uint8),
    ],
)
def test_transform_refuses_bad_images(bad: object) -> None:
    with pytest.raises(ValueError):
        sam3_image_to_tensor(bad)  # type: ignore[arg-type]


def test_trunk_refuses_wrong_input_size() -> None:
    trunk = Sam3ViT(embed_dim=64, depth=2, num_heads=2, global_att_blocks=(1,))
    with pytest.raises(ValueError, match="1008"):
        trunk(torch.zeros(1, 3, 1024, 1024))


def test_checkpoint_rope_tables_are_checked() -> None:
    sd = sub_state("detector.backbone.vision_backbone.trunk.")
    assert sd["blocks.0.attn.freqs_cis"].shape == (576, 16)  # window block: 24x24
    assert sd["blocks.1.attn.freqs_cis"].shape == (5184, 16)  # global block: 72x72
    trunk = Sam3ViT(embed_dim=64, depth=4, num_heads=2, global_att_blocks=(1, 3))
    trunk.load_state_dict(sd, strict=True)  # freqs_cis accepted (and matched), not stored
    assert not any("freqs_cis" in k for k in trunk.state_dict())
    other = Sam3ViT(embed_dim=64, depth=4, num_heads=2, global_att_blocks=(0, 3))
    with pytest.raises(ValueError, match="freqs_cis"):
        other.load_state_dict(sd, strict=True)
    bad = dict(sd)
    bad["blocks.1.attn.freqs_cis"] = bad["blocks.1.attn.freqs_cis"] * 1j
    with pytest.raises(ValueError, match="differs"):
        trunk.load_state_dict(bad, strict=True)


def test_full_size_architecture_matches_official() -> None:
    """Official sizes (`_create_vit_backbone` + the dual neck): 461,841,920 parameters, counted
    on the official modules in the oracle venv; built on the meta device (no memory)."""
    from samkit.layers.sine_position import PositionEmbeddingSine
    from samkit.modeling.sam3.neck import Sam3DualViTDetNeck

    with torch.device("meta"):
        neck = Sam3DualViTDetNeck(Sam3ViT(), PositionEmbeddingSine(256), 256, add_sam2_neck=True)
    sd = neck.state_dict()
    assert sum(p.numel() for p in neck.parameters()) == 461_841_920
    assert sd["trunk.pos_embed"].shape == (1, 577, 1024)
    assert sd["trunk.blocks.31.mlp.fc1.weight"].shape == (4736, 1024)
    assert sd["convs.0.dconv_2x2_1.weight"].shape == (512, 256, 2, 2)
    assert [i for i, b in enumerate(neck.trunk.blocks) if b.window_size == 0] == [7, 15, 23, 31]
    assert neck.trunk.blocks[7].attn.rope_scale == 24 / 72
