"""SAM 2's memory cross-attention weighs the 64-wide memory before projecting it (#21).

softmax(Q K^T) (M W_v^T + b_v) = (softmax(Q K^T) M) W_v^T + b_v, because every row of the
probabilities sums to 1: `RoPEAttention` runs the right-hand side on the CPU without gradients
(`attention_kernels.fast_path_allowed`) and the left-hand side otherwise. These tests hold both
sides to the float64 formula in float32 and bfloat16, with pointer tokens and with the memory
keys computed ahead (`MemoryKeys`), and check that training (gradients) gets the same numbers.
"""

from __future__ import annotations

import pytest
import torch

import samkit.layers.attention_kernels as ak
from samkit.layers.attention_kernels import blocked_attention
from samkit.layers.rope import RoPEAttention, rotate
from samkit.modeling.memory_keys import MemoryKeyCache, MemoryKeys

# bf16: norm of the error over the norm of the float64 result (tests/layers/test_attention_kernels)
BF16_REL_ERR = 1.5e-2
DIM, KV_DIM, GRID, N_MEM, N_PTR = 64, 16, 4, 3, 4


def _attn(dtype: torch.dtype, seed: int = 0) -> RoPEAttention:
    torch.manual_seed(seed)
    attn = RoPEAttention(DIM, 1, kv_in_dim=KV_DIM, rope_k_repeat=True, feat_sizes=(GRID, GRID))
    with torch.no_grad():
        attn.v_proj.bias.normal_()  # a bias that matters: P (M W^T + b) needs rows summing to 1
    return attn.to(dtype)


def _inputs(dtype: torch.dtype, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n = GRID * GRID
    q = torch.randn(2, n, DIM, generator=g)
    mem = torch.randn(2, N_MEM * n + N_PTR, KV_DIM, generator=g)
    pos = torch.randn(2, N_MEM * n + N_PTR, KV_DIM, generator=g)
    return q.to(dtype), mem.to(dtype), pos.to(dtype)


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def _float64_reference(attn: RoPEAttention, q, mem, pos) -> torch.Tensor:
    ref = _attn(torch.float64)
    ref.load_state_dict({k: v.double() for k, v in attn.state_dict().items()})
    with torch.no_grad(), blocked_attention(False):
        return ref(q.double(), (mem + pos).double(), mem.double(), num_k_exclude_rope=N_PTR)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_late_values_match_projected_values(dtype):
    attn = _attn(dtype)
    q, mem, pos = _inputs(dtype)
    with torch.no_grad():
        assert ak.fast_path_allowed(q, mem, mem, attn.v_proj.weight)
        out = attn(q, mem + pos, mem, num_k_exclude_rope=N_PTR)  # values weighed, then projected
        with blocked_attention(False):  # values projected first, F.scaled_dot_product_attention
            sdpa = attn(q, mem + pos, mem, num_k_exclude_rope=N_PTR)
    ref = _float64_reference(attn, q, mem, pos)
    if dtype == torch.float32:
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, sdpa, rtol=1e-5, atol=1e-5)
    else:
        assert _rel_err(out, ref) < BF16_REL_ERR
        assert _rel_err(sdpa, ref) < BF16_REL_ERR


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_late_values_with_memory_keys_computed_ahead(dtype):
    """The video path: keys from `MemoryKeys` (kept parts + each slot's temporal offset), values
    the raw memory."""
    attn = _attn(dtype)
    q, mem, pos = _inputs(dtype)
    n = GRID * GRID
    g = torch.Generator().manual_seed(2)
    tpos = [torch.randn(KV_DIM, generator=g).to(dtype) for _ in range(N_MEM)]
    as_maps = [
        mem[:, f * n : (f + 1) * n].transpose(1, 2).reshape(2, KV_DIM, GRID, GRID)
        for f in range(N_MEM)
    ]
    pos_maps = [
        pos[:, f * n : (f + 1) * n].transpose(1, 2).reshape(2, KV_DIM, GRID, GRID)
        for f in range(N_MEM)
    ]
    slots = [(tpos[f], as_maps[f], pos_maps[f]) for f in range(N_MEM)]
    full_pos = pos.clone()
    for f in range(N_MEM):
        full_pos[:, f * n : (f + 1) * n] += tpos[f]
    with torch.no_grad():
        keys = MemoryKeys(MemoryKeyCache(), [attn], slots, N_PTR, dtype)[0]
        ptr = mem[:, -N_PTR:] + full_pos[:, -N_PTR:]
        out = attn(q, ptr, mem, num_k_exclude_rope=N_PTR, memory_keys=keys)
    ref = _float64_reference(attn, q, mem, full_pos)
    if dtype == torch.float32:
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    else:
        assert _rel_err(out, ref) < BF16_REL_ERR


def test_gradients_equal_those_of_the_reassociated_formula():
    """Training runs the projection first (`forward` keeps gradients); its output and gradients
    equal those of (P M) W_v^T + b_v written out in float64."""
    attn = _attn(torch.float64)
    q, mem, pos = (t.double().requires_grad_(True) for t in _inputs(torch.float32))
    out = attn(q, mem + pos, mem, num_k_exclude_rope=N_PTR)
    assert out.requires_grad
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = [q.grad, mem.grad, attn.v_proj.weight.grad, attn.k_proj.weight.grad]

    attn2 = _attn(torch.float64)
    q2, mem2, pos2 = (t.detach().clone().requires_grad_(True) for t in (q, mem, pos))
    qq = attn2._separate_heads(attn2.q_proj(q2))
    kk = attn2._separate_heads(attn2.k_proj(mem2 + pos2))
    n_rope = kk.shape[-2] - N_PTR
    cos2, sin2 = attn2.rope_tables(qq.shape[-2], qq.device)
    qq = rotate(qq, cos2, sin2)
    kk = torch.cat([rotate(kk[:, :, :n_rope], cos2, sin2), kk[:, :, n_rope:]], dim=2)
    p = torch.softmax(qq @ kk.transpose(-1, -2) * DIM**-0.5, dim=-1)  # (B, 1, Nq, Nk)
    late = (p @ mem2.unsqueeze(1)) @ attn2.v_proj.weight.T + attn2.v_proj.bias
    out2 = attn2.out_proj(late.squeeze(1))
    (out2 * torch.linspace(-1, 1, out2.numel(), dtype=out2.dtype).view_as(out2)).sum().backward()
    torch.testing.assert_close(out, out2, rtol=1e-10, atol=1e-10)
    grads2 = [q2.grad, mem2.grad, attn2.v_proj.weight.grad, attn2.k_proj.weight.grad]
    for a, b in zip(grads, grads2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
