"""The one attention entry point: `F.scaled_dot_product_attention`, or query-row blocks of matmuls.

softmax(q k^T * scale + bias) v, exact math (no approximation of the softmax). On CPUs two cases
run faster as blocks of plain matmuls than through PyTorch's CPU flash-attention kernel:

- bfloat16: the flash kernel multiplies its bf16 blocks through MKL's bf16 GEMM, which on CPUs
  without AMX (AMD EPYC with AVX-512 BF16 measured) runs at the float32 rate, so bf16 attention
  was no faster than float32 while `torch.matmul` in bf16 (oneDNN) runs 2.2x the float32 rate.
  Here each block is `torch.baddbmm` (bf16 inputs, float32 accumulation, the scale and any
  additive bias applied in float32 before the bf16 rounding), `softmax` (float32 max / exp /
  sum inside, bf16 result) and `torch.bmm` with the values (float32 accumulation over all keys
  of the row). The keys are centred first (the mean key is subtracted: every score of a row
  moves by the same constant, so the softmax is unchanged) so the bf16 scores round with a
  smaller magnitude.
- values narrower than the queries and keys (SAM 2's memory attention multiplies the
  probabilities by the 64-wide memory before the value projection, see
  `samkit.layers.rope.RoPEAttention`): the flash kernel needs equal widths and would fall back
  to the unfused math path.

A block holds about `SCORE_BLOCK_BYTES` of scores per thread (all keys of some query rows of
some heads), so there is no online rescaling: every row's softmax is taken over all its keys at
once.

On CPUs with AMX, PyTorch's flash kernel packs its bf16 blocks for oneDNN's AMX brgemm, so
bf16 with equal widths stays with it there (`cpu_has_amx`; not measured on this project's AMD
machine).

Everything else (float32 with equal widths, which the flash kernel serves at 75-97 % of the
matmul rate; gradients; autocast; tracing, export and compilation; non-CPU devices) goes to
`F.scaled_dot_product_attention`, so training and exporters see the same op as before.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

# Bytes of scores per block and intra-op thread (one `baddbmm` / `softmax` / `bmm` triple):
# 8 MiB measured best on one thread (SAM 2's full memory bank 1.27x faster than 32 MiB, other
# shapes within 6 %).
SCORE_BLOCK_BYTES = 8 * 2**20
# Fewest query rows per block and thread (smaller matmuls lose efficiency): MKL's float32 GEMM
# wants more than oneDNN's bf16 one (SAM 2's full bank, late values, float32: 256 rows 1.19x
# faster than 128).
MIN_ROWS = {torch.float32: 256, torch.bfloat16: 128}
# bf16 windows with fewer keys stay with SDPA: many tiny matmuls. Hiera's 8x8 windows (64 keys,
# the qkv layout Hiera passes, one thread CPU time) took 1.17-1.39x SDPA's time blocked, and its
# pooling block's (16 queries x 64 keys, 2 heads) 2.0-2.3x; its 14x14 windows (196 keys)
# 0.76-0.87x. sam2.1_hiera_t's bf16 trunk: 2.75 s blocked from 64 keys, the first two blocks'
# attention 0.37 s of it against 0.24 s with SDPA.
MIN_KEYS = 128

_state = {"blocked": True}


@contextlib.contextmanager
def blocked_attention(enabled: bool) -> Iterator[None]:
    """Within the block, `attention` uses the blocked path (True, the default) or always
    `F.scaled_dot_product_attention` (False: the reference for benchmarks and tests)."""
    old = _state["blocked"]
    _state["blocked"] = bool(enabled)
    try:
        yield
    finally:
        _state["blocked"] = old


def blocked_attention_enabled() -> bool:
    """Whether `attention` may take the blocked path (see `blocked_attention`)."""
    return _state["blocked"]


def _needs_plain_op(*tensors: Tensor | None) -> bool:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return True
    if torch.is_autocast_enabled("cpu"):
        return True
    return bool(
        torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    )


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (torch's own probe; False where torch has none)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if callable(probe) else False


def fast_path_allowed(*tensors: Tensor | None) -> bool:
    """Whether CPU-only rewrites may run on these tensors: enabled (`blocked_attention`), on the
    CPU, and no gradient, autocast, tracing, export or compilation in play."""
    first = next(t for t in tensors if t is not None)
    return _state["blocked"] and first.device.type == "cpu" and not _needs_plain_op(*tensors)


def use_blocked(q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None = None) -> bool:
    """Whether `attention(q, k, v, attn_bias)` takes the blocked path (rules: module docstring)."""
    if not fast_path_allowed(q, k, v, attn_bias):
        return False
    if not (q.dtype == k.dtype == v.dtype) or q.dim() != 4:
        return False
    if v.shape[-1] < q.shape[-1]:
        return q.dtype in (torch.float32, torch.bfloat16)
    return q.dtype == torch.bfloat16 and k.shape[-2] >= MIN_KEYS and not cpu_has_amx()


def attention(
    q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None = None, scale: float | None = None
) -> Tensor:
    """Scaled dot-product attention with an optional additive bias.

    Args:
        q: (B, nh, Tq, hs) queries.
        k: (B, nh, Tk, hs) keys.
        v: (B, nh, Tk, hv) values; hv may differ from hs.
        attn_bias: additive float bias broadcastable to (B, nh, Tq, Tk), in q's dtype.
        scale: score scale, default hs ** -0.5.

    Returns:
        (B, nh, Tq, hv) in q's dtype.

    Raises:
        ValueError: q, k, v not 4-D with matching batch, heads and key counts (blocked path;
            `F.scaled_dot_product_attention` raises its own errors otherwise).
    """
    if use_blocked(q, k, v, attn_bias):
        return _blocked(q, k, v, attn_bias, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=scale)


def _flat(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """x expanded to (B, nh, T, D) and flattened to (B*nh, T, D): a view when the strides allow
    (a broadcast of size-1 leading dims included), else a copy."""
    x = x.expand(shape)
    try:
        return x.view(-1, *shape[2:])
    except RuntimeError:
        return x.reshape(-1, *shape[2:])


def _blocked(
    q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor | None, scale: float | None
) -> Tensor:
    b, nh, tq, hs = q.shape
    if k.dim() != 4 or v.dim() != 4 or k.shape[-1] != hs or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention needs q (B, nh, Tq, hs), k (B, nh, Tk, hs), v (B, nh, Tk, hv); got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    tk, hv = k.shape[-2], v.shape[-1]
    scale = hs**-0.5 if scale is None else float(scale)
    q3 = _flat(q, (b, nh, tq, hs))
    k3 = _flat(k, (b, nh, tk, hs))
    v3 = _flat(v, (b, nh, tk, hv))
    if q.dtype == torch.bfloat16:  # centre the keys: same softmax, smaller bf16 scores
        kf = k3.float()
        k3 = (kf - kf.mean(dim=1, keepdim=True)).to(q.dtype)
    kt = k3.transpose(1, 2)  # (B*nh, hs, Tk)
    bias3 = None
    if attn_bias is not None:
        bias3 = _flat(attn_bias.to(q.dtype), (b, nh, tq, tk))
    bh = b * nh
    es = q.element_size()
    threads = max(1, torch.get_num_threads())
    budget = SCORE_BLOCK_BYTES * threads
    rows = max(min(tq, MIN_ROWS.get(q.dtype, 128) * threads), budget // (tk * es))
    heads = 1
    if rows >= tq:
        rows = tq
        heads = max(1, min(bh, budget // (tq * tk * es)))
    out = q.new_empty(bh, tq, hv)
    buf = q.new_empty(heads * rows * tk)
    for h0 in range(0, bh, heads):
        h1 = min(bh, h0 + heads)
        for r0 in range(0, tq, rows):
            r1 = min(tq, r0 + rows)
            s = buf[: (h1 - h0) * (r1 - r0) * tk].view(h1 - h0, r1 - r0, tk)
            if bias3 is None:
                torch.baddbmm(s, q3[h0:h1, r0:r1], kt[h0:h1], beta=0, alpha=scale, out=s)
            else:
                torch.baddbmm(bias3[h0:h1, r0:r1], q3[h0:h1, r0:r1], kt[h0:h1], alpha=scale, out=s)
            torch.ops.aten._softmax.out(s, -1, False, out=s)
            torch.bmm(s, v3[h0:h1], out=out[h0:h1, r0:r1])
    return out.view(b, nh, tq, hv)
