"""The tiny EfficientTAM / EdgeTAM configurations recorded by record.py (hydra overrides of the
official configs). Dimensions: hidden (prompt / decoder / memory-attention) dim 64, memory dim 16,
so an object pointer is split into 64 / 16 = 4 memory tokens as in the full models (256 / 64)."""

from __future__ import annotations

# memory attention / memory encoder at hidden 64, memory dim 16 (official: 256 / 64)
_MEMORY = [
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=2",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_encoder.fuser.num_layers=1",
]

_ETAM = "efficient_track_anything.modeling.sam.transformer."

# RepViT trunk arguments passed to timm.create_model (patch P2): stage dims / depths
# (official repvit_m1: (48, 96, 192, 384) / (2, 2, 14, 2))
EDGETAM_TIMM_KWARGS = {"embed_dim": (16, 32, 64, 128), "depth": (1, 1, 2, 1)}

MODELS = {
    "efficienttam": {
        "package": "efficient_track_anything",
        "reference": "EfficientTAM (github yformer/EfficientTAM commit abcd061, package "
        "efficient_track_anything 1.0), EfficientTAMImagePredictor / EfficientTAMVideoPredictor",
        # efficienttam_ti_1.yaml = efficienttam_ti.yaml with EfficientRoPEAttention1 cross-attention
        "config": "configs/efficienttam/efficienttam_ti_1.yaml",
        "seed": 5,
        "video_target": "efficient_track_anything.efficienttam_video_predictor."
        "EfficientTAMVideoPredictor",
        "overrides": [
            "++model.compile_image_encoder=false",
            "++model.image_encoder.trunk.embed_dim=64",
            "++model.image_encoder.trunk.depth=4",
            "++model.image_encoder.trunk.num_heads=2",
            "++model.image_encoder.trunk.window_block_indexes=[0,2]",
            "++model.image_encoder.neck.backbone_channel_list=[64]",
            "++model.image_encoder.neck.d_model=64",
            "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
            *_MEMORY,
        ],
        "main_attn": _ETAM + "EfficientRoPEAttention1",
        # the same checkpoint with the two other official cross-attentions (efficienttam_ti.yaml,
        # efficienttam_ti_2.yaml); the state-dict keys are identical for all three
        "variant_sessions": [
            (_ETAM + "RoPEAttention", ["two_objects_forward"]),
            (_ETAM + "EfficientRoPEAttention2", ["two_objects_forward"]),
        ],
    },
    "edgetam": {
        "package": "sam2",
        "reference": "EdgeTAM (github facebookresearch/EdgeTAM commit 9cc44bf, its `sam2` "
        "package), SAM2ImagePredictor / SAM2VideoPredictor, RepViT from timm 1.0.31",
        "config": "configs/edgetam.yaml",
        "seed": 6,
        "video_target": "sam2.sam2_video_predictor.SAM2VideoPredictor",
        "overrides": [
            "++model.compile_image_encoder=false",
            "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
            "++model.image_encoder.neck.d_model=64",
            "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
            *_MEMORY,
            "++model.spatial_perceiver.dim=16",
            "++model.spatial_perceiver.dim_head=16",
            "++model.spatial_perceiver.position_encoding.num_pos_feats=16",
        ],
        "main_attn": "sam2.modeling.sam.transformer.RoPEAttentionv2",
        "variant_sessions": [],
    },
}


def image_predictor_class(kind: str):
    if kind == "efficienttam":
        from efficient_track_anything.efficienttam_image_predictor import (
            EfficientTAMImagePredictor,
        )

        return EfficientTAMImagePredictor
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    return SAM2ImagePredictor
