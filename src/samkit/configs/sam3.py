"""SAM 3 image-model architecture as a frozen dataclass, and its inference from a checkpoint.

`SAM3_OFFICIAL` holds the sizes of the official `sam3.pt` (Meta, Nov 2025; `sam3` 0.1.4
`model_builder.build_sam3_image_model`): ViT-L-like trunk (1024 wide, 32 blocks, 16 heads, global
attention in blocks 7, 15, 23, 31, window 24), a 24-layer 1024-wide text transformer, and 256-wide
detector heads (6 fusion-encoder layers, 6 decoder layers with 200 queries, 3 geometry layers,
feed-forward 2048). `sam3_config_from_state_dict` reads every size from tensor shapes (see its
docstring for the two that shapes do not fix), so smaller models in the official layout (such as
the `sam3_tiny` parity fixture) load too. No torch import here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sam3Config:
    """Every size of a SAM 3 image model (defaults: the official model)."""

    # vision trunk (ViT, patch 14, RoPE, windowed + global blocks, tiled abs pos)
    img_size: int = 1008
    patch_size: int = 14
    pretrain_img_size: int = 336
    vit_embed_dim: int = 1024
    vit_depth: int = 32
    vit_num_heads: int = 16
    vit_mlp_ratio: float = 4.625
    vit_window_size: int = 24
    vit_global_att_blocks: tuple[int, ...] = (7, 15, 23, 31)
    # text encoder (CLIP-style causal transformer)
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    context_length: int = 32
    vocab_size: int = 49408
    # detector heads
    d_model: int = 256
    num_heads: int = 8
    encoder_layers: int = 6
    encoder_ffn: int = 2048
    decoder_layers: int = 6
    decoder_ffn: int = 2048
    num_queries: int = 200
    geometry_layers: int = 3
    geometry_ffn: int = 2048
    scoring_hidden: int = 2048
    segmentation: bool = True
    # SAM-2-style neck and interactive heads (the checkpoint's tracker.* tensors)
    inst_interactivity: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SAM3_OFFICIAL = Sam3Config()

_DET = "detector."


def _count(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def sam3_config_from_state_dict(state_dict: Mapping[str, Any]) -> Sam3Config:
    """Read a SAM 3 architecture off an official-layout state dict's tensor shapes.

    Keys are the official `sam3.pt` ones (`detector.*`, `tracker.*`). Head counts: the ViT's come
    from its RoPE tables (`attn.freqs_cis`, head_dim / 2 complex entries), and which blocks
    attend globally from their table length (H*W tokens vs window^2); the detector's from the box
    RPB MLP output. The text encoder's head count is not in any shape: it is taken to have the
    ViT's head width (true of the official model, 64, and of the `sam3_tiny` fixture, 32).

    Args:
        state_dict: `{key: tensor}` (anything with `.shape`).

    Returns:
        The `Sam3Config`.

    Raises:
        ValueError: a tensor the architecture needs is missing (not a SAM 3 checkpoint).
    """
    keys = list(state_dict)

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise ValueError(f"not a SAM 3 checkpoint in the official layout: no tensor {key!r}")
        return tuple(state_dict[key].shape)

    trunk = _DET + "backbone.vision_backbone.trunk."
    dim, _, patch, _ = shape(trunk + "patch_embed.proj.weight")
    depth = _count(keys, re.escape(trunk) + r"blocks\.(\d+)\.")
    n_pos = shape(trunk + "pos_embed")[1]
    pretrain_grid = (
        math.isqrt(n_pos - 1) if math.isqrt(n_pos - 1) ** 2 == n_pos - 1 else math.isqrt(n_pos)
    )
    head_dim = 2 * shape(trunk + "blocks.0.attn.freqs_cis")[1]
    hidden = shape(trunk + "blocks.0.mlp.fc1.weight")[0]
    table_lens = [shape(trunk + f"blocks.{i}.attn.freqs_cis")[0] for i in range(depth)]
    full = max(table_lens)
    window = math.isqrt(min(table_lens))
    img_size = math.isqrt(full) * patch
    global_blocks = tuple(i for i, n in enumerate(table_lens) if n == full and n != window**2)

    text = _DET + "backbone.language_backbone.encoder."
    vocab, width = shape(text + "token_embedding.weight")
    dec = _DET + "transformer.decoder."
    return Sam3Config(
        img_size=img_size,
        patch_size=patch,
        pretrain_img_size=pretrain_grid * patch,
        vit_embed_dim=dim,
        vit_depth=depth,
        vit_num_heads=dim // head_dim,
        vit_mlp_ratio=hidden / dim,
        vit_window_size=window,
        vit_global_att_blocks=global_blocks,
        text_width=width,
        text_heads=max(width // head_dim, 1),
        text_layers=_count(keys, re.escape(text) + r"transformer\.resblocks\.(\d+)\."),
        context_length=shape(text + "positional_embedding")[0],
        vocab_size=vocab,
        d_model=shape(dec + "query_embed.weight")[1],
        num_heads=shape(dec + "boxRPB_embed_x.layers.1.weight")[0],
        encoder_layers=_count(keys, re.escape(_DET + "transformer.encoder.layers.") + r"(\d+)\."),
        encoder_ffn=shape(_DET + "transformer.encoder.layers.0.linear1.weight")[0],
        decoder_layers=_count(keys, re.escape(dec + "layers.") + r"(\d+)\."),
        decoder_ffn=shape(dec + "layers.0.linear1.weight")[0],
        num_queries=shape(dec + "query_embed.weight")[0],
        geometry_layers=_count(keys, re.escape(_DET + "geometry_encoder.encode.") + r"(\d+)\."),
        geometry_ffn=shape(_DET + "geometry_encoder.encode.0.linear1.weight")[0],
        scoring_hidden=shape(_DET + "dot_prod_scoring.prompt_mlp.layers.0.weight")[0],
        segmentation=any(k.startswith(_DET + "segmentation_head.") for k in keys),
        inst_interactivity=any(k.startswith("tracker.") for k in keys),
    )
