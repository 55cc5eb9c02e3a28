"""SAM 2 image model: building, checkpoint loading and its errors, sine position encoding, neck.

Feature parity with the official model is in tests/predict/test_sam2.py (it encodes each
fixture image once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pytest
import torch

from samkit import Sam2ImagePredictor, build_sam2
from samkit.build.sam2 import VIDEO_KEY_PREFIXES
from samkit.configs.sam2 import (
    FpnNeckConfig,
    HieraConfig,
    Sam2Config,
    sam2_config_from_official,
)
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.sam2 import Sam2
from tests.conftest import FIXTURES

D = FIXTURES / "sam2_tiny"
CONFIG = D / "config.json"
CKPT = D / "sam2_tiny.pt"


def small_config(image_size: int = 256) -> Sam2Config:
    """The fixture architecture at a small input size: quick random-weight forward passes."""
    cfg = sam2_config_from_official(json.loads(CONFIG.read_text()))
    e = image_size // 16
    pe = dataclasses.replace(
        cfg.prompt_encoder, image_embedding_size=(e, e), input_image_size=(image_size,) * 2
    )
    return dataclasses.replace(cfg, image_size=image_size, prompt_encoder=pe)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return torch.load(CKPT, map_location="cpu", weights_only=True)["model"]


def test_official_config_json_is_parsed():
    cfg = sam2_config_from_official(json.loads(CONFIG.read_text()))
    assert cfg.trunk == HieraConfig(
        embed_dim=16,
        num_heads=1,
        stages=(1, 2, 3, 1),
        global_att_blocks=(5,),
        window_pos_embed_bkg_spatial_size=(7, 7),
    )
    assert cfg.neck == FpnNeckConfig(backbone_channel_list=(128, 64, 32, 16))
    assert cfg.trunk.channel_list == cfg.neck.backbone_channel_list
    assert (cfg.scalp, cfg.image_size, cfg.version) == (1, 1024, "sam2.1")
    dec = cfg.mask_decoder
    assert dec.transformer.mlp_keys == "layers"
    assert dec.use_high_res_features and dec.pred_obj_scores and dec.pred_obj_scores_mlp
    assert dec.iou_prediction_use_sigmoid and dec.use_multimask_token_for_obj_ptr
    assert dec.dynamic_multimask_via_stability
    assert (dec.dynamic_multimask_stability_delta, dec.dynamic_multimask_stability_thresh) == (
        0.05,
        0.98,
    )
    assert cfg.directly_add_no_mem_embed and cfg.no_obj_embed_spatial


def test_fixture_checkpoint_loads_every_tensor(state_dict, caplog):
    from samkit.modeling.sam2_video import Sam2Video

    with caplog.at_level(logging.INFO, logger="samkit"):
        model = build_sam2(CONFIG, checkpoint=CKPT)
    assert isinstance(model, Sam2Video) and not model.training
    assert not [r for r in caplog.records if "ignored" in r.getMessage()]
    mine = model.state_dict()
    assert set(mine) == set(state_dict)
    for k, v in mine.items():
        torch.testing.assert_close(v, state_dict[k], rtol=0, atol=0)


def test_checkpoint_without_video_keys_and_path_like_inputs(state_dict, tmp_path):
    image_only = {k: v for k, v in state_dict.items() if not k.startswith(VIDEO_KEY_PREFIXES)}
    path = tmp_path / "image_only.pt"
    torch.save({"model": image_only}, path)
    model = build_sam2(str(CONFIG), checkpoint=str(path))
    assert type(model) is Sam2  # an image-only checkpoint builds the image-only model
    torch.testing.assert_close(model.no_mem_embed, state_dict["no_mem_embed"])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("image_encoder.trunk.blocks.0.norm1.weight"), "missing keys"),
        (lambda sd: sd.pop("no_mem_embed"), "missing keys"),
        (lambda sd: sd.pop("sam_mask_decoder.conv_s0.weight"), "missing keys"),
        (
            lambda sd: sd.__setitem__("image_encoder.trunk.pos_embed", torch.zeros(1, 16, 14, 14)),
            "shape mismatches",
        ),
        (lambda sd: sd.__setitem__("no_mem_embed", torch.zeros(256)), "shape mismatches"),
        (lambda sd: sd.__setitem__("memory_attention_typo.x", torch.zeros(1)), "unexpected keys"),
    ],
)
def test_bad_image_path_keys_are_errors(state_dict, tmp_path, edit, match):
    sd = dict(state_dict)
    edit(sd)
    path = tmp_path / "bad.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(ValueError, match=match):
        build_sam2(CONFIG, checkpoint=path)


def test_sam1_checkpoint_is_an_error():
    with pytest.raises(ValueError, match="is a SAM 1 checkpoint, not a SAM 2 one"):
        build_sam2(CONFIG, checkpoint=FIXTURES / "sam1_tiny" / "sam1_tiny.pth")


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("vit_b", "SAM 1 variant"),
        ("sam3_hiera_t", "unknown samkit variant"),
        (42, "expected a SAM 2 variant name"),
        (FIXTURES / "sam1_tiny" / "config.json", "use samkit.build_sam"),
    ],
)
def test_bad_variants(arg, match):
    with pytest.raises(ValueError, match=match):
        build_sam2(arg)


def test_bad_config_json(tmp_path):
    raw = json.loads(CONFIG.read_text())
    bad = json.loads(json.dumps(raw))
    bad["model"]["image_encoder"]["trunk"]["_target_"] = "sam2.modeling.backbones.vitdet.ViT"
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="supports Hiera"):
        build_sam2(tmp_path / "a.json")
    del raw["model"]["image_encoder"]["neck"]["d_model"]
    (tmp_path / "b.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="missing or malformed field 'd_model'"):
        build_sam2(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        build_sam2(tmp_path / "c.json")


def test_mismatched_trunk_and_neck_channels():
    cfg = small_config()
    cfg = dataclasses.replace(
        cfg, neck=dataclasses.replace(cfg.neck, backbone_channel_list=(1, 2, 3, 4))
    )
    with pytest.raises(ValueError, match="do not match"):
        build_sam2(cfg)


def test_random_init_small_model_end_to_end():
    torch.manual_seed(0)
    model = build_sam2(small_config(256))
    assert model.image_size == 256 and model.bb_feat_sizes == [(64, 64), (32, 32), (16, 16)]
    params = dict(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert model.image_encoder.trunk.pos_embed.abs().sum() > 0
    torch.testing.assert_close(model.pixel_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))

    x = model.preprocess(torch.rand(2, 3, 100, 140))
    assert x.shape == (2, 3, 256, 256)
    with torch.no_grad():
        out = model.forward_image(x)
        _, feats, pos, sizes = model._prepare_backbone_features(out)
        enc = model.encode_image(x)
    assert sizes == [(64, 64), (32, 32), (16, 16)]
    assert [tuple(f.shape) for f in feats] == [(4096, 2, 32), (1024, 2, 64), (256, 2, 256)]
    assert [tuple(p.shape) for p in pos] == [(4096, 2, 256), (1024, 2, 256), (256, 2, 256)]
    # the official predictor adds no_mem_embed to the (HW)xBxC sequence; encode_image does it in BCHW
    ref = (feats[-1] + model.no_mem_embed).permute(1, 2, 0).reshape(2, 256, 16, 16)
    torch.testing.assert_close(enc["image_embed"], ref, rtol=0, atol=0)
    torch.testing.assert_close(enc["high_res_feats"][0], out["backbone_fpn"][0], rtol=0, atol=0)

    p = Sam2ImagePredictor(model)
    p.set_image(np.zeros((50, 70, 3), np.uint8))
    masks, iou, low = p.predict(np.array([[10.0, 20.0]]), np.array([1]))
    assert masks.shape == (3, 50, 70) and iou.shape == (3,) and low.shape == (3, 64, 64)


def test_bfloat16_model_predicts_float32_outputs():
    torch.manual_seed(0)
    model = build_sam2(small_config(128), dtype=torch.bfloat16)
    assert next(model.image_encoder.parameters()).dtype == torch.bfloat16
    assert model.dtype == torch.float32 and model.pixel_mean.dtype == torch.float32
    p = Sam2ImagePredictor(model)
    p.set_image(np.full((40, 60, 3), 128, np.uint8))
    assert p.get_image_embedding().dtype == torch.float32  # the encoder's output, cast back
    masks, iou, low = p.predict(box=np.array([5.0, 5.0, 30.0, 30.0]), multimask_output=False)
    assert masks.dtype == iou.dtype == low.dtype == np.float32
    assert masks.shape == (1, 40, 60) and np.isfinite(low).all()


def test_apply_postprocessing_switch():
    on = build_sam2(small_config(128))
    off = build_sam2(small_config(128), apply_postprocessing=False)
    assert on.sam_mask_decoder.dynamic_multimask_via_stability
    assert not off.sam_mask_decoder.dynamic_multimask_via_stability


def test_neck_levels_0_and_1_are_lateral_only():
    torch.manual_seed(0)
    model = build_sam2(small_config(128))
    neck = model.image_encoder.neck
    xs = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((16, 32, 64, 128))]
    with torch.no_grad():
        out, pos = neck(xs)
        torch.testing.assert_close(out[0], neck.convs[3](xs[0]))
        torch.testing.assert_close(out[1], neck.convs[2](xs[1]))
        top = neck.convs[0](xs[3])
        lvl2 = neck.convs[1](xs[2]) + top.repeat_interleave(2, 2).repeat_interleave(2, 3)
        torch.testing.assert_close(out[2], lvl2)
        torch.testing.assert_close(out[3], top)
    assert len(out) == len(pos) == 4
    assert pos[0].shape == (1, 256, 32, 32)


def _sine_reference(h: int, w: int, d: int, temperature: float = 10000.0) -> np.ndarray:
    """DETR's normalised sine encoding, written with float64 numpy."""
    half = d // 2
    y = np.arange(1, h + 1) / (h + 1e-6) * 2 * math.pi
    x = np.arange(1, w + 1) / (w + 1e-6) * 2 * math.pi
    dim_t = temperature ** (2 * (np.arange(half) // 2) / half)

    def enc(p: np.ndarray) -> np.ndarray:
        a = p[:, None] / dim_t
        out = np.empty_like(a)
        out[:, 0::2], out[:, 1::2] = np.sin(a[:, 0::2]), np.cos(a[:, 1::2])
        return out

    ey, ex = enc(y), enc(x)  # (H, half), (W, half)
    pe = np.concatenate(
        [np.broadcast_to(ey[:, None], (h, w, half)), np.broadcast_to(ex[None], (h, w, half))], -1
    )
    return pe.transpose(2, 0, 1)


def test_sine_position_encoding():
    pe = PositionEmbeddingSine(256)
    x = torch.zeros(2, 7, 16, 24)
    out = pe(x)
    assert out.shape == (2, 256, 16, 24)
    np.testing.assert_allclose(out[1].numpy(), _sine_reference(16, 24, 256), rtol=0, atol=2e-5)
    assert pe.encode_grid(16, 24) is pe.encode_grid(16, 24)  # cached
    with torch.inference_mode():
        pe(torch.zeros(1, 1, 5, 6))
    grad_in = torch.zeros(1, 256, 5, 6, requires_grad=True)
    (grad_in + pe(grad_in)).sum().backward()  # a cache entry made in inference mode is usable
    assert pe(torch.zeros(1, 1, 4, 4, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(3)
    with pytest.raises(ValueError, match="normalize"):
        PositionEmbeddingSine(4, normalize=False, scale=1.0)


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (14, 14)])
def test_query_pooling_equals_maxpool2d(hw):
    from samkit.modeling.hiera import _pool_bhwc

    x = torch.randn(3, *hw, 5)
    ref = torch.nn.MaxPool2d(2, 2)(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(_pool_bhwc(x, (2, 2)), ref, rtol=0, atol=0)
