"""`torch.compile` of the image encoder."""

from __future__ import annotations

from torch import nn

from samkit.runtime.precision import image_encoder


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
    image_encoder(model).compile(mode=mode, dynamic=dynamic, backend=backend)
    return model
