"""2-D axial RoPE against the official complex-number formulation (`compute_axial_cis` /
`apply_rotary_enc` of sam2 1.1.0, written out here with torch.polar)."""

from __future__ import annotations

import pytest
import torch

from samkit.layers.attention import reference_attention
from samkit.layers.rope import (
    RoPEAttention,
    apply_rope,
    axial_rope_tables,
    interleave_tables,
    rotate,
)


def _complex_reference(x: torch.Tensor, side: int, theta: float = 10000.0) -> torch.Tensor:
    """x (B, nh, r * side^2, D) rotated as the official code does: complex multiplication."""
    d = x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, d, 4)[: d // 4].float() / d))
    t = torch.arange(side * side, dtype=torch.float32)
    fx = torch.outer(t % side, freqs)
    fy = torch.outer(torch.div(t, side, rounding_mode="floor"), freqs)
    cis = torch.cat(
        [torch.polar(torch.ones_like(fx), fx), torch.polar(torch.ones_like(fy), fy)], -1
    )
    r = x.shape[-2] // (side * side)
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2))
    out = torch.view_as_real(xc * cis.repeat(r, 1)).flatten(-2)
    return out.to(x.dtype)


@pytest.mark.parametrize("repeats", [1, 3])
def test_rotation_equals_the_complex_product(repeats: int) -> None:
    side, d = 8, 32
    x = torch.randn(2, 1, repeats * side * side, d, generator=torch.Generator().manual_seed(0))
    ref = _complex_reference(x, side)
    cos, sin = axial_rope_tables(d, side, side)
    torch.testing.assert_close(apply_rope(x, cos, sin), ref, rtol=0, atol=2e-6)
    out = torch.full_like(x, float("nan"))
    rotate(x, *interleave_tables(cos, sin), out=out)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)
    # bfloat16 input: computed in float32, one rounding at the end
    xb = x.bfloat16()
    torch.testing.assert_close(
        apply_rope(xb, cos, sin).float(), _complex_reference(xb.float(), side), rtol=1e-2, atol=1e-2
    )


def test_rope_attention_leaves_excluded_keys_unrotated() -> None:
    torch.manual_seed(0)
    side, c, n_ptr = 4, 16, 3
    attn = RoPEAttention(c, 1, kv_in_dim=8, rope_k_repeat=True, feat_sizes=(side, side)).eval()
    q = torch.randn(1, side * side, c)
    mem = torch.randn(1, 2 * side * side + n_ptr, 8)
    with torch.no_grad():
        got = attn(q, mem, mem, num_k_exclude_rope=n_ptr)
        qp = _complex_reference(attn.q_proj(q)[:, None], side)
        kp = attn.k_proj(mem)[:, None]
        kp = torch.cat([_complex_reference(kp[:, :, :-n_ptr], side), kp[:, :, -n_ptr:]], dim=2)
        ref = attn.out_proj(reference_attention(qp, kp, attn.v_proj(mem)[:, None])[:, 0])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
