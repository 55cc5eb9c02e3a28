"""SAM 2 memory attention: the current frame's image tokens attend to past memories and pointers.

State-dict names match the official `MemoryAttention` (`layers.{i}.self_attn.*`,
`layers.{i}.cross_attn_image.*`, `layers.{i}.linear1/2`, `layers.{i}.norm1/2/3`, `norm`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from samkit.layers.fused_linear import linear_act
from samkit.layers.rope import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention (RoPE), cross-attention to memories (RoPE), ReLU MLP.

    Args:
        self_attn: RoPE self-attention over the image tokens.
        cross_attn_image: RoPE cross-attention with `rope_k_repeat` and `kv_in_dim` = memory dim.
        d_model: token width C.
        dim_feedforward: MLP hidden width.
        pos_enc_at_attn: add the query position encoding before self-attention.
        pos_enc_at_cross_attn_queries / _keys: add position encodings in cross-attention.
    """

    def __init__(
        self,
        self_attn: RoPEAttention,
        cross_attn_image: RoPEAttention,
        d_model: int = 256,
        dim_feedforward: int = 2048,
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_queries: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.cross_attn_image = cross_attn_image
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        num_k_exclude_rope: int = 0,
    ) -> Tensor:
        """tgt BxNxC image tokens, memory BxMxC_mem (pointer tokens last), pos BxMxC_mem,
        query_pos BxNxC -> BxNxC."""
        tgt = self.self_attention_block(tgt, query_pos)
        return self.cross_attention_block(tgt, memory, pos, query_pos, num_k_exclude_rope)

    def self_attention_block(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """The first third of `forward`: BxNxC tokens after the residual self-attention (reads
        no memory)."""
        x = self.norm1(tgt)
        q = x + query_pos if self.pos_enc_at_attn else x
        return tgt + self.self_attn(q, q, x)

    def cross_attention_block(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        num_k_exclude_rope: int = 0,
        memory_keys: Tensor | None = None,
    ) -> Tensor:
        """The rest of `forward` after `self_attention_block`: residual cross-attention to the
        memory, then the residual MLP (shapes as `forward`). `memory_keys`: the cross-attention's
        rotated keys of the spatial memory, computed ahead (`MemoryKeys`)."""
        x = self.norm2(tgt)
        q = x + query_pos if self.pos_enc_at_cross_attn_queries else x
        if memory_keys is None:
            k = memory + pos if self.pos_enc_at_cross_attn_keys else memory
            kw = {}
        else:  # only the pointer tokens' keys are left to project
            n = memory.shape[1] - num_k_exclude_rope
            k = memory[:, n:] + pos[:, n:] if self.pos_enc_at_cross_attn_keys else memory[:, n:]
            kw = {"memory_keys": memory_keys}
        tgt = tgt + self.cross_attn_image(q, k, memory, num_k_exclude_rope=num_k_exclude_rope, **kw)
        x = self.norm3(tgt)
        return tgt + self.linear2(linear_act(x, self.linear1, self.activation))


class MemoryAttention(nn.Module):
    """A stack of `MemoryAttentionLayer`s and a final LayerNorm.

    Args:
        layers: the layers (official `get_clones` of one layer config).
        d_model: token width C.
        pos_enc_at_input: add 0.1 x the image position encoding to the input tokens.
    """

    def __init__(
        self, layers: list[MemoryAttentionLayer], d_model: int = 256, pos_enc_at_input: bool = True
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input

    def forward(
        self,
        curr: Tensor,
        memory: Tensor,
        curr_pos: Tensor,
        memory_pos: Tensor,
        num_obj_ptr_tokens: int = 0,
        memory_keys: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Condition image tokens on memories.

        Args:
            curr: BxNxC image tokens of the current frame (N = H*W of the stride-16 grid); B
                objects tracked on one frame pass one frame's tokens expanded to B (stride 0
                on the batch), and the first layer's self-attention then runs once for all.
            memory: BxMxC_mem spatial memories of the selected frames, then the object-pointer
                tokens (the last `num_obj_ptr_tokens`, not rotated by RoPE).
            curr_pos: BxNxC image position encoding.
            memory_pos: BxMxC_mem memory position + temporal encodings.
            memory_keys: per layer, its cross-attention's keys of the spatial memory computed
                ahead from cached parts (`MemoryKeys`); None computes them from the memory.

        Returns:
            BxNxC conditioned tokens.
        """
        layers = list(self.layers)
        b = memory.shape[0]
        keys = [None] * len(layers) if memory_keys is None else memory_keys
        n_ptr = num_obj_ptr_tokens
        start = 0
        if b > 1 and _batch_shared(curr) and _batch_shared(curr_pos) and _splits(layers):
            # B objects on one frame (an expanded batch): the input and the first layer's
            # self-attention read no memory, so they are the same for every object: run once
            one = curr[:1] + 0.1 * curr_pos[:1] if self.pos_enc_at_input else curr[:1]
            one = layers[0].self_attention_block(one, curr_pos[:1]).expand(b, -1, -1)
            out = layers[0].cross_attention_block(one, memory, memory_pos, curr_pos, n_ptr, keys[0])
            start = 1
        else:
            out = curr + 0.1 * curr_pos if self.pos_enc_at_input else curr
        for i in range(start, len(layers)):
            if keys[i] is None:
                out = layers[i](out, memory, memory_pos, curr_pos, num_k_exclude_rope=n_ptr)
            else:
                out = layers[i].self_attention_block(out, curr_pos)
                out = layers[i].cross_attention_block(
                    out, memory, memory_pos, curr_pos, n_ptr, keys[i]
                )
        return self.norm(out)


def _splits(layers: list[nn.Module]) -> bool:
    """Whether the first layer is a `MemoryAttentionLayer` whose `forward` is the two blocks
    (a subclass that overrides `forward` is run whole)."""
    return bool(layers) and type(layers[0]).forward is MemoryAttentionLayer.forward


def _batch_shared(x: Tensor) -> bool:
    """Whether every batch entry of x is the same memory (an `expand`ed batch of one)."""
    return x.shape[0] == 1 or x.stride(0) == 0
