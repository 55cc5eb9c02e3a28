"""`linear_act`: the oneDNN Linear + activation runs where it changes only the time, and equals
`act(linear(x))` within float32 / bfloat16 rounding; everywhere else the plain modules run."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from samkit.layers.attention_kernels import blocked_attention
from samkit.layers.fused_linear import fused_linear, fused_linear_available, linear_act
from samkit.layers.mlp import MLP, MLPBlock

FUSED_OP = "mkldnn::_linear_pointwise"
TOL = {torch.float32: (2e-6, 1e-5), torch.bfloat16: (2e-2, 2e-2)}

pytestmark = pytest.mark.skipif(
    not fused_linear_available(), reason="torch built without oneDNN (the fused op is x86 only)"
)


def _ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def _layer(dtype: torch.dtype, n_in: int = 48, n_out: int = 160, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, n_out, bias=bias).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "act", [nn.GELU(), nn.GELU(approximate="tanh"), nn.ReLU()], ids=["gelu", "gelu_tanh", "relu"]
)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_equals_plain_and_runs_the_fused_op(
    dtype: torch.dtype, act: nn.Module, bias: bool
) -> None:
    lin = _layer(dtype, bias=bias)
    x = torch.randn(2, 7, 9, 48).to(dtype)  # (B, H, W, C): any leading dims
    with torch.inference_mode():
        plain = act(lin(x))
        got = linear_act(x, lin, act)
        ops = _ops(lambda: linear_act(x, lin, act))
    assert FUSED_OP in ops
    assert got.shape == plain.shape == (2, 7, 9, 160) and got.dtype == dtype
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got, plain, atol=atol, rtol=rtol)
    if dtype == torch.bfloat16:  # no further from the float64 result than the plain path
        exact = act(lin.double()(x.double()))
        assert (got.double() - exact).abs().max() <= 1.5 * (plain.double() - exact).abs().max()


def test_non_contiguous_and_empty_inputs() -> None:
    lin, act = _layer(torch.float32), nn.GELU()
    x = torch.randn(3, 48, 5).transpose(1, 2)
    with torch.inference_mode():
        torch.testing.assert_close(linear_act(x, lin, act), act(lin(x)))
        assert linear_act(x[:0], lin, act).shape == (0, 5, 160)


def test_gradients_take_the_plain_modules() -> None:
    lin, act = _layer(torch.float32), nn.GELU()
    x = torch.randn(4, 48, requires_grad=True)
    ops = _ops(lambda: linear_act(x, lin, act))
    assert FUSED_OP not in ops
    out = linear_act(x, lin, act)
    out.sum().backward()
    expected = torch.autograd.grad(act(lin(x)).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_relu_fallback_keeps_the_input_and_gradients() -> None:
    lin, act = _layer(torch.float32), nn.ReLU()
    x = torch.randn(4, 48)
    with torch.inference_mode(), fused_linear(False):  # plain modules, ReLU in place
        before = x.clone()
        got = linear_act(x, lin, act)
    torch.testing.assert_close(x, before)
    torch.testing.assert_close(got, act(lin(x)))
    xg = x.clone().requires_grad_(True)
    linear_act(xg, lin, act).sum().backward()
    torch.testing.assert_close(xg.grad, torch.autograd.grad(act(lin(xg)).sum(), xg)[0])


class _Scaled(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


@pytest.mark.parametrize(
    "case",
    [
        "subclass",
        "silu",
        "linear_hook",
        "act_hook",
        "autocast",
        "dtype_mismatch",
        "off",
        "fast_paths_off",
    ],
)
def test_everything_else_runs_the_modules(case: str) -> None:
    lin, act = _layer(torch.float32), nn.GELU()
    x = torch.randn(4, 48)
    seen: list[str] = []
    if case == "subclass":
        lin = _Scaled(48, 160)
    elif case == "silu":
        act = nn.SiLU()
    elif case == "linear_hook":
        lin.register_forward_hook(lambda *_: seen.append("linear"))
    elif case == "act_hook":
        act.register_forward_hook(lambda *_: seen.append("act"))
    elif case == "dtype_mismatch":
        x = x.double()
        lin = lin.double().float()  # weights float32, input float64: torch's own error below
    with torch.inference_mode():
        ctx = {
            "autocast": torch.autocast("cpu", torch.bfloat16),
            "off": fused_linear(False),
            "fast_paths_off": blocked_attention(False),
        }.get(case, contextlib.nullcontext())
        with ctx:
            if case == "dtype_mismatch":
                with pytest.raises(RuntimeError):
                    linear_act(x, lin, act)
                return
            ops = _ops(lambda: linear_act(x, lin, act))
            got = linear_act(x, lin, act)
            expected = act(lin(x))
    assert FUSED_OP not in ops
    torch.testing.assert_close(got, expected)
    if case.endswith("hook"):
        assert seen, "the module's hook must still run"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int8_quantised_linear_runs_its_own_kernel() -> None:
    lin = _layer(torch.float32)
    q = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, torch.qint8)[0]
    x = torch.randn(4, 48)
    with torch.inference_mode():
        assert FUSED_OP not in _ops(lambda: linear_act(x, q, nn.GELU()))
        torch.testing.assert_close(linear_act(x, q, nn.GELU()), nn.GELU()(q(x)))


@pytest.mark.parametrize("cls", ["MLP", "MLPBlock"])
def test_the_encoder_mlps_fuse_their_first_layer(cls: str) -> None:
    torch.manual_seed(0)
    mlp = MLP(32, 128, 32, 2, activation=nn.GELU) if cls == "MLP" else MLPBlock(32, 128)
    x = torch.randn(2, 16, 32)
    with torch.inference_mode():
        ops = _ops(lambda: mlp(x))
        got = mlp(x)
        with fused_linear(False):
            plain = mlp(x)
    assert FUSED_OP in ops
    torch.testing.assert_close(got, plain, atol=2e-6, rtol=1e-5)
