"""build_sam3_image_model: the official checkpoint layout, architecture from tensor shapes,
other families refused by name, options that cannot apply refused clearly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from samkit.build.sam3 import build_sam3_image_model, sam3_from_config
from samkit.configs.sam3 import SAM3_OFFICIAL, Sam3Config, sam3_config_from_state_dict
from samkit.modeling.sam3.sam3_image import Sam3Image
from tests.conftest import FIXTURES

FX = FIXTURES / "sam3_tiny"
CKPT = FX / "sam3_tiny.pt"


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return torch.load(CKPT, weights_only=True, mmap=True)["model"]


def test_tiny_config_read_from_shapes_matches_the_recorded_overrides(tiny_sd) -> None:
    ov = json.loads((FX / "config.json").read_text())["builder_overrides"]
    cfg = sam3_config_from_state_dict(tiny_sd)
    vit, text = ov["_create_vit_backbone"]["ViT"], ov["_create_text_encoder"]["VETextEncoder"]
    dec = ov["_create_transformer_decoder"]
    assert (cfg.vit_embed_dim, cfg.vit_depth, cfg.vit_num_heads) == (
        vit["embed_dim"],
        vit["depth"],
        vit["num_heads"],
    )
    assert cfg.vit_global_att_blocks == tuple(vit["global_att_blocks"])
    assert (cfg.text_width, cfg.text_heads, cfg.text_layers) == (
        text["width"],
        text["heads"],
        text["layers"],
    )
    assert cfg.decoder_layers == dec["TransformerDecoder"]["num_layers"]
    assert cfg.num_queries == dec["TransformerDecoder"]["num_queries"]
    assert cfg.decoder_ffn == dec["TransformerDecoderLayer"]["dim_feedforward"]
    assert (
        cfg.encoder_layers
        == ov["_create_transformer_encoder"]["TransformerEncoderFusion"]["num_layers"]
    )
    assert (
        cfg.geometry_layers
        == ov["_create_geometry_encoder"]["SequenceGeometryEncoder"]["num_layers"]
    )
    assert cfg.scoring_hidden == ov["_create_dot_product_scoring"]["MLP"]["hidden_dim"]
    # what the fixture keeps from the official model
    assert (cfg.img_size, cfg.patch_size, cfg.pretrain_img_size, cfg.vit_window_size) == (
        1008,
        14,
        336,
        24,
    )
    assert (cfg.d_model, cfg.num_heads, cfg.vit_mlp_ratio, cfg.context_length) == (
        256,
        8,
        4.625,
        32,
    )
    assert cfg.segmentation and cfg.inst_interactivity


def test_official_sizes_read_back_from_an_official_size_state_dict() -> None:
    """The full official architecture (built on the meta device, no memory) round-trips."""
    cfg = dataclasses.replace(SAM3_OFFICIAL, inst_interactivity=False)
    model = sam3_from_config(cfg, device="meta")
    sd = {"detector." + k: v for k, v in model.state_dict().items()}
    for i in range(cfg.vit_depth):  # the official file carries the RoPE tables
        n = 72 * 72 if i in cfg.vit_global_att_blocks else 24 * 24
        sd[f"detector.backbone.vision_backbone.trunk.blocks.{i}.attn.freqs_cis"] = torch.empty(
            n, 32, device="meta"
        )
    assert sam3_config_from_state_dict(sd) == cfg
    n_params = sum(p.numel() for p in model.parameters())
    assert 835e6 < n_params < 845e6  # 861 M with the tracker / SAM 2 neck


def test_loads_official_layout_strictly(tiny_sd) -> None:
    model = build_sam3_image_model(checkpoint_path=CKPT, enable_inst_interactivity=False)
    assert isinstance(model, Sam3Image) and not model.training
    sd = model.state_dict()
    for k, v in tiny_sd.items():
        if k.startswith("detector.") and not k.endswith("freqs_cis") and "sam2_convs" not in k:
            assert torch.equal(sd[k[len("detector.") :]], v), k
    assert not any(k.startswith("tracker.") for k in sd)
    assert model.backbone.vision_backbone.sam2_convs is None


def test_without_segmentation_head() -> None:
    model = build_sam3_image_model(
        checkpoint_path=CKPT, enable_segmentation=False, enable_inst_interactivity=False
    )
    assert model.segmentation_head is None


def test_bf16_dtype() -> None:
    model = build_sam3_image_model(
        checkpoint_path=CKPT, enable_inst_interactivity=False, dtype=torch.bfloat16
    )
    assert model.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.parametrize(
    ("path", "msg"),
    [
        (
            FIXTURES / "sam1_tiny" / "sam1_tiny.pth",
            "SAM 1 checkpoint, not a SAM 3 one: load it with build_sam",
        ),
        (
            FIXTURES / "sam2_tiny" / "sam2_tiny.pt",
            "SAM 2 checkpoint, not a SAM 3 one: load it with build_sam2",
        ),
    ],
)
def test_other_families_refused_by_name(path, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        build_sam3_image_model(checkpoint_path=path)


def test_broken_checkpoints(tmp_path, tiny_sd) -> None:
    sd = dict(tiny_sd)
    del sd["detector.transformer.decoder.presence_token.weight"]
    torch.save({"model": sd}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"presence_token\.weight"):
        build_sam3_image_model(
            checkpoint_path=tmp_path / "missing.pt", enable_inst_interactivity=False
        )
    sd = dict(tiny_sd)
    k = "detector.backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis"
    sd[k] = sd[k] * 2
    torch.save({"model": sd}, tmp_path / "rope.pt")
    with pytest.raises(ValueError, match="freqs_cis"):
        build_sam3_image_model(
            checkpoint_path=tmp_path / "rope.pt", enable_inst_interactivity=False
        )
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SAM 3 checkpoint"):
        build_sam3_image_model(checkpoint_path=tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        build_sam3_image_model(checkpoint_path=tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"compile": True}, "compile=True is not supported"),
        ({"eval_mode": False}, "training SAM 3 is not supported"),
        ({"load_from_HF": True}, "downloads nothing"),
        ({"dtype": torch.int8}, "dtype must be"),
        ({"bpe_path": "/nonexistent/bpe.txt.gz"}, "no such file"),
        ({"device": "gpu0"}, "not a torch device name"),
    ],
)
def test_options_that_cannot_apply(kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        build_sam3_image_model(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_sam3_image_model(device="cuda")


def test_bpe_path_must_be_the_bundled_vocabulary(tmp_path) -> None:
    from samkit.build import sam3 as build_sam3

    bundled = build_sam3._BUNDLED_VOCAB
    build_sam3._check_bpe(bundled)  # the same file is accepted
    other = tmp_path / "bpe.txt.gz"
    other.write_bytes(b"not the vocabulary")
    with pytest.raises(ValueError, match="differs from the CLIP vocabulary"):
        build_sam3_image_model(bpe_path=other)


def test_random_weights_build_from_a_config() -> None:
    cfg = Sam3Config(
        vit_embed_dim=32,
        vit_depth=2,
        vit_num_heads=2,
        vit_global_att_blocks=(1,),
        text_width=32,
        text_heads=2,
        text_layers=1,
        encoder_layers=1,
        decoder_layers=1,
        decoder_ffn=64,
        encoder_ffn=64,
        num_queries=5,
        geometry_layers=1,
        geometry_ffn=64,
        scoring_hidden=64,
        inst_interactivity=False,
    )
    model = build_sam3_image_model(config=cfg)
    assert model.transformer.decoder.num_queries == 5
    assert torch.isfinite(model.transformer.encoder.layers[0].self_attn.in_proj_weight).all()
