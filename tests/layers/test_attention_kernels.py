"""`samkit.layers.attention_kernels.attention` against the plain formula in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import samkit.layers.attention_kernels as ak
from samkit.layers.attention import reference_attention
from samkit.layers.attention_kernels import attention, blocked_attention, use_blocked
from samkit.layers.rope import RoPEAttention

# bf16 tolerance (README "Backends agree" bf16 rows rest on it): the norm of the error relative
# to the norm of the float64 result. bf16 inputs give about 2e-3 through SDPA and 5e-3 here
# (the scores are rounded to bf16 before the float32 softmax).
BF16_REL_ERR = 1.5e-2


def _qkv(b, nh, tq, tk, hs, hv, dtype, k_offset=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, nh, tq, hs, generator=g)
    k = torch.randn(b, nh, tk, hs, generator=g) + k_offset  # a common key component
    v = torch.randn(b, nh, tk, hv, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _ref(q, k, v, bias=None):
    return reference_attention(
        q.double(), k.double(), v.double(), None if bias is None else bias.double()
    )


def _rel_err(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


@pytest.fixture(autouse=True)
def no_amx(monkeypatch):
    """The rules of a CPU without AMX (this project's AMD machine) on every machine."""
    monkeypatch.setattr(ak, "cpu_has_amx", lambda: False)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows / heads, so the tests cross row and head block edges."""
    monkeypatch.setattr(ak, "SCORE_BLOCK_BYTES", 4096)
    monkeypatch.setattr(ak, "MIN_ROWS", {torch.float32: 7, torch.bfloat16: 5})
    monkeypatch.setattr(ak, "MIN_KEYS", 1)


@pytest.mark.parametrize("shape", [(2, 3, 37, 129, 16, 8), (1, 1, 300, 141, 32, 8)])
def test_float32_narrow_values_match_reference(shape, small_blocks):
    b, nh, tq, tk, hs, hv = shape
    q, k, v = _qkv(b, nh, tq, tk, hs, hv, torch.float32)
    assert use_blocked(q, k, v)
    torch.testing.assert_close(attention(q, k, v), _ref(q, k, v).float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape", [(2, 3, 37, 129, 16, 16), (1, 2, 300, 141, 64, 64), (3, 1, 5, 3, 8, 4)]
)
def test_bfloat16_matches_reference_within_tolerance(shape, small_blocks):
    b, nh, tq, tk, hs, hv = shape
    q, k, v = _qkv(b, nh, tq, tk, hs, hv, torch.bfloat16)
    assert use_blocked(q, k, v)
    out = attention(q, k, v)
    assert out.dtype == torch.bfloat16 and out.shape == (b, nh, tq, hv)
    assert _rel_err(out, _ref(q, k, v)) < BF16_REL_ERR


def test_bfloat16_default_blocks_match_reference():
    q, k, v = _qkv(1, 2, 600, 700, 64, 64, torch.bfloat16)
    assert use_blocked(q, k, v)
    ref = _ref(q, k, v)
    err = _rel_err(attention(q, k, v), ref)
    sdpa_err = _rel_err(F.scaled_dot_product_attention(q, k, v), ref)
    assert err < BF16_REL_ERR
    assert err < 4 * sdpa_err  # the documented cost of bf16 scores: a few times SDPA's error


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias_shape", ["full", "shared", "per_batch"])
def test_additive_bias(dtype, bias_shape, small_blocks):
    b, nh, tq, tk = 2, 3, 33, 40
    hv = 8 if dtype == torch.float32 else 16  # fp32 takes the blocked path with narrow values
    q, k, v = _qkv(b, nh, tq, tk, 16, hv, dtype)
    shape = {"full": (b, nh, tq, tk), "shared": (1, 1, tq, tk), "per_batch": (b, 1, tq, tk)}
    bias = (torch.randn(shape[bias_shape]) * 2).to(dtype)
    assert use_blocked(q, k, v, bias)
    out, ref = attention(q, k, v, bias), _ref(q, k, v, bias)
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-6)
    else:
        assert _rel_err(out, ref) < BF16_REL_ERR


def test_masked_keys_get_no_weight(small_blocks):
    q, k, v = _qkv(1, 2, 20, 30, 16, 8, torch.float32)
    bias = torch.zeros(1, 1, 20, 30)
    bias[..., 10:] = float("-inf")
    out = attention(q, k, v, bias)
    torch.testing.assert_close(out, _ref(q[:, :, :, :], k[:, :, :10], v[:, :, :10]).float())


def test_broadcast_key_batch_and_scale(small_blocks):
    q, k, v = _qkv(3, 2, 17, 150, 16, 16, torch.bfloat16)
    k1, v1 = k[:1], v[:1]
    out = attention(q, k1, v1, scale=0.3)
    ref = reference_attention(
        q.double() * (0.3 * 16**0.5),
        k1.double().expand(3, -1, -1, -1),
        v1.double().expand(3, -1, -1, -1),
    )
    assert _rel_err(out, ref) < BF16_REL_ERR


def test_strided_inputs_as_hiera_passes_them():
    """(B, T, nh, hs) projections transposed to (B, nh, T, hs) views, as in Hiera and ViT."""
    x = torch.randn(2, 300, 3, 3, 32).to(torch.bfloat16)  # (B, T, 3, nh, hs)
    q, k, v = (t.transpose(1, 2) for t in x.unbind(2))
    assert not q.is_contiguous()
    assert _rel_err(attention(q, k, v), _ref(q, k, v)) < BF16_REL_ERR


def test_plain_op_when_gradients_are_needed():
    q, k, v = _qkv(1, 2, 50, 140, 16, 8, torch.float32)
    q.requires_grad_(True)
    assert not use_blocked(q, k, v)
    out = attention(q, k, v)
    out.square().sum().backward()
    q2 = q.detach().double().requires_grad_(True)
    reference_attention(q2, k.double(), v.double()).square().sum().backward()
    torch.testing.assert_close(q.grad, q2.grad.float(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert use_blocked(q, k, v)


def test_dispatch_rules():
    q, k, v = _qkv(1, 1, 64, 256, 32, 32, torch.float32)
    assert not use_blocked(q, k, v)  # fp32, equal widths: PyTorch's flash kernel
    assert use_blocked(q, k, v[..., :8])  # fp32, narrow values
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    assert use_blocked(qb, kb, vb)
    assert not use_blocked(qb, kb[:, :, :32], vb[:, :, :32])  # few keys: SDPA
    with blocked_attention(False):
        assert not use_blocked(qb, kb, vb)
        torch.testing.assert_close(
            attention(qb, kb, vb), F.scaled_dot_product_attention(qb, kb, vb)
        )
    assert use_blocked(qb, kb, vb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_blocked(qb, kb, vb)


def test_amx_cpus_keep_the_flash_kernel_for_equal_widths(monkeypatch):
    monkeypatch.setattr(ak, "cpu_has_amx", lambda: True)
    q, k, v = _qkv(1, 1, 64, 256, 32, 32, torch.bfloat16)
    assert not use_blocked(q, k, v)
    assert use_blocked(q, k, v[..., :8])  # narrow values: the flash kernel cannot take them


def test_bad_shapes_raise_value_error():
    q, k, v = _qkv(1, 1, 8, 140, 16, 16, torch.bfloat16)
    with pytest.raises(ValueError, match="attention needs q"):
        attention(q, k[..., :8], v)
    with pytest.raises(ValueError, match="attention needs q"):
        attention(q, k, v[:, :, :100])


@pytest.mark.parametrize(("dim", "heads", "kv_dim"), [(256, 1, 64), (64, 2, 16)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rope_attention_projects_narrow_values_after_weighing(dim, heads, kv_dim, dtype):
    """SAM 2's memory cross-attention: P (V W^T + b) = (P V) W^T + b, with pointer tokens."""
    torch.manual_seed(0)
    attn = RoPEAttention(dim, heads, kv_in_dim=kv_dim, rope_k_repeat=True, feat_sizes=(4, 4))
    attn = attn.to(dtype)
    q = torch.randn(2, 16, dim, dtype=dtype)
    k, v = torch.randn(2, 2 * 16 + 4, kv_dim, dtype=dtype), torch.randn(2, 36, kv_dim, dtype=dtype)
    with torch.no_grad():
        out = attn(q, k, v, num_k_exclude_rope=4)
        with blocked_attention(False):
            ref = attn(q, k, v, num_k_exclude_rope=4)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    out.sum()  # gradients: the projection runs first, as before
    assert attn(q, k, v, num_k_exclude_rope=4).requires_grad
