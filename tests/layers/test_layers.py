"""Unit tests of the shared layers against plain reference formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samkit.layers import LayerNorm2d, PositionEmbeddingRandom, get_rel_pos, rel_pos_attention
from samkit.layers.attention import reference_attention
from samkit.layers.window import window_partition, window_unpartition


def _reference_rel_pos_bias(q, rph, rpw, hw):
    h, w = hw
    b, nh, t, _hs = q.shape
    rh, rw = get_rel_pos(h, h, rph), get_rel_pos(w, w, rpw)
    bias = torch.zeros(b, nh, h, w, h, w, dtype=q.dtype)
    for qi in range(h):
        for qj in range(w):
            qv = q[:, :, qi * w + qj]  # (B, nh, hs)
            bias[:, :, qi, qj] += (qv @ rh[qi].T)[..., :, None]  # rows of keys
            bias[:, :, qi, qj] += (qv @ rw[qj].T)[..., None, :]  # columns of keys
    return bias.reshape(b, nh, t, t)


@pytest.mark.parametrize("budget", [1, 2**12, 2**30])
@pytest.mark.parametrize("hw", [(4, 4), (3, 5)])
def test_rel_pos_attention_matches_explicit_bias(budget, hw):
    torch.manual_seed(0)
    b, nh, hs = 2, 3, 8
    t = hw[0] * hw[1]
    q, k, v = (torch.randn(b, nh, t, hs, dtype=torch.float64) for _ in range(3))
    rph = torch.randn(2 * hw[0] - 1, hs, dtype=torch.float64)
    rpw = torch.randn(2 * hw[1] - 1, hs, dtype=torch.float64)
    ref = reference_attention(q, k, v, _reference_rel_pos_bias(q, rph, rpw, hw))
    out = rel_pos_attention(q, k, v, rph, rpw, hw, hw, bias_chunk_bytes=budget)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_get_rel_pos_same_size_indexing():
    table = torch.arange(7.0)[:, None]  # 2 * 4 - 1 entries
    rel = get_rel_pos(4, 4, table)[..., 0]
    expected = torch.tensor(
        [[3, 2, 1, 0], [4, 3, 2, 1], [5, 4, 3, 2], [6, 5, 4, 3]], dtype=torch.float
    )
    torch.testing.assert_close(rel, expected)


def test_get_rel_pos_interpolates_when_sizes_differ():
    table = torch.randn(27, 4)  # trained for 14x14 windows, used at 16
    rel = get_rel_pos(16, 16, table)
    resized = F.interpolate(table.T[None], size=31, mode="linear")[0].T
    idx = torch.arange(16)[:, None] - torch.arange(16)[None, :] + 15
    torch.testing.assert_close(rel, resized[idx])


def test_get_rel_pos_different_q_and_k_sizes():
    table = torch.randn(2 * 8 - 1, 2)
    rel = get_rel_pos(4, 8, table)
    assert rel.shape == (4, 8, 2)
    # q coordinates are stretched by k/q = 2: q=1 vs k=2 is relative distance 0 -> centre entry
    torch.testing.assert_close(rel[1, 2], table[7])


@pytest.mark.parametrize(("h", "w", "ws"), [(14, 14, 7), (10, 13, 4), (5, 5, 8)])
def test_window_partition_round_trip(h, w, ws):
    x = torch.randn(2, h, w, 3)
    windows, pad_hw = window_partition(x, ws)
    assert pad_hw == (-(-h // ws) * ws, -(-w // ws) * ws)
    assert windows.shape == (2 * pad_hw[0] * pad_hw[1] // ws**2, ws, ws, 3)
    torch.testing.assert_close(
        windows[0], F.pad(x, (0, 0, 0, pad_hw[1] - w, 0, pad_hw[0] - h))[0, :ws, :ws]
    )
    torch.testing.assert_close(window_unpartition(windows, ws, pad_hw, (h, w)), x)


def test_layernorm2d_matches_layernorm_over_channels():
    x = torch.randn(2, 6, 5, 4)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-6).permute(
        0, 3, 1, 2
    )
    torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)


def test_random_position_embedding_dense_and_coords_agree():
    pe = PositionEmbeddingRandom(8)
    dense = pe((4, 6))  # C x H x W at pixel centres
    assert dense.shape == (16, 4, 6)
    # the centre of grid cell (row 1, col 2) in a 4x6 "image" is (x=2.5, y=1.5)
    pt = pe.forward_with_coords(torch.tensor([[[2.5, 1.5]]]), (4, 6))
    torch.testing.assert_close(pt[0, 0], dense[:, 1, 2])


def test_rel_pos_attention_gradients_match_reference():
    torch.manual_seed(0)
    hw, hs = (3, 4), 4
    t = hw[0] * hw[1]
    q, k, v = (torch.randn(1, 2, t, hs, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rph = torch.randn(5, hs, dtype=torch.float64, requires_grad=True)
    rpw = torch.randn(7, hs, dtype=torch.float64, requires_grad=True)
    out = rel_pos_attention(q, k, v, rph, rpw, hw, hw, bias_chunk_bytes=1)
    ref = reference_attention(q, k, v, _reference_rel_pos_bias(q, rph, rpw, hw))
    grads = torch.autograd.grad(out.sum(), (q, k, v, rph, rpw))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v, rph, rpw))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_keys", [7, 300])  # the small-key matmul path and the SDPA path
def test_two_way_attention_broadcasts_a_shared_side(n_keys):
    from samkit.layers import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4, downsample_rate=2).double()
    q = torch.randn(5, 11, 32, dtype=torch.float64)
    kv = torch.randn(1, n_keys, 32, dtype=torch.float64)
    shared = attn(q, kv, kv)
    expanded = attn(q, kv.expand(5, -1, -1), kv.expand(5, -1, -1))
    torch.testing.assert_close(shared, expanded, rtol=1e-12, atol=1e-12)
    # against the plain formula
    qh = attn.q_proj(q).reshape(5, 11, 4, 4).transpose(1, 2)
    kh = attn.k_proj(kv).reshape(1, n_keys, 4, 4).transpose(1, 2).expand(5, -1, -1, -1)
    vh = attn.v_proj(kv).reshape(1, n_keys, 4, 4).transpose(1, 2).expand(5, -1, -1, -1)
    ref = attn.out_proj(reference_attention(qh, kh, vh).transpose(1, 2).reshape(5, 11, 16))
    torch.testing.assert_close(shared, ref, rtol=1e-10, atol=1e-10)
    # and the other way round: one query side, many key sides
    torch.testing.assert_close(
        attn(kv, q, q), attn(kv.expand(5, -1, -1), q, q), rtol=1e-12, atol=1e-12
    )
