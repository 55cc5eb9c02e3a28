"""Sub-state-dicts of the sam3_tiny fixture checkpoint for the F1 module tests (read once)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from tests.conftest import FIXTURES

FX = FIXTURES / "sam3_tiny"


@lru_cache(maxsize=1)
def checkpoint() -> dict[str, Tensor]:
    return torch.load(FX / "sam3_tiny.pt", map_location="cpu", weights_only=True)["model"]


def sub_state(prefix: str) -> dict[str, Tensor]:
    """Entries under `prefix` (e.g. 'detector.backbone.language_backbone.'), prefix removed."""
    return {k[len(prefix) :]: v for k, v in checkpoint().items() if k.startswith(prefix)}


@lru_cache(maxsize=1)
def tiny_backbone():  # -> SAM3VLBackbone with the fixture's vision and text weights
    from samkit.layers.sine_position import PositionEmbeddingSine
    from samkit.modeling.sam3.backbone import SAM3VLBackbone
    from samkit.modeling.sam3.neck import Sam3DualViTDetNeck
    from samkit.modeling.sam3.text_encoder import VETextEncoder
    from samkit.modeling.sam3.vit import Sam3ViT

    trunk = Sam3ViT(embed_dim=64, depth=4, num_heads=2, global_att_blocks=(1, 3))
    neck = Sam3DualViTDetNeck(trunk, PositionEmbeddingSine(256), d_model=256, add_sam2_neck=True)
    text = VETextEncoder(d_model=256, width=64, heads=2, layers=2)
    backbone = SAM3VLBackbone(neck, text, scalp=1).eval()
    backbone.load_state_dict(sub_state("detector.backbone."), strict=True)
    return backbone


@lru_cache(maxsize=3)
def image_backbone_out(name: str) -> dict:
    """`forward_image` of ../shared/images/<name>.jpg through the tiny backbone (computed once per
    test process; treat as read-only)."""
    from PIL import Image

    from samkit.predict.transforms import sam3_image_to_tensor
    from tests.conftest import IMAGES

    image = Image.open(IMAGES / f"{name}.jpg").convert("RGB")
    with torch.inference_mode():
        return tiny_backbone().forward_image(sam3_image_to_tensor(image)[None])
