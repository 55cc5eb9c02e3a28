"""Precision and execution options: bf16, int8 dynamic quantisation of the encoder, torch.compile.

One entry point (the options live in `precision`, `int8` and `compile` next to this module; they
are hooks and module swaps applied from outside, which the model's modules never read):

    model = build_sam("vit_b", checkpoint=...)                  # exact fp32 eager (the default)
    model = samkit.runtime.accel.optimize(model, dtype=torch.bfloat16)   # bf16 image encoder
    model = samkit.runtime.accel.optimize(model, int8=True)              # int8 encoder Linear layers (CPU)
    model = samkit.runtime.accel.optimize(model, compile=True)           # torch.compile the image encoder

`optimize` changes the model in place and returns it; the options combine (e.g. bf16 + compile).
`dtype` applies to the image encoder, which holds nearly all of the compute: its input is cast to
`dtype` and its output back to the decoder's dtype by forward hooks, so the predictors need no
change. The prompt encoder and mask decoder stay float32 unless `decoder_dtype` says otherwise:
with bf16 weights they alone move masks more than the encoder does (sam1_shapes `shapes_box`: mask
IoU 0.968 with a bf16 decoder, 0.999 with a bf16 encoder, 0.957 with the whole model cast).
`decoder_autocast` instead runs the decoder's matmuls in bf16 with float32 weights, norms and
residual stream (0.99 with a bf16 encoder); `build_sam(..., dtype=torch.bfloat16)` applies that
pair (`low_precision`). Pre- and post-processing stay float32.

Accuracy (tests/runtime/test_accel.py): every path keeps the fixtures' masks at IoU >= 0.97
against the fp32 result and predicted IoUs within 0.02. int8 quantises the weights per tensor and the
activations per call (dynamic), and only the encoder's `nn.Linear` layers; attention, norms and
the decoder stay in float32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from samkit.runtime.compile import compile_encoder
from samkit.runtime.int8 import INT8_ENGINES, is_int8, pick_int8_engine, quantize_encoder_int8
from samkit.runtime.malloc import tune_malloc
from samkit.runtime.precision import (
    autocast_decoder,
    check_dtype,
    encoder_to_dtype,
    has_precision_hooks,
    image_encoder,
    param_dtype,
    strip_precision_hooks,
    to_dtype,
)

__all__ = [
    "INT8_ENGINES",
    "autocast_decoder",
    "compile_encoder",
    "encoder_to_dtype",
    "is_plain_float32",
    "low_precision",
    "optimize",
    "pick_int8_engine",
    "plain_float32_copy",
    "quantize_encoder_int8",
    "to_dtype",
    "tune_malloc",
]


def is_plain_float32(model: nn.Module) -> bool:
    """Whether every floating parameter is float32 and no `optimize` option is applied."""
    return (
        all(p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point())
        and not has_precision_hooks(model)
        and not is_int8(model)
    )


def plain_float32_copy(model: nn.Module) -> nn.Module:
    """The model if `is_plain_float32`, else a float32 copy without the dtype hooks and the
    decoder autocast (what exporters trace). int8 encoders cannot be undone: a ValueError."""
    if is_plain_float32(model):
        return model.eval()
    if is_int8(image_encoder(model)):
        raise ValueError("an int8-quantised encoder cannot be exported: export the float model")
    copy_ = copy.deepcopy(model)
    strip_precision_hooks(copy_)
    return copy_.float().eval()


def low_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """What `build_sam(..., dtype=...)` / `build_sam2(..., dtype=...)` apply.

    float32 changes nothing. bfloat16 / float16 cast the image encoder's weights and run it in
    that dtype (its outputs come back as float32), and run the mask decoder under autocast in
    that dtype. Casting the decoder's weights as well (its residual stream and LayerNorms in
    bf16) moved sam1_shapes `shapes_box` to mask IoU 0.957; this split keeps 0.99.
    """
    check_dtype(dtype)
    if dtype == torch.float32:
        return model
    return optimize(model, dtype=dtype, decoder_autocast=dtype)


def optimize(
    model: nn.Module,
    *,
    dtype: torch.dtype | None = None,
    decoder_dtype: torch.dtype | None = None,
    decoder_autocast: torch.dtype | None = None,
    int8: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    compile_backend: str = "inductor",
) -> nn.Module:
    """Apply precision / execution options to a SAM model in place and return it.

    Args:
        model: a SAM model (from `build_sam`; the dtype option also applies to SAM 2).
        dtype: run the image encoder in this dtype (e.g. `torch.bfloat16`).
        decoder_dtype: cast everything else (prompt encoder, mask decoder, SAM 2's memory
            modules) to this dtype; None keeps it (float32 by default). Pre- and
            post-processing stay float32 either way.
        decoder_autocast: run the mask decoder under `torch.autocast` with this dtype
            (e.g. `torch.bfloat16`): several times faster for many prompts, masks kept.
        int8: int8 dynamic quantisation of the encoder's Linear layers (CPU, float32 model).
        compile: `torch.compile` the image encoder.
        compile_mode: torch.compile mode when `compile`.
        compile_backend: torch.compile backend when `compile`.

    Returns:
        `model`.
    """
    if int8 and dtype not in (None, torch.float32):
        raise ValueError("int8=True quantises a float32 encoder; it cannot be combined with dtype")
    if decoder_dtype is not None:
        encoder_dtype = param_dtype(image_encoder(model))
        to_dtype(model, decoder_dtype)
        image_encoder(model).to(dtype=encoder_dtype)
    if dtype is not None or decoder_dtype is not None:
        encoder_to_dtype(model, dtype or param_dtype(image_encoder(model)))
    if decoder_autocast is not None:
        autocast_decoder(model, decoder_autocast)
    if int8:
        quantize_encoder_int8(model)
    if compile:
        compile_encoder(model, mode=compile_mode, backend=compile_backend)
    return model.eval()
