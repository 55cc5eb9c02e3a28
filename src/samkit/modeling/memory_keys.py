"""Memory keys computed once per stored memory instead of every frame (issue 21).

Each cross-attention layer of SAM 2's memory attention projects and rotates the keys of every
memory it reads, `rotate(W_k (m + p + t) + b)`, with m a stored memory, p its position encoding
and t the learned temporal encoding of the memory's slot. m + p stays the same while the memory
is stored; t changes every frame (the memory of frame f sits in slot F - f at frame F). As
projection and rotation are linear, the keys split into `rotate(W_k (m + p))`, computed when a
memory is first read and kept in a `MemoryKeyCache`, and `rotate(W_k t + b)`, a constant per
slot added per frame (`RoPEAttention.memory_key_part` / `add_key_offset`). Same math; the
float rounding differs (float32: about 1e-7 relative on the keys).

What it saves per frame and object: the key projection (a 64 -> 256 matmul over the memory
tokens, 0.94 GFLOP per layer at a full bank) and most of the RoPE passes over the keys; what it
costs: 4 layers x 4096 x 256 values per stored memory and object (16 MiB in float32, 8 MiB in
bfloat16), kept only for the memories the last frame read (`MemoryKeyCache.end_frame`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from samkit.layers.rope import RoPEAttention


class MemoryKeyCache:
    """Per stored memory tensor (by identity, while it lives) and cross-attention layer, the
    frame-independent part of its keys, (B, nh, h*w, hs) in the attention's dtype."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, int, torch.dtype, list[Tensor]]] = {}
        self._batches: dict[int, tuple[weakref.ref, list[Tensor]]] = {}
        self._used: set[int] = set()

    def register_batch(self, batch: Tensor, parts: list[Tensor]) -> None:
        """`batch` is `parts` concatenated along dim 0 (objects tracked together): its keys are
        looked up per part, so a memory keeps its entry whichever batch reads it."""
        self._batches[id(batch)] = (weakref.ref(batch), parts)

    def split(self, memory: Tensor, pos: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """(part, its rows of pos) of a memory: its registered parts, else the memory itself."""
        entry = self._batches.get(id(memory))
        if entry is None or entry[0]() is not memory:
            yield memory, pos
            return
        row = 0
        for part in entry[1]:
            n = part.shape[0]
            yield part, pos[row : row + n]
            row += n

    def key_parts(
        self, part: Tensor, pos: Tensor, attns: Sequence[RoPEAttention], dtype: torch.dtype
    ) -> list[Tensor]:
        """Per layer, `rotate(W_k (m + p))` of a BxC_memxHxW memory and its position encoding."""
        key = id(part)
        entry = self._entries.get(key)
        if (
            entry is None
            or entry[0]() is not part
            or entry[1] != pos.data_ptr()
            or entry[2] != dtype
        ):
            x = part.flatten(2).transpose(1, 2).to(dtype) + pos.flatten(2).transpose(1, 2).to(dtype)
            entry = (
                weakref.ref(part),
                pos.data_ptr(),
                dtype,
                [a.memory_key_part(x) for a in attns],
            )
            self._entries[key] = entry
        self._used.add(key)
        return entry[3]

    def end_frame(self) -> None:
        """Drop the entries no memory read since the last call used (in order tracking, the
        memory that left the window) and the batch registrations."""
        for key in [k for k in self._entries if k not in self._used]:
            del self._entries[key]
        self._used.clear()
        self._batches.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._batches.clear()
        self._used.clear()

    def tensors(self) -> list[Tensor]:
        """The cached tensors (for memory accounting)."""
        return [t for e in self._entries.values() for t in e[3]]


class MemoryKeys(Sequence[Tensor]):
    """Per cross-attention layer, the (B, nh, M, hs) keys of the spatial memory assembled from a
    `MemoryKeyCache` (the last `n_ptr` key rows, the pointers', are left for the attention to
    fill); built when a layer asks for them, so one layer's keys are alive at a time.

    Args:
        cache: the cache.
        attns: the layers' cross-attentions.
        memories: (temporal-encoding C_mem vector of its slot, BxC_memxHxW memory, its position
            encoding) in attention order.
        n_ptr: pointer tokens after the spatial memory.
        dtype: the attention's dtype.
    """

    def __init__(
        self,
        cache: MemoryKeyCache,
        attns: Sequence[RoPEAttention],
        memories: list[tuple[Tensor, Tensor, Tensor]],
        n_ptr: int,
        dtype: torch.dtype,
    ) -> None:
        self.cache, self.attns, self.memories = cache, list(attns), memories
        self.n_ptr, self.dtype = n_ptr, dtype

    def __len__(self) -> int:
        return len(self.attns)

    def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
        attn = self.attns[i]
        b = self.memories[0][1].shape[0]
        hw = self.memories[0][1].shape[-2] * self.memories[0][1].shape[-1]
        nh = attn.num_heads
        hs = attn.internal_dim // nh
        dev = self.memories[0][1].device
        n = len(self.memories) * hw + self.n_ptr
        out = torch.empty(b, nh, n, hs, dtype=self.dtype, device=dev)
        for f, (tpos, mem, pos) in enumerate(self.memories):
            row = 0
            for part, part_pos in self.cache.split(mem, pos):
                r = part.shape[0]
                key = self.cache.key_parts(part, part_pos, self.attns, self.dtype)[i]
                dst = out[row : row + r, :, f * hw : (f + 1) * hw]
                attn.add_key_offset(dst, key.expand(r, -1, -1, -1), tpos.to(self.dtype))
                row += r
        return out
