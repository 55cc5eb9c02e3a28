"""int8 dynamic quantisation of the image encoder's `nn.Linear` layers (CPU).

Weights are quantised once per tensor (symmetric int8), activations per call from their observed
range; attention, norms and the decoder stay float32.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from samkit.runtime.precision import image_encoder, param_dtype

# Engines for quantised dynamic Linear, fastest first on x86 CPUs with AMX / VNNI.
INT8_ENGINES = ("onednn", "x86", "fbgemm")


@contextlib.contextmanager
def _quantized_engine(engine: str) -> Iterator[None]:
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def pick_int8_engine() -> str:
    """The first of `INT8_ENGINES` this torch build supports."""
    supported = torch.backends.quantized.supported_engines
    for engine in INT8_ENGINES:
        if engine in supported:
            return engine
    raise ValueError(f"no int8 engine among {INT8_ENGINES} in this torch build ({supported})")


def quantize_encoder_int8(model: nn.Module, engine: str | None = None) -> nn.Module:
    """Replace the image encoder's `nn.Linear` layers by int8 dynamic-quantised ones (CPU).

    Weights are quantised once per tensor (symmetric int8); activations are quantised per call
    from their observed range. The weights are packed for `engine` (default:
    `pick_int8_engine`). The encoder's state dict changes form (packed int8 weights), so save
    checkpoints before quantising.

    Args:
        model: a float32 SAM model on the CPU.
        engine: a `torch.backends.quantized` engine (`onednn`, `x86`, `fbgemm`).

    Returns:
        `model`, changed in place.

    Raises:
        ValueError: a model that is not float32, not on the CPU, an encoder without Linear
            layers (nothing to quantise), or an unsupported engine.
    """
    encoder = image_encoder(model)
    if param_dtype(encoder) != torch.float32:
        raise ValueError("int8 quantisation needs a float32 model (quantise before casting)")
    if any(p.device.type != "cpu" for p in encoder.parameters()):
        raise ValueError("int8 dynamic quantisation runs on the CPU only: move the model first")
    if not any(isinstance(m, nn.Linear) for m in encoder.modules()):
        raise ValueError(
            f"int8 quantises the image encoder's Linear layers and {type(encoder).__name__} "
            "has none (a convolutional encoder, e.g. EdgeTAM's RepViT): use bfloat16 instead"
        )
    engine = engine or pick_int8_engine()
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"int8 engine {engine!r} is not supported here; choose from "
            f"{torch.backends.quantized.supported_engines}"
        )
    with _quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        torch.ao.quantization.quantize_dynamic(
            encoder, {nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return model


def is_int8(module: nn.Module) -> bool:
    """Whether the module holds int8 dynamic-quantised Linear layers."""
    return any(isinstance(m, DynamicQuantizedLinear) for m in module.modules())
