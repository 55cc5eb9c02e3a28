"""EfficientTAM's pooled memory cross-attention weighs its 64-wide values before projecting them.

pool(M W_v^T + b_v) = pool(M) W_v^T + b_v (a 2x2 mean: weights summing to 1) and
softmax(Q K^T + bias) (V W_v^T + b_v) = (softmax(...) V) W_v^T + b_v (rows summing to 1):
`EfficientRoPEAttention` runs the right-hand sides on the CPU without gradients and the
left-hand sides otherwise (`blocked_attention(False)`, training). These tests hold both to the
float64 result of the official order, for both official variants, with and without object
pointer tokens.
"""

from __future__ import annotations

import pytest
import torch

import samkit.modeling.efficienttam_attention as eta
from samkit.layers.attention_kernels import blocked_attention
from samkit.modeling.efficienttam_attention import EfficientRoPEAttention

BF16_REL_ERR = 1.5e-2  # as tests/layers/test_value_reassociation.py
DIM, KV_DIM, GRID, N_MEM = 64, 16, 4, 3


def _attn(variant: int, dtype: torch.dtype) -> EfficientRoPEAttention:
    torch.manual_seed(0)
    attn = EfficientRoPEAttention(
        DIM, 1, kv_in_dim=KV_DIM, rope_k_repeat=True, feat_sizes=(GRID, GRID), variant=variant
    )
    with torch.no_grad():
        attn.v_proj.bias.normal_()  # a bias that matters
    return attn.to(dtype)


def _inputs(n_ptr: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, GRID * GRID, DIM, generator=g)
    mem = torch.randn(2, N_MEM * GRID * GRID + n_ptr, KV_DIM, generator=g)
    return q, mem


def _run(attn: EfficientRoPEAttention, q, mem, n_ptr: int, late: bool) -> torch.Tensor:
    with blocked_attention(late), torch.no_grad():
        return attn(q, mem, mem, num_k_exclude_rope=n_ptr)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("n_ptr", [0, 4])
def test_late_values_equal_the_official_order_in_float64(
    variant: int, n_ptr: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    attn = _attn(variant, torch.float64)
    q, mem = (t.double() for t in _inputs(n_ptr))
    widths: list[int] = []
    sdpa = eta.sdpa

    def spy(q_, k_, v_, *a, **kw):
        widths.append(v_.shape[-1])
        return sdpa(q_, k_, v_, *a, **kw)

    monkeypatch.setattr(eta, "sdpa", spy)
    late = _run(attn, q, mem, n_ptr, late=True)
    official = _run(attn, q, mem, n_ptr, late=False)
    # the fast path multiplied the probabilities by the KV_DIM-wide values, the reference by DIM
    assert widths == [KV_DIM, DIM]
    torch.testing.assert_close(late, official, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_late_values_within_the_dtype_tolerance_of_float64(
    variant: int, dtype: torch.dtype
) -> None:
    q, mem = _inputs(4)
    ref = _run(_attn(variant, torch.float64), q.double(), mem.double(), 4, late=False)
    got = _run(_attn(variant, dtype), q.to(dtype), mem.to(dtype), 4, late=True).double()
    if dtype == torch.float32:
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    else:
        assert ((got - ref).norm() / ref.norm()).item() < BF16_REL_ERR


def test_training_keeps_the_official_order_and_its_gradients() -> None:
    attn = _attn(1, torch.float32)
    q, mem = _inputs(4)
    q.requires_grad_(True)
    out = attn(q, mem, mem, num_k_exclude_rope=4)  # gradients: the plain path
    out.square().sum().backward()
    assert attn.v_proj.weight.grad is not None and q.grad is not None
    torch.testing.assert_close(out.detach(), _run(attn, q.detach(), mem, 4, late=True))
