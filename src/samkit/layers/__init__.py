"""Reusable building blocks shared by SAM 1 and SAM 2."""

from samkit.layers.attention import Attention, sdpa
from samkit.layers.mlp import MLP, MLPBlock
from samkit.layers.norm import LayerNorm2d
from samkit.layers.position import PositionEmbeddingRandom
from samkit.layers.rel_pos import get_rel_pos, rel_pos_attention
from samkit.layers.window import window_partition, window_unpartition

__all__ = [
    "MLP",
    "Attention",
    "LayerNorm2d",
    "MLPBlock",
    "PositionEmbeddingRandom",
    "get_rel_pos",
    "rel_pos_attention",
    "sdpa",
    "window_partition",
    "window_unpartition",
]
