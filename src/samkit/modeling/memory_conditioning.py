"""Reading SAM 2's memory: a frame's features cross-attend to memories and object pointers.

The second half of the official `_prepare_memory_conditioned_features` (the first half, which
past frames are read, is `samkit.modeling.memory_selection`): memory tokens get the learned
temporal encoding `maskmem_tpos_enc` of their slot; object pointers get a 1-D sine encoding of
their normalised temporal offset (projected by `obj_ptr_tpos_proj` when configured) and, when
the memory is narrower than the model, are split into C / C_mem tokens each; then the memory
attention runs on the frame's stride-16 tokens.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from samkit.layers.rope import RoPEAttention
from samkit.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from samkit.modeling.memory_keys import MemoryKeyCache, MemoryKeys


class _ConditioningModel(Protocol):
    hidden_dim: int
    mem_dim: int
    num_maskmem: int
    memory_attention: MemoryAttention
    maskmem_tpos_enc: Tensor
    obj_ptr_tpos_proj: nn.Module
    add_tpos_enc_to_obj_ptrs: bool
    proj_tpos_enc_in_obj_ptrs: bool


def sine_pe_1d(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """N positions -> Nx`dim` [sin, cos] encoding (official `get_1d_sine_pe`)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    pe = pos.unsqueeze(-1) / dim_t
    return torch.cat([pe.sin(), pe.cos()], dim=-1)


def object_pointer_tokens(
    model: _ConditioningModel,
    pointers: list[tuple[int, Tensor]],
    max_ptrs: int,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Object pointers as memory tokens: (BxMxC_mem tokens, BxMxC_mem their encoding).

    Args:
        pointers: non-empty list of (temporal offset, BxC object pointer).
        max_ptrs: the pointer-window size that normalises the offsets (offset / (max_ptrs - 1)).
        batch: B.
        dtype: the memory attention's dtype.
        device: where the offsets (and so their encoding) are made: the frame's features'.

    Returns:
        M = n pointers, times C / C_mem when the memory is narrower than the model.
    """
    c = model.hidden_dim
    b = batch
    offsets = torch.tensor([p for p, _ in pointers], device=device)
    ptrs = torch.stack([p.to(dtype) for _, p in pointers], dim=1)  # (B, n, C)
    n = ptrs.shape[1]
    if model.add_tpos_enc_to_obj_ptrs:
        tpos_dim = c if model.proj_tpos_enc_in_obj_ptrs else model.mem_dim
        ppos = sine_pe_1d(offsets / (max_ptrs - 1), tpos_dim)
        proj = model.obj_ptr_tpos_proj
        if isinstance(proj, nn.Linear):
            ppos = proj(ppos.to(proj.weight.dtype))
        ppos = ppos.to(dtype).unsqueeze(0).expand(b, -1, -1)
    else:
        ppos = ptrs.new_zeros(b, n, model.mem_dim)
    if model.mem_dim < c:  # each pointer becomes C / mem_dim tokens
        split = c // model.mem_dim
        ptrs = ptrs.reshape(b, n * split, model.mem_dim)
        ppos = ppos.repeat_interleave(split, dim=1)
    return ptrs, ppos


def condition_on_memory(
    model: _ConditioningModel,
    feat: Tensor,
    pos: Tensor,
    memories: list[tuple[int, Tensor, Tensor]],
    pointers: list[tuple[int, Tensor]],
    max_ptrs: int,
    key_cache: MemoryKeyCache | None = None,
) -> Tensor:
    """Fuse a frame's BxCxHxW stride-16 features (pos: its encoding) with memories.

    Args:
        memories: (t_pos, BxC_memxHxW features (any float dtype), BxC_memxHxW position
            encoding); t_pos 0 for conditioning frames, 1..num_maskmem-1 for past frames.
        pointers: (temporal offset, BxC object pointer).
        max_ptrs: the pointer-window size min(num_frames, max_obj_ptrs_in_encoder) that
            normalises the temporal offsets.
        key_cache: where the memories' frame-independent key parts are kept
            (`samkit.modeling.memory_keys`); None computes the keys from the memories.

    Returns:
        BxCxHxW conditioned features.
    """
    b, c, h, w = feat.shape
    dt = model.memory_attention.norm.weight.dtype
    mem, mem_pos, slots = [], [], []
    for t_pos, m, mp in memories:
        mem.append(m.flatten(2).transpose(1, 2).to(dt))
        tpos = model.maskmem_tpos_enc[model.num_maskmem - t_pos - 1].reshape(1, 1, -1)
        mem_pos.append(mp.flatten(2).transpose(1, 2).to(dt) + tpos)
        slots.append((tpos.reshape(-1), m, mp))
    n_ptr_tokens = 0
    if pointers:
        ptrs, ppos = object_pointer_tokens(model, pointers, max_ptrs, b, dt, feat.device)
        mem.append(ptrs)
        mem_pos.append(ppos)
        n_ptr_tokens = ptrs.shape[1]
    kw = {}
    same_grid = all(m.shape[-2:] == (h, w) for _, m, _ in slots)
    if key_cache is not None and slots and same_grid and _caches_keys(model.memory_attention):
        attns = [layer.cross_attn_image for layer in model.memory_attention.layers]
        kw["memory_keys"] = MemoryKeys(key_cache, attns, slots, n_ptr_tokens, dt)
    tokens = model.memory_attention(
        _tokens(feat, dt),
        torch.cat(mem, dim=1).to(dt),
        _tokens(pos, dt),
        torch.cat(mem_pos, dim=1).to(dt),
        num_obj_ptr_tokens=n_ptr_tokens,
        **kw,
    )
    return tokens.transpose(1, 2).reshape(b, c, h, w).to(feat.dtype)


def _tokens(x: Tensor, dtype: torch.dtype) -> Tensor:
    """BxCxHxW -> BxNxC in `dtype`; B objects' features expanded from one frame (stride 0 on the
    batch) stay an expanded view, so the memory attention sees they are shared."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return x[:1].flatten(2).transpose(1, 2).to(dtype).expand(x.shape[0], -1, -1)
    return x.flatten(2).transpose(1, 2).to(dtype)


def _caches_keys(attention: nn.Module) -> bool:
    """Whether keys from a `MemoryKeyCache` apply: samkit's `MemoryAttention` whose layers
    add the memory position to the keys of a plain `RoPEAttention` over memories of the query
    grid's size, and no gradient is wanted."""
    if torch.is_grad_enabled() or type(attention).forward is not MemoryAttention.forward:
        return False
    for layer in attention.layers:
        ca = getattr(layer, "cross_attn_image", None)
        if (
            type(layer).forward is not MemoryAttentionLayer.forward
            or type(ca).forward is not RoPEAttention.forward
            or not ca.rope_k_repeat
            or not layer.pos_enc_at_cross_attn_keys
        ):
            return False
    return True
