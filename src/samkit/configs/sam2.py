"""SAM 2 / SAM 2.1 image-model variants as frozen dataclasses, registered in the one
registry (`samkit.configs.common`, read through `samkit.configs.sam`).

Hyper-parameters are those of the official `sam2/configs/sam2/sam2_hiera_*.yaml` (July 2024
checkpoints) and `sam2/configs/sam2.1/sam2.1_hiera_*.yaml` (September 2024). The image path of
both versions is the same architecture; they differ in video-only settings (`no_obj_embed_spatial`,
`proj_tpos_enc_in_obj_ptrs`, `use_signed_tpos_enc_to_obj_ptrs`, `add_tpos_enc_to_obj_ptrs`), which
only change which memory-module tensors the checkpoint holds. The mask decoder uses the dynamic
multimask-via-stability setting that the official `build_sam2(..., apply_postprocessing=True)`
(its default) switches on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samkit.configs.common import (
    Family,
    MaskDecoderConfig,
    PromptEncoderConfig,
    TwoWayTransformerConfig,
    Variant,
    register,
)
from samkit.configs.official import model_mapping, video_flags, with_decoder_extra_args
from samkit.configs.sam2_memory import Sam2MemoryConfig, memory_config_from_official


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk (defaults are the official `Hiera` constructor defaults)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Stage output channels, coarsest first (the neck's `backbone_channel_list`)."""
        dims, d = [], self.embed_dim
        for i in range(len(self.stages)):
            if i > 0:
                d = int(d * self.dim_mul)
            dims.append(d)
        return tuple(dims[::-1])


@dataclass(frozen=True)
class FpnNeckConfig:
    """FPN neck with its sine position encoding (`num_pos_feats` = `d_model`)."""

    d_model: int = 256
    backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96)
    fpn_top_down_levels: tuple[int, ...] | None = (2, 3)
    fpn_interp_model: str = "nearest"
    fuse_type: str = "sum"
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    pos_num_feats: int = 256
    pos_temperature: float = 10000.0
    pos_normalize: bool = True
    pos_scale: float | None = None


def sam2_mask_decoder_config(
    transformer_dim: int = 256, dynamic_multimask_via_stability: bool = True
) -> MaskDecoderConfig:
    """The mask decoder of every official SAM 2 / 2.1 model."""
    return MaskDecoderConfig(
        transformer_dim=transformer_dim,
        transformer=TwoWayTransformerConfig(
            depth=2, embedding_dim=transformer_dim, num_heads=8, mlp_dim=2048, mlp_keys="layers"
        ),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        use_high_res_features=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        iou_prediction_use_sigmoid=True,
        dynamic_multimask_via_stability=dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    )


@dataclass(frozen=True)
class Sam2Config:
    """A SAM 2 image model: Hiera + FPN neck, prompt encoder, mask decoder, `no_mem_embed`.

    The video-only fields (the four version flags and `memory`) configure the memory modules
    that `build_sam2` builds next to the image path, so every official tensor loads.
    """

    trunk: HieraConfig = field(default_factory=HieraConfig)
    neck: FpnNeckConfig = field(default_factory=FpnNeckConfig)
    scalp: int = 1
    image_size: int = 1024
    backbone_stride: int = 16
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=sam2_mask_decoder_config)
    directly_add_no_mem_embed: bool = True
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    version: str = "sam2.1"
    # video-only (memory) settings
    no_obj_embed_spatial: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    memory: Sam2MemoryConfig = field(default_factory=Sam2MemoryConfig)
    family: Family = "sam2"

    @property
    def img_size(self) -> int:
        return self.image_size


def sam2_config(
    embed_dim: int,
    num_heads: int,
    stages: tuple[int, ...],
    global_att_blocks: tuple[int, ...],
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7),
    window_spec: tuple[int, ...] = (8, 4, 14, 7),
    version: str = "sam2.1",
) -> Sam2Config:
    """The official 1024 px SAM 2 layout with the given Hiera size."""
    trunk = HieraConfig(
        embed_dim=embed_dim,
        num_heads=num_heads,
        stages=stages,
        global_att_blocks=global_att_blocks,
        window_pos_embed_bkg_spatial_size=window_pos_embed_bkg_spatial_size,
        window_spec=window_spec,
    )
    v21 = version == "sam2.1"
    return Sam2Config(
        trunk=trunk,
        neck=FpnNeckConfig(backbone_channel_list=trunk.channel_list),
        version=version,
        no_obj_embed_spatial=v21,
        proj_tpos_enc_in_obj_ptrs=v21,
        use_signed_tpos_enc_to_obj_ptrs=v21,
        add_tpos_enc_to_obj_ptrs=v21,
    )


