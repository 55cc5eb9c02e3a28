"""Precision and execution options: bf16, int8 dynamic quantisation of the encoder, torch.compile.

One entry point:

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

import contextlib
import copy
import ctypes
import ctypes.util
import sys
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

# Engines for quantised dynamic Linear, fastest first on x86 CPUs with AMX / VNNI.
INT8_ENGINES = ("onednn", "x86", "fbgemm")


def _encoder(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "image_encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(
            f"expected a SAM model with an `image_encoder`, got {type(model).__name__}"
        )
    return encoder


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.float32, bfloat16 or float16, got {dtype}")


def to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the whole model to `dtype`, keeping `pixel_mean` / `pixel_std` in float32."""
    _check_dtype(dtype)
    model.to(dtype=dtype)
    for name, buf in model.named_buffers():
        if name.rsplit(".", 1)[-1] in ("pixel_mean", "pixel_std"):
            buf.data = buf.data.float()
    return model


def _cast_floats(tree: object, dtype: torch.dtype) -> object:
    return tree_map(
        lambda t: t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t, tree
    )


def encoder_to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run only the image encoder in `dtype`; its outputs come back in the decoder's dtype.

    Forward hooks cast the encoder's input to `dtype` and its (possibly nested) floating outputs
    back to the dtype of the rest of the model, so callers and state-dict keys are unchanged.
    """
    _check_dtype(dtype)
    encoder = _encoder(model)
    for handle in getattr(encoder, "_samkit_cast_hooks", ()):
        handle.remove()
    encoder.to(dtype=dtype)
    rest = [
        p.dtype
        for n, p in model.named_parameters()
        if not n.startswith("image_encoder.") and p.is_floating_point()
    ]
    out_dtype = rest[0] if rest else torch.float32
    from samkit.layers.sine_position import PositionEmbeddingSine

    for mod in encoder.modules():  # encodings are made in the output dtype: no cast round trip
        if isinstance(mod, PositionEmbeddingSine):
            mod.out_dtype = None if out_dtype == dtype else out_dtype
    if out_dtype == dtype:
        encoder._samkit_cast_hooks = ()
        return model
    encoder._samkit_cast_hooks = (
        encoder.register_forward_pre_hook(lambda m, args: _cast_floats(args, dtype)),
        encoder.register_forward_hook(lambda m, args, out: _cast_floats(out, out_dtype)),
    )
    return model


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
    from their observed range. The packed weights belong to `engine` (default: `pick_int8_engine`),
    which is also used at run time. The encoder's state dict changes form (packed int8 weights),
    so save checkpoints before quantising.

    Args:
        model: a float32 SAM model on the CPU.
        engine: a `torch.backends.quantized` engine (`onednn`, `x86`, `fbgemm`).

    Returns:
        `model`, changed in place.
    """
    encoder = _encoder(model)
    if _param_dtype(encoder) != torch.float32:
        raise ValueError("int8 quantisation needs a float32 model (quantise before casting)")
    if any(p.device.type != "cpu" for p in encoder.parameters()):
        raise ValueError("int8 dynamic quantisation runs on the CPU only: move the model first")
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
    encoder.int8_engine = engine
    return model


def autocast_decoder(model: nn.Module, dtype: torch.dtype | None = torch.bfloat16) -> nn.Module:
    """Run the mask decoder under `torch.autocast(dtype)`; its outputs come back as float32.

    Autocast runs the matmuls and convolutions in `dtype` (AMX on CPUs that have it) and keeps
    LayerNorm, softmax and the residual stream in float32, which keeps the masks (unlike casting
    the decoder's weights). `dtype=None` restores the plain forward.
    """
    decoder = getattr(model, "mask_decoder", None) or getattr(model, "sam_mask_decoder", None)
    if not isinstance(decoder, nn.Module):
        raise ValueError(f"expected a SAM model with a mask decoder, got {type(model).__name__}")
    plain = decoder.__dict__.pop("forward", None)
    plain = getattr(plain, "_samkit_plain", None) or decoder.forward
    if dtype is None:
        return model
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"decoder autocast dtype must be bfloat16 or float16, got {dtype}")
    device_type = next(decoder.parameters()).device.type
    out_dtype = _param_dtype(decoder)

    def forward(*args: object, **kwargs: object) -> object:
        with torch.autocast(device_type, dtype=dtype):
            out = plain(*args, **kwargs)
        return _cast_floats(out, out_dtype)

    forward._samkit_plain = plain
    decoder.forward = forward
    return model


