"""Decomposed relative-position attention (SAM 1 ViT / MViTv2), as an additive SDPA bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.layers.attention import sdpa

# Upper bound on the bytes of one materialised bias chunk (B x nh x rows x Tk floats).
BIAS_CHUNK_BYTES = 64 * 2**20
# "auto" folds the relative-position term into q/k when the key grid has at least this many
# tokens (SAM's 64x64 global blocks) and uses a chunked bias for windows.
FOLD_MIN_KEYS = 1024
FOLD_DEFAULT = "fold"


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
    method: str = "auto",
    bias_chunk_bytes: int = BIAS_CHUNK_BYTES,
) -> Tensor:
    """Attention with the decomposed relative-position term (MViTv2 / SAM 1 ViT).

    scores[q, k] = q.k / sqrt(hs) + rel_h[q, row(k)] + rel_w[q, col(k)], with
    rel_h[q, r] = q . Rh[row(q), r] and rel_w[q, c] = q . Rw[col(q), c] (q unscaled).

    Two exact ways to hand this to `F.scaled_dot_product_attention`:
    - "bias": the term as an additive `attn_mask`, materialised for a chunk of query rows at a
      time (at most `bias_chunk_bytes`), so a 64x64 global block never holds the full bias.
    - "fold": the term folded into the dot product, q' = [q / sqrt(hs), rel_h, rel_w] and
      k' = [k, onehot(row(k)), onehot(col(k))], so q'.k' is the biased score and SDPA runs without
      a mask (v is zero-padded to q''s width, which SDPA's fast CPU kernel needs). No bias is
      materialised at all; it costs more attention FLOPs but avoids streaming the bias.
    "auto" picks "fold" for large key grids (global attention) and "bias" for windows.

    Args:
        q, k, v: (B, nh, T, hs) with T = H * W in row-major order.
        rel_pos_h, rel_pos_w: relative-position tables for the height and width axes.
        q_hw, k_hw: the query and key grids (H, W).
        method: "auto", "bias" or "fold".

    Returns:
        (B, nh, Tq, hs).
    """
    (qh, qw), (kh, kw) = q_hw, k_hw
    b, nh, _tq, hs = q.shape
    if method == "auto":
        method = FOLD_DEFAULT if kh * kw >= FOLD_MIN_KEYS else "bias"
    if method not in ("bias", "fold"):
        raise ValueError(f"method must be 'auto', 'bias' or 'fold', got {method!r}")
    rh = get_rel_pos(qh, kh, rel_pos_h).to(q.dtype)  # (qh, kh, hs)
    rw = get_rel_pos(qw, kw, rel_pos_w).to(q.dtype)  # (qw, kw, hs)
    r_q = q.reshape(b, nh, qh, qw, hs)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # (B, nh, qh, qw, kh)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # (B, nh, qh, qw, kw)
    if method == "fold":
        return _folded_attention(q, k, v, rel_h, rel_w, kh, kw)

    row_bytes = b * nh * qw * kh * kw * q.element_size()
    rows = max(1, min(qh, bias_chunk_bytes // max(row_bytes, 1)))
    outs = []
    for r0 in range(0, qh, rows):
        r1 = min(qh, r0 + rows)
        bias = rel_h[:, :, r0:r1, :, :, None] + rel_w[:, :, r0:r1, :, None, :]
        bias = bias.reshape(b, nh, (r1 - r0) * qw, kh * kw)  # (B, nh, rows*qw, Tk)
        outs.append(sdpa(q[:, :, r0 * qw : r1 * qw], k, v, bias))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _folded_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor, kh: int, kw: int
) -> Tensor:
    """SDPA on q' = [q/sqrt(hs), rel_h, rel_w], k' = [k, onehot rows, onehot cols], no mask."""
    b, nh, tq, hs = q.shape
    tk = k.shape[2]
    eye_h = torch.eye(kh, dtype=q.dtype, device=q.device)
    eye_w = torch.eye(kw, dtype=q.dtype, device=q.device)
    onehot = torch.cat(
        [eye_h.repeat_interleave(kw, dim=0), eye_w.repeat(kh, 1)], dim=1
    )  # (Tk, kh + kw): key k -> its row and column indicators
    q_f = torch.cat(
        [q * hs**-0.5, rel_h.reshape(b, nh, tq, kh), rel_w.reshape(b, nh, tq, kw)], dim=-1
    )  # (B, nh, Tq, hs + kh + kw)
    k_f = torch.cat([k, onehot.expand(b, nh, tk, kh + kw)], dim=-1)
    v_f = F.pad(v, (0, kh + kw))
    return F.scaled_dot_product_attention(q_f, k_f, v_f, scale=1.0)[..., :hs]