_HIERA_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    # short name: (long name, Hiera arguments from the official yaml files)
    "t": (
        "tiny",
        dict(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9)),
    ),
    "s": (
        "small",
        dict(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    ),
    "b+": (
        "base_plus",
        dict(
            embed_dim=112,
            num_heads=2,
            stages=(2, 3, 16, 3),
            global_att_blocks=(12, 16, 20),
            window_pos_embed_bkg_spatial_size=(14, 14),
        ),
    ),
    "l": (
        "large",
        dict(
            embed_dim=144,
            num_heads=2,
            stages=(2, 6, 36, 4),
            global_att_blocks=(23, 33, 43),
            window_spec=(8, 4, 16, 8),
        ),
    ),
}
_URLS = {
    "sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
    "sam2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
}
# sha256 of the official files, each confirmed by two or more independent public download
# manifests (micro-sam's HASHES, the 3D Slicer SAM extension, ...).
_SHA256 = {
    "sam2_hiera_tiny": "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
    "sam2_hiera_small": "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
    "sam2_hiera_base_plus": "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
    "sam2_hiera_large": "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b",
    "sam2.1_hiera_tiny": "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    "sam2.1_hiera_small": "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    "sam2.1_hiera_base_plus": "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    "sam2.1_hiera_large": "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
}

for _version in ("sam2", "sam2.1"):
    for _short, (_long, _args) in _HIERA_SIZES.items():
        register(
            Variant(
                f"{_version}_hiera_{_short}",
                "sam2",
                sam2_config(**_args, version=_version),
                f"{_URLS[_version]}{_version}_hiera_{_long}.pt",
                _SHA256[f"{_version}_hiera_{_long}"],
            ),
            f"{_version}_hiera_{_long}",
        )


# --------------------------------------------------------------------------------------------
# official (hydra-resolved) configs

# the fields a model on SAM 2's layout (EfficientTAM, EdgeTAM) shares with `Sam2Config`
_SHARED_FIELDS = (
    "image_size",
    "backbone_stride",
    "prompt_encoder",
    "mask_decoder",
    "directly_add_no_mem_embed",
    "pixel_mean",
    "pixel_std",
    "no_obj_embed_spatial",
    "proj_tpos_enc_in_obj_ptrs",
    "use_signed_tpos_enc_to_obj_ptrs",
    "add_tpos_enc_to_obj_ptrs",
    "memory",
)


def as_sam2_config(cfg: Any, scalp: int) -> Sam2Config:
    """The `Sam2Config` of a model on SAM 2's layout with another image encoder (EfficientTAM,
    EdgeTAM): `cfg`'s heads, pixel normalisation, video flags and memory, an FPN neck config of
    its `d_model` (the memory modules read its width), `scalp`, the SAM 2.0 pointer version."""
    shared = {name: getattr(cfg, name) for name in _SHARED_FIELDS}
    return Sam2Config(
        neck=FpnNeckConfig(d_model=cfg.d_model), scalp=scalp, version="sam2", **shared
    )


_MODEL_TARGETS = ("SAM2Base", "SAM2ImagePredictor", "SAM2VideoPredictor", "SAM2Train")


def _target(d: dict[str, Any], where: str, expected: tuple[str, ...]) -> None:
    target = str(d.get("_target_", ""))
    if target and target.rsplit(".", 1)[-1] not in expected:
        raise ValueError(f"{where}._target_ is {target!r}; samkit supports {', '.join(expected)}")


def _tuple(x: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in x)