def compile_encoder(
    model: nn.Module, mode: str | None = None, dynamic: bool = False, backend: str = "inductor"
) -> nn.Module:
    """`torch.compile` the image encoder in place (state-dict keys stay unchanged).

    The first forward compiles (tens of seconds on CPU); later ones reuse the compiled graph.

    Args:
        model: a SAM model.
        mode: torch.compile mode (None, "reduce-overhead", "max-autotune", ...).
        dynamic: allow dynamic shapes (the encoder input is always SxS, so False by default).
        backend: torch.compile backend ("inductor" generates fused kernels).

    Returns:
        `model`, changed in place.
    """
    _encoder(model).compile(mode=mode, dynamic=dynamic, backend=backend)
    return model


def tune_malloc(mmap_threshold: int = 256 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS at once.

    By default glibc serves large blocks with fresh `mmap`s and returns them on free, so every
    forward pass page-faults its big temporaries in again: the vit_b encoder faulted 2.1 GiB per
    call here and ran 10 % faster (4.26 s -> 3.84 s; 16 boxes in `predict` 384 -> 349 ms) with
    this tuning, for ~0.15 GiB more peak RSS. It changes the whole process, so the library never
    calls it by itself; the `samkit` command does. Only glibc (Linux) supports it.

    Args:
        mmap_threshold: blocks at least this large still get their own mmap.
        trim_threshold: free memory at the heap top kept before it is returned to the OS.

    Returns:
        Whether both settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    ok = mallopt(m_mmap_threshold, int(mmap_threshold)) == 1
    return mallopt(m_trim_threshold, int(trim_threshold)) == 1 and ok


def is_plain_float32(model: nn.Module) -> bool:
    """Whether every floating parameter is float32 and no `optimize` option is applied."""
    encoder = getattr(model, "image_encoder", None)
    decoder = getattr(model, "mask_decoder", None) or getattr(model, "sam_mask_decoder", None)
    return (
        all(p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point())
        and not getattr(encoder, "_samkit_cast_hooks", ())
        and "forward" not in getattr(decoder, "__dict__", {})
        and not getattr(encoder, "int8_engine", None)
    )


def plain_float32_copy(model: nn.Module) -> nn.Module:
    """The model if `is_plain_float32`, else a float32 copy without the dtype hooks and the
    decoder autocast (what exporters trace). int8 encoders cannot be undone: a ValueError."""
    if is_plain_float32(model):
        return model.eval()
    encoder = _encoder(model)
    if getattr(encoder, "int8_engine", None):
        raise ValueError("an int8-quantised encoder cannot be exported: export the float model")
    copy_ = copy.deepcopy(model)
    copy_encoder = _encoder(copy_)
    for handle in getattr(encoder, "_samkit_cast_hooks", ()):
        copy_encoder._forward_pre_hooks.pop(handle.id, None)
        copy_encoder._forward_hooks.pop(handle.id, None)
    copy_encoder._samkit_cast_hooks = ()
    decoder = getattr(copy_, "mask_decoder", None) or getattr(copy_, "sam_mask_decoder", None)
    if decoder is not None:
        decoder.__dict__.pop("forward", None)
    return copy_.float().eval()


def low_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """What `build_sam(..., dtype=...)` / `build_sam2(..., dtype=...)` apply.

    float32 changes nothing. bfloat16 / float16 cast the image encoder's weights and run it in
    that dtype (its outputs come back as float32), and run the mask decoder under autocast in
    that dtype. Casting the decoder's weights as well (its residual stream and LayerNorms in
    bf16) moved sam1_shapes `shapes_box` to mask IoU 0.957; this split keeps 0.99.
    """
    _check_dtype(dtype)
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
        encoder_dtype = _param_dtype(_encoder(model))
        to_dtype(model, decoder_dtype)
        _encoder(model).to(dtype=encoder_dtype)
    if dtype is not None or decoder_dtype is not None:
        encoder_to_dtype(model, dtype or _param_dtype(_encoder(model)))
    if decoder_autocast is not None:
        autocast_decoder(model, decoder_autocast)
    if int8:
        quantize_encoder_int8(model)
    if compile:
        compile_encoder(model, mode=compile_mode, backend=compile_backend)
    return model.eval()
