"""Precision of a SAM model: the image encoder in bf16 / fp16, the mask decoder under autocast.

Both are forward hooks owned by this module (`encoder_to_dtype`, `autocast_decoder`): the model's
modules, their `forward` and their state-dict keys stay as built, and no module reads a setting
from here. `decoder_autocast_dtype` / `decoder_autocast` tell callers that run parts of the
decoder themselves (`samkit.runtime.decoding`) which autocast its forward runs under.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from samkit.layers.sine_position import PositionEmbeddingSine

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def image_encoder(model: nn.Module) -> nn.Module:
    """`model.image_encoder`, or a ValueError naming what was given instead."""
    encoder = getattr(model, "image_encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(
            f"expected a SAM model with an `image_encoder`, got {type(model).__name__}"
        )
    return encoder


def mask_decoder(model: nn.Module) -> nn.Module:
    """SAM 1's `mask_decoder` or SAM 2's `sam_mask_decoder`, or a ValueError."""
    decoder = getattr(model, "mask_decoder", None) or getattr(model, "sam_mask_decoder", None)
    if not isinstance(decoder, nn.Module):
        raise ValueError(f"expected a SAM model with a mask decoder, got {type(model).__name__}")
    return decoder


def param_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of the module's first floating parameter."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


def check_dtype(dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be torch.float32, bfloat16 or float16, got {dtype}")


def cast_floats(tree: object, dtype: torch.dtype) -> object:
    """Every floating tensor in a (nested) structure cast to `dtype`; the rest unchanged."""
    return tree_map(
        lambda t: t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t, tree
    )


def to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the whole model to `dtype`, keeping `pixel_mean` / `pixel_std` in float32."""
    check_dtype(dtype)
    model.to(dtype=dtype)
    for name, buf in model.named_buffers():
        if name.rsplit(".", 1)[-1] in ("pixel_mean", "pixel_std"):
            buf.data = buf.data.float()
    return model


class _CastInputs:
    """Forward pre-hook: floating inputs to the encoder's dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple) -> object:
        return cast_floats(args, self.dtype)


class _CastOutputs:
    """Forward hook: floating outputs to the dtype of the rest of the model."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple, out: object) -> object:
        return cast_floats(out, self.dtype)


class _EncodingIn:
    """Forward hook on a `PositionEmbeddingSine` inside a cast encoder: its (float32) encoding in
    the output dtype directly, not rounded through the encoder's dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        pe = module.encode_grid(out.shape[-2], out.shape[-1], out.device).to(self.dtype)
        return pe[None].expand(out.shape[0], -1, -1, -1)


_ENCODER_HOOKS = (_CastInputs, _CastOutputs, _EncodingIn)


def remove_hooks(module: nn.Module, kinds: tuple[type, ...]) -> None:
    """Remove this module's (and its submodules') forward hooks that are instances of `kinds`."""
    for mod in module.modules():
        for hooks in (mod._forward_pre_hooks, mod._forward_hooks):
            for key in [k for k, h in hooks.items() if isinstance(h, kinds)]:
                del hooks[key]


def has_hooks(module: nn.Module, kinds: tuple[type, ...]) -> bool:
    """Whether this module or a submodule has a forward hook that is an instance of `kinds`."""
    return any(
        isinstance(h, kinds)
        for mod in module.modules()
        for h in (*mod._forward_pre_hooks.values(), *mod._forward_hooks.values())
    )


def encoder_to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run only the image encoder in `dtype`; its outputs come back in the decoder's dtype.

    Forward hooks cast the encoder's input to `dtype` and its (possibly nested) floating outputs
    back to the dtype of the rest of the model, so callers and state-dict keys are unchanged.
    Position encodings made inside the encoder (SAM 2's neck) come out in the output dtype
    directly. Calling it again replaces the hooks; the model's own dtype removes them.
    """
    check_dtype(dtype)
    encoder = image_encoder(model)
    remove_hooks(encoder, _ENCODER_HOOKS)
    encoder.to(dtype=dtype)
    rest = [
        p.dtype
        for n, p in model.named_parameters()
        if not n.startswith("image_encoder.") and p.is_floating_point()
    ]
    out_dtype = rest[0] if rest else torch.float32
    if out_dtype == dtype:
        return model
    for mod in encoder.modules():
        if isinstance(mod, PositionEmbeddingSine):
            mod.register_forward_hook(_EncodingIn(out_dtype))
    encoder.register_forward_pre_hook(_CastInputs(dtype))
    encoder.register_forward_hook(_CastOutputs(out_dtype))
    return model


def encoder_cast_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype `encoder_to_dtype` runs the image encoder in, or None without its hooks."""
    encoder = image_encoder(model)
    for hook in encoder._forward_pre_hooks.values():
        if isinstance(hook, _CastInputs):
            return hook.dtype
    return None


# The autocast contexts entered by `_AutocastEnter` and not yet left, per thread (a decoder may be
# called from several threads, and autocast state is per thread).
_entered = threading.local()


class _AutocastEnter:
    """Forward pre-hook: enter `torch.autocast(dtype)` for the module's forward."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple) -> None:
        ctx = torch.autocast(next(module.parameters()).device.type, dtype=self.dtype)
        ctx.__enter__()
        _entered.__dict__.setdefault("stack", []).append(ctx)


class _AutocastExit:
    """Forward hook (always called, also after an error): leave the autocast, outputs to the
    module's own dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple, out: object) -> object:
        _entered.stack.pop().__exit__(None, None, None)
        return None if out is None else cast_floats(out, self.dtype)


def autocast_decoder(model: nn.Module, dtype: torch.dtype | None = torch.bfloat16) -> nn.Module:
    """Run the mask decoder under `torch.autocast(dtype)`; its outputs come back as float32.

    Autocast runs the matmuls and convolutions in `dtype` (AMX on CPUs that have it) and keeps
    LayerNorm, softmax and the residual stream in float32, which keeps the masks (unlike casting
    the decoder's weights). `dtype=None` removes it. Applied by forward hooks on the decoder;
    calling it again replaces them.
    """
    decoder = mask_decoder(model)
    remove_hooks(decoder, (_AutocastEnter, _AutocastExit))
    if dtype is None:
        return model
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"decoder autocast dtype must be bfloat16 or float16, got {dtype}")
    decoder.register_forward_pre_hook(_AutocastEnter(dtype))
    decoder.register_forward_hook(_AutocastExit(param_dtype(decoder)), always_call=True)
    return model


def decoder_autocast_dtype(decoder: nn.Module) -> torch.dtype | None:
    """The autocast dtype `autocast_decoder` set on this mask decoder, or None."""
    for hook in decoder._forward_pre_hooks.values():
        if isinstance(hook, _AutocastEnter):
            return hook.dtype
    return None


@contextlib.contextmanager
def decoder_autocast(decoder: nn.Module) -> Iterator[None]:
    """The autocast the decoder's forward runs under, for work done outside its forward."""
    dtype = decoder_autocast_dtype(decoder)
    if dtype is None:
        yield
        return
    with torch.autocast(next(decoder.parameters()).device.type, dtype=dtype):
        yield


def strip_precision_hooks(model: nn.Module) -> None:
    """Remove the encoder cast and decoder autocast hooks (e.g. from a copy to export)."""
    remove_hooks(model, (*_ENCODER_HOOKS, _AutocastEnter, _AutocastExit))


def has_precision_hooks(model: nn.Module) -> bool:
    return has_hooks(model, (*_ENCODER_HOOKS, _AutocastEnter, _AutocastExit))