def sam2_config_from_official(cfg: dict[str, Any]) -> Sam2Config:
    """A `Sam2Config` from an official hydra-resolved model config.

    Accepts the `model` mapping of a SAM 2 yaml (with `_target_` keys), or a dict holding it
    under `"model"` (the fixture `config.json` format). Arguments the yaml leaves out take the
    official constructors' defaults. Memory-module settings are ignored except the video-only
    flags recorded in `Sam2Config`.
    """
    cfg = model_mapping(cfg)
    try:
        _target(cfg, "model", _MODEL_TARGETS)
        enc = cfg["image_encoder"]
        _target(enc, "image_encoder", ("ImageEncoder",))
        trunk, neck = enc["trunk"], enc["neck"]
        _target(trunk, "image_encoder.trunk", ("Hiera",))
        _target(neck, "image_encoder.neck", ("FpnNeck",))
        pe = neck.get("position_encoding", {})
        _target(pe, "image_encoder.neck.position_encoding", ("PositionEmbeddingSine",))
        h = HieraConfig()
        hiera = HieraConfig(
            embed_dim=int(trunk.get("embed_dim", h.embed_dim)),
            num_heads=int(trunk.get("num_heads", h.num_heads)),
            stages=_tuple(trunk.get("stages", h.stages)),
            global_att_blocks=_tuple(trunk.get("global_att_blocks", h.global_att_blocks)),
            window_pos_embed_bkg_spatial_size=_tuple(
                trunk.get("window_pos_embed_bkg_spatial_size", h.window_pos_embed_bkg_spatial_size)
            ),
            window_spec=_tuple(trunk.get("window_spec", h.window_spec)),
            q_pool=int(trunk.get("q_pool", h.q_pool)),
            q_stride=_tuple(trunk.get("q_stride", h.q_stride)),
            dim_mul=float(trunk.get("dim_mul", h.dim_mul)),
            head_mul=float(trunk.get("head_mul", h.head_mul)),
        )
        d_model = int(neck["d_model"])
        levels = neck.get("fpn_top_down_levels")
        scale = pe.get("scale")
        fpn = FpnNeckConfig(
            d_model=d_model,
            backbone_channel_list=_tuple(neck["backbone_channel_list"]),
            fpn_top_down_levels=None if levels is None else _tuple(levels),
            fpn_interp_model=str(neck.get("fpn_interp_model", "bilinear")),
            fuse_type=str(neck.get("fuse_type", "sum")),
            kernel_size=int(neck.get("kernel_size", 1)),
            stride=int(neck.get("stride", 1)),
            padding=int(neck.get("padding", 0)),
            pos_num_feats=int(pe.get("num_pos_feats", d_model)),
            pos_temperature=float(pe.get("temperature", 10000)),
            pos_normalize=bool(pe.get("normalize", True)),
            pos_scale=None if scale is None else float(scale),
        )
        image_size = int(cfg.get("image_size", 512))
        stride = int(cfg.get("backbone_stride", 16))
        dec = dataclasses.replace(
            sam2_mask_decoder_config(d_model),
            use_high_res_features=bool(cfg.get("use_high_res_features_in_sam", False)),
            pred_obj_scores=bool(cfg.get("pred_obj_scores", False)),
            pred_obj_scores_mlp=bool(cfg.get("pred_obj_scores_mlp", False)),
            use_multimask_token_for_obj_ptr=bool(cfg.get("use_multimask_token_for_obj_ptr", False)),
            iou_prediction_use_sigmoid=bool(cfg.get("iou_prediction_use_sigmoid", False)),
        )
        flags = video_flags(cfg)
        return Sam2Config(
            trunk=hiera,
            neck=fpn,
            scalp=int(enc.get("scalp", 0)),
            image_size=image_size,
            backbone_stride=stride,
            prompt_encoder=PromptEncoderConfig(
                embed_dim=d_model,
                image_embedding_size=(image_size // stride, image_size // stride),
                input_image_size=(image_size, image_size),
                mask_in_chans=16,
            ),
            mask_decoder=with_decoder_extra_args(dec, cfg),
            version="sam2.1" if flags["no_obj_embed_spatial"] else "sam2",
            **flags,
            memory=memory_config_from_official(cfg),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ValueError) and "_target_" in str(e):
            raise
        raise ValueError(f"not a SAM 2 model config: missing or malformed field {e}") from e
