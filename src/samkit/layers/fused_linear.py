"""`act(linear(x))` as one oneDNN primitive on the CPU: the activation applied as the matmul's
output is written, instead of a second pass over a fresh (..., hidden) buffer.

The MLPs of every encoder (ViT, Hiera, SAM 3's ViT, TinyViT: Linear -> GELU -> Linear) and SAM 2's
memory attention (Linear -> ReLU) otherwise spend up to a third of their first layer's time on
that pass and on page-faulting its buffer in: one thread on an AMD EPYC, sam2.1_hiera_t's
first-stage MLP (65536 x 96 -> 384) took 166 ms float32 / 88 ms bfloat16 as `F.gelu(F.linear(...))`
and 107 / 60 ms fused; whole encoders 0.90-0.95x in float32 (`benchmarks/bench_fused_linear.py`).

The fused op is PyTorch's `torch.ops.mkldnn._linear_pointwise` (what inductor lowers Linear +
pointwise to on x86). The activations are the exact ones: GELU's erf or tanh form as the
module's `approximate` says, ReLU; results equal the plain modules' up to rounding (float32
within about 1e-6 relative). It runs only on CPU tensors of float32 or bfloat16 matching the weight, no gradient, autocast, tracing,
export or compilation in play (`samkit.layers.attention_kernels.fast_path_allowed`), a plain
`nn.Linear` (not a LoRA or quantised replacement) and activation with no hooks. Everywhere else
it is `act(linear(x))`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers.attention_kernels import fast_path_allowed

_state = {"fused": True}


@contextlib.contextmanager
def fused_linear(enabled: bool) -> Iterator[None]:
    """Within the block, `linear_act` fuses where it may (True, the default) or always runs the
    plain modules (False: the reference for benchmarks and tests)."""
    old = _state["fused"]
    _state["fused"] = bool(enabled)
    try:
        yield
    finally:
        _state["fused"] = old


@functools.cache
def fused_linear_available() -> bool:
    """Whether this torch has the oneDNN fused linear op (x86 builds with mkldnn)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return callable(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


def _onednn_activation(act: nn.Module) -> tuple[str, str] | None:
    """(attr, algorithm) of `_linear_pointwise` for `act`, or None when it has no fused form."""
    if type(act) is nn.GELU:
        return "gelu", act.approximate  # "none" (erf) or "tanh", as nn.GELU names them
    if type(act) is nn.ReLU:
        return "relu", ""
    return None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def linear_act(x: Tensor, linear: nn.Module, act: nn.Module) -> Tensor:
    """`act(linear(x))`, fused on the CPU where that changes nothing but the time.

    Args:
        x: (..., in_features) input.
        linear: the layer; fused only when it is exactly `nn.Linear`.
        act: the activation; fused only when it is exactly `nn.GELU` or `nn.ReLU`.

    Returns:
        (..., out_features) in x's dtype.
    """
    spec = _onednn_activation(act)
    plain = type(linear) is nn.Linear and not _hooked(linear) and not _hooked(act)
    if (
        _state["fused"]
        and spec is not None
        and plain
        and x.dtype == linear.weight.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
        and fast_path_allowed(x, linear.weight, linear.bias)
        and fused_linear_available()
    ):
        attr, algorithm = spec
        return torch.ops.mkldnn._linear_pointwise(
            x, linear.weight, linear.bias, attr, [], algorithm
        )
    h = linear(x)
    if plain and type(act) is nn.ReLU and not h.requires_grad:
        return F.relu(h, inplace=True)  # h is fresh and seen by nothing else: one buffer less
    return act(h)
