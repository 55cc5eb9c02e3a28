"""Memory keys computed once per stored memory in the ONNX video export (issues 21 / 23).

The torch tracker keeps, per stored memory and cross-attention layer, the frame-independent
part of the memory's keys, `rotate(W_k (m + p))` (`samkit.modeling.memory_keys`), and adds the
part that changes from frame to frame, `rotate(W_k t + b)` of the memory slot's temporal
encoding t, on every frame. The export does the same with two graphs next to
`memory_attention.onnx` (which stays: it serves batched objects and exports without them):

| file | inputs | outputs |
|---|---|---|
| `memory_keys.onnx` | `memory`, `memory_pos` BxC_memxhxw | `memory_keys` LxBxnhx(h*w)xhs |
| `memory_attention_keys.onnx` | `feat`, `feat_pos` BxCxhxw, `memory` BxFxC_memxhxw, `memory_keys` LxBxnhx(F*h*w)xhs, `memory_tpos_index` (F,) int64, `obj_ptrs` BxPxC, `obj_ptr_pos` (P,) | `conditioned` BxCxhxw |

L is the number of memory-attention layers, nh x hs their cross-attention heads; the
attention's `memory_keys` are the F memories' `memory_keys` outputs concatenated along the
token axis (in the order of `memory`). `memory_keys.onnx` runs once per stored memory
(`MemoryKeyStore`, on the host); the attention graph adds the slots' temporal parts, projects
only the object pointers' keys and runs the layers as `memory_attention.onnx` does, but for
the values: where they are narrower than the attention heads (SAM 2: 64-wide memories, 256-wide
head), it weighs them before projecting them ("late values", as the torch attention does on a
CPU), 4x fewer multiply-adds in the weighted sum. Same math; float rounding differs (about 1e-7
relative on the keys, as in torch).

Exported only for models whose torch tracker keeps keys (`reuses_memory_keys`: SAM 2 / 2.1).
EfficientTAM's pooled and EdgeTAM's perceiver cross-attentions (`EfficientRoPEAttention`,
`RoPEAttentionV2`) compute their keys every frame in torch too and keep the one graph.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.export.video_parts import pointer_tokens
from samkit.layers.attention import sdpa
from samkit.layers.rope import RoPEAttention, rotate
from samkit.modeling.memory_conditioning import _caches_keys
from samkit.modeling.sam2_video import Sam2Video

KEYS_FILES = {
    "memory_keys": "memory_keys.onnx",
    "memory_attention_keys": "memory_attention_keys.onnx",
}
KEYS_INPUTS = ["memory", "memory_pos"]
KEYED_ATTENTION_INPUTS = [
    "feat",
    "feat_pos",
    "memory",
    "memory_keys",
    "memory_tpos_index",
    "obj_ptrs",
    "obj_ptr_pos",
]


def reuses_memory_keys(model: Sam2Video) -> bool:
    """Whether the torch tracker keeps this model's memory keys between frames (the condition
    of `Sam2Tracker._with_key_cache` and `memory_conditioning._caches_keys`), so that the export
    gets the key graphs: SAM 2's tracking step and memory attention of plain `RoPEAttention`s
    on memories of the query grid's size (not a perceiver's latents)."""
    m = type(model)
    if (
        m.track_step is not Sam2Video.track_step
        or m.condition_on_memory is not Sam2Video.condition_on_memory
        or getattr(model, "spatial_perceiver", None) is not None
    ):
        return False
    with torch.no_grad():
        return _caches_keys(model.memory_attention)


def _cross_attns(model: Sam2Video) -> list[RoPEAttention]:
    return [layer.cross_attn_image for layer in model.memory_attention.layers]


class VideoMemoryKeys(nn.Module):
    """`memory_keys.onnx`: per cross-attention layer `RoPEAttention.memory_key_part` of a
    memory plus its position encoding, stacked: (L, B, nh, h*w, hs)."""

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model

    def forward(self, memory: Tensor, memory_pos: Tensor) -> Tensor:
        x = (memory + memory_pos).flatten(2).transpose(1, 2)  # (B, h*w, C_mem)
        return torch.stack([a.memory_key_part(x) for a in _cross_attns(self.model)], dim=0)


def _spatial_keys(attn: RoPEAttention, parts: Tensor, tpos: Tensor, n: int) -> Tensor:
    """(B, nh, F*n, hs) keys of F memories of n tokens from their kept parts (B, nh, F*n, hs)
    and the slots' (F, C_mem) temporal encodings: part + rotate(W_k t + b), the rotation of a per-frame
    constant c being c * cos + swap(c) * sin per token (`RoPEAttention.add_key_offset`)."""
    b, nh, _, hs = parts.shape
    f = tpos.shape[0]
    c = attn._separate_heads(attn.k_proj(tpos.unsqueeze(0)))  # (1, nh, F, hs)
    c = c.unsqueeze(3)  # (1, nh, F, 1, hs)
    swapped = torch.stack((c[..., 1::2], c[..., 0::2]), dim=-1).flatten(-2)
    cos2, sin2 = attn.rope_tables(n, parts.device)  # (n, hs)
    offset = c * cos2 + swapped * sin2  # (1, nh, F, n, hs)
    return (parts.reshape(b, nh, f, n, hs) + offset).reshape(b, nh, f * n, hs)


def _cross_attention(
    attn: RoPEAttention, q: Tensor, keys: Tensor, k: Tensor, v: Tensor, late_values: bool
) -> Tensor:
    """`RoPEAttention.forward` with the rotated spatial keys given: q BxNqxC, keys (B, nh, M,
    hs), k the BxPxC_kv pointer-key inputs (not rotated), v Bx(M+P)xC_kv -> BxNqxC.

    `late_values` with values narrower than the heads (SAM 2: 64-wide memories, 256-wide head):
    the values are weighed first and projected after, P (V W^T + b) = (P V) W^T + b as each row
    of P sums to 1, as the torch attention does on a CPU (exact math, float rounding only)."""
    q = attn._separate_heads(attn.q_proj(q))  # (B, nh, Nq, hs)
    cos2, sin2 = attn.rope_tables(q.shape[-2], q.device)
    q = rotate(q, cos2, sin2)
    b, nk = k.shape[:2]
    nh, hs = attn.num_heads, attn.internal_dim // attn.num_heads
    # explicit head size: the reshape of `_separate_heads` (-1) fails on 0 pointers in onnxruntime
    k = attn.k_proj(k).reshape(b, nk, nh, hs).transpose(1, 2)  # (B, nh, P, hs)
    k = torch.cat([keys, k], dim=2)
    if late_values and attn.kv_in_dim < hs:
        v = v.unsqueeze(1)
        if nh > 1:
            v = v.expand(-1, nh, -1, -1)
        out = sdpa(q, k, v)  # (B, nh, Nq, C_kv)
        w = attn.v_proj.weight.reshape(nh, hs, attn.kv_in_dim).transpose(1, 2)
        out = torch.matmul(out, w) + attn.v_proj.bias.reshape(nh, 1, hs)
    else:
        out = sdpa(q, k, attn._separate_heads(attn.v_proj(v)))  # (B, nh, Nq, hs)
    n = out.shape[2]
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))


class VideoKeyedMemoryAttention(nn.Module):
    """`memory_attention_keys.onnx`: `VideoMemoryAttention` with the memories' kept key parts an
    input (`MemoryAttention.forward` with `memory_keys`, layer by layer); `late_values`: see
    `_cross_attention` (on by default, off only to measure it)."""

    def __init__(self, model: Sam2Video, late_values: bool = True) -> None:
        super().__init__()
        self.model = model
        self.late_values = late_values

    def forward(
        self,
        feat: Tensor,
        feat_pos: Tensor,
        memory: Tensor,
        memory_keys: Tensor,
        memory_tpos_index: Tensor,
        obj_ptrs: Tensor,
        obj_ptr_pos: Tensor,
    ) -> Tensor:
        m = self.model
        att = m.memory_attention
        b, c, h, w = feat.shape
        cm = m.mem_dim
        values = memory.permute(0, 1, 3, 4, 2).reshape(b, -1, cm)  # (B, F*h*w, C_mem)
        tpos = m.maskmem_tpos_enc.reshape(m.num_maskmem, cm)[memory_tpos_index]  # (F, C_mem)
        ptrs, ppos = pointer_tokens(m, obj_ptrs, obj_ptr_pos)
        values = torch.cat([values, ptrs], dim=1)
        ptr_keys = ptrs + ppos  # `pos_enc_at_cross_attn_keys` (`reuses_memory_keys`)
        curr = feat.flatten(2).transpose(1, 2)
        curr_pos = feat_pos.flatten(2).transpose(1, 2)
        out = curr + 0.1 * curr_pos if att.pos_enc_at_input else curr
        for i, layer in enumerate(att.layers):
            out = layer.self_attention_block(out, curr_pos)
            attn = layer.cross_attn_image
            keys = _spatial_keys(attn, memory_keys[i], tpos, h * w)
            x = layer.norm2(out)
            q = x + curr_pos if layer.pos_enc_at_cross_attn_queries else x
            out = out + _cross_attention(attn, q, keys, ptr_keys, values, self.late_values)
            x = layer.norm3(out)
            out = out + layer.linear2(F.relu(layer.linear1(x)))
        return att.norm(out).transpose(1, 2).reshape(b, c, h, w)


class MemoryKeyStore:
    """The `memory_keys.onnx` output of each stored memory, kept while the memory tensor lives
    (by identity, with the data pointer of its position encoding) and while frames read it.

    Args:
        compute: BxC_memxhxw memory, its position encoding -> (L, B, nh, h*w, hs) keys.

    `runs` counts the calls of `compute`. `new_frame(frame_idx)`, called before each tracking
    step, drops, when the frame changes, the entries no step of the previous frame read (the
    memories that left the window), as the torch tracker's `MemoryKeyCache.end_frame`; entries
    of freed memories go at the next call.
    """

    def __init__(self, compute: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.compute = compute
        self.runs = 0
        self._entries: dict[int, tuple[weakref.ref, int, Tensor]] = {}
        self._used: set[int] = set()
        self._dead: list[tuple[int, weakref.ref]] = []
        self._frame: int | None = None

    def keys(self, memories: list[tuple[int, Tensor, Tensor]]) -> Tensor:
        """(L, B, nh, F*h*w, hs): the kept keys of (slot, memory, position) in that order."""
        self._purge()
        parts = [self._part(mem, pos) for _, mem, pos in memories]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=3)

    def _part(self, mem: Tensor, pos: Tensor) -> Tensor:
        key = id(mem)
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not mem or entry[1] != pos.data_ptr():
            ref = weakref.ref(mem, lambda r, k=key: self._dead.append((k, r)))
            entry = (ref, pos.data_ptr(), self.compute(mem, pos))
            self._entries[key] = entry
            self.runs += 1
        self._used.add(key)
        return entry[2]

    def _purge(self) -> None:
        while self._dead:
            key, ref = self._dead.pop()
            entry = self._entries.get(key)
            if entry is not None and entry[0] is ref:
                del self._entries[key]

    def new_frame(self, frame_idx: int) -> None:
        """Before a tracking step on `frame_idx` (see the class docstring)."""
        if frame_idx != self._frame:
            self._frame = frame_idx
            for key in [k for k in self._entries if k not in self._used]:
                del self._entries[key]
            self._used.clear()
        self._purge()

    def clear(self) -> None:
        self._entries.clear()
        self._used.clear()
        self._dead.clear()
        self._frame = None

    def tensors(self) -> list[Tensor]:
        """The kept key tensors (for memory accounting)."""
        return [e[2] for e in self._entries.values()]


def example_key_inputs(model: Sam2Video, attention: dict[str, Tensor]) -> dict[str, Tensor]:
    """The key graphs' example inputs from `video_parts.example_inputs(model)["attention"]`:
    {"keys": memory-key inputs (2 objects), "attention": keyed-attention inputs}."""
    mem, pos = attention["memory"], attention["memory_pos"]
    f = mem.shape[1]
    keys_module = VideoMemoryKeys(model)
    with torch.no_grad():
        parts = [keys_module(mem[:, i], pos[:, i]) for i in range(f)]
    keyed = {
        "feat": attention["feat"],
        "feat_pos": attention["feat_pos"],
        "memory": mem,
        "memory_keys": torch.cat(parts, dim=3),
        "memory_tpos_index": attention["memory_tpos_index"],
        "obj_ptrs": attention["obj_ptrs"],
        "obj_ptr_pos": attention["obj_ptr_pos"],
    }
    return {"keys": {"memory": mem[:, 0], "memory_pos": pos[:, 0]}, "attention": keyed}
