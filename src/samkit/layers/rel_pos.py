"""Decomposed relative-position attention (SAM 1 ViT / MViTv2), as an additive SDPA bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.layers.attention import sdpa

# Upper bound on the bytes of the bias buffer (one chunk of heads x query rows x keys).
BIAS_CHUNK_BYTES = 64 * 2**20


def get_rel_pos(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """Relative positional embeddings for every (query, key) pair along one axis.

    Args:
        q_size: query length along the axis.
        k_size: key length along the axis.
        rel_pos: Lx C table; linearly interpolated when L != 2 * max(q_size, k_size) - 1.

    Returns:
        q_size x k_size x C embeddings.
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1),
            size=max_rel_dist,
            mode="linear",
        )
        rel_pos = resized.reshape(-1, max_rel_dist).permute(1, 0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative_coords.long()]


def rel_pos_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_pos_h: Tensor,
    rel_pos_w: Tensor,
    q_hw: tuple[int, int],
    k_hw: tuple[int, int],
    bias_chunk_bytes: int = BIAS_CHUNK_BYTES,
) -> Tensor:
    """Attention with the decomposed relative-position term (MViTv2 / SAM 1 ViT) as SDPA's mask.

    scores[q, k] = q.k / sqrt(hs) + rel_h[q, row(k)] + rel_w[q, col(k)], with
    rel_h[q, r] = q . Rh[row(q), r] and rel_w[q, c] = q . Rw[col(q), c] (q unscaled).

    The additive bias is built into one reused buffer of at most `bias_chunk_bytes`, a chunk of
    heads at a time (query rows too when a single head does not fit), and handed to
    `F.scaled_dot_product_attention` as `attn_mask`. A 64x64 global block thus holds one head's
    4096 x 4096 bias (64 MiB) instead of all heads' (0.8 GiB for vit_b), and reusing the buffer
    avoids the page faults of a fresh large allocation per chunk.

    Args:
        q, k, v: (B, nh, T, hs) with T = H * W in row-major order.
        rel_pos_h, rel_pos_w: relative-position tables for the height and width axes.
        q_hw, k_hw: the query and key grids (H, W).
        bias_chunk_bytes: budget for the bias buffer.

    Returns:
        (B, nh, Tq, hs).
    """
    (qh, qw), (kh, kw) = q_hw, k_hw
    b, nh, tq, hs = q.shape
    tk = k.shape[2]
    rh = get_rel_pos(qh, kh, rel_pos_h).to(q.dtype)  # (qh, kh, hs)
    rw = get_rel_pos(qw, kw, rel_pos_w).to(q.dtype)  # (qw, kw, hs)
    r_q = q.reshape(b, nh, qh, qw, hs)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # (B, nh, qh, qw, kh)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # (B, nh, qh, qw, kw)

    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (q, k, v, rel_pos_h, rel_pos_w)
    )
    tracing = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
    if needs_grad or tracing or torch.compiler.is_compiling():
        # Autograd, exporters and compilers get the plain form (no `out=` buffers): one
        # broadcast add, one SDPA; a compiler fuses the add itself.
        bias = (rel_h[..., None] + rel_w[..., None, :]).reshape(b, nh, tq, tk)
        return sdpa(q, k, v, bias)

    head_bytes = b * tq * tk * q.element_size()
    heads = max(1, min(nh, bias_chunk_bytes // max(head_bytes, 1)))
    rows = (
        qh
        if heads > 1 or head_bytes <= bias_chunk_bytes
        else max(1, bias_chunk_bytes // max(head_bytes // qh, 1))
    )
    if heads == nh and rows == qh:  # everything fits: one bias, one SDPA call
        bias = q.new_empty(b, nh, qh, qw, kh, kw)
        torch.add(rel_h[..., None], rel_w[..., None, :], out=bias)
        return sdpa(q, k, v, bias.view(b, nh, tq, tk))

    out = torch.empty(b, nh, tq, v.shape[-1], dtype=q.dtype, device=q.device)
    buf = torch.empty(b * heads * rows * qw * tk, dtype=q.dtype, device=q.device)
    for h0 in range(0, nh, heads):
        h1 = min(nh, h0 + heads)
        for r0 in range(0, qh, rows):
            r1 = min(qh, r0 + rows)
            n = b * (h1 - h0) * (r1 - r0) * qw * tk
            bias = buf[:n].view(b, h1 - h0, r1 - r0, qw, kh, kw)
            torch.add(
                rel_h[:, h0:h1, r0:r1, :, :, None], rel_w[:, h0:h1, r0:r1, :, None, :], out=bias
            )
            rows_q = slice(r0 * qw, r1 * qw)
            out[:, h0:h1, rows_q] = sdpa(
                q[:, h0:h1, rows_q],
                k[:, h0:h1],
                v[:, h0:h1],
                bias.view(b, h1 - h0, (r1 - r0) * qw, tk),
            )
    return out
