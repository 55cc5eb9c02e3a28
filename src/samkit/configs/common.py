"""Config types shared by the SAM 1 (`samkit.configs.sam`) and SAM 2 (`samkit.configs.sam2`) families,
and the one variant registry both fill.

This module sits below both family modules: it imports neither, so each family can use the shared
prompt-encoder / mask-decoder types and `register` without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["sam1", "sam2"]


@dataclass(frozen=True)
class PromptEncoderConfig:
    embed_dim: int = 256
    image_embedding_size: tuple[int, int] = (64, 64)
    input_image_size: tuple[int, int] = (1024, 1024)
    mask_in_chans: int = 16


@dataclass(frozen=True)
class TwoWayTransformerConfig:
    depth: int = 2
    embedding_dim: int = 256
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    mlp_keys: str = "lin"  # state-dict names of the MLP: "lin" (SAM 1) or "layers" (SAM 2)


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Mask decoder; the SAM 2 flags default to SAM 1 behaviour."""

    transformer_dim: int = 256
    transformer: TwoWayTransformerConfig = field(default_factory=TwoWayTransformerConfig)
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_high_res_features: bool = False
    pred_obj_scores: bool = False
    pred_obj_scores_mlp: bool = False
    use_multimask_token_for_obj_ptr: bool = False
    iou_prediction_use_sigmoid: bool = False
    dynamic_multimask_via_stability: bool = False
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98


@dataclass(frozen=True)
class Variant:
    """A registry entry: a named architecture and, if official, where its weights live."""

    name: str
    family: Family
    config: Any
    url: str | None = None
    sha256: str | None = None

    @property
    def filename(self) -> str | None:
        return None if self.url is None else self.url.rsplit("/", 1)[-1]


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant, *aliases: str) -> Variant:
    """Add a variant (and optional alias names) to the registry."""
    for name in (variant.name, *aliases):
        VARIANTS[name] = variant
    return variant
