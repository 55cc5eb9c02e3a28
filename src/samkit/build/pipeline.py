"""The one checkpoint -> model pipeline every family's builder runs.

    state = read_checkpoint(checkpoint, family)          # tensors, refused if another family's
    model = build_model(construct, state, checkpoint,    # meta build -> empty -> buffers ->
                        reset_buffers=..., init_weights=...,  # load (or init) -> dtype -> eval
                        user=..., family=..., spec=..., infer=..., device=..., dtype=...)

A family's builder (`build/sam.py`, `sam2.py`, `light.py`, `efficienttam.py`) only says how to
get its config (variant name, config file, or the shapes of `state`) and how to construct,
reset and randomly initialise its model; reading, the family check, the provenance check of
samkit-written files, strict loading (with the advice of `samkit.build.misfit` when a checkpoint
does not fit the variant or config given), precision and eval mode are here, once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from samkit.build.family import check_family
from samkit.build.misfit import family_misfit
from samkit.checkpoint import load_state_dict_into, read_state_dict
from samkit.io.provenance import check_file
from samkit.runtime.accel import low_precision


def require_spec(builder: str, spec: object, checkpoint: object) -> None:
    """ValueError when neither a variant / config nor a checkpoint is given to `builder`."""
    if spec is None and checkpoint is None:
        raise ValueError(f"{builder} needs a variant name, a config, or checkpoint=")


def read_checkpoint(checkpoint: str | os.PathLike | None, family: str) -> dict[str, Tensor] | None:
    """The checkpoint's tensors (CPU, weights only), or None without a checkpoint.

    Raises:
        ValueError: an unreadable file, or the tensors of another family (the message names it,
            `samkit.build.family.check_family`).
    """
    if checkpoint is None:
        return None
    state = read_state_dict(checkpoint)
    check_family(state, family, str(checkpoint))
    return state


@torch.no_grad()
def reset_pixel_normalization(model: nn.Module, cfg: object) -> None:
    """Fill the non-persistent `pixel_mean` / `pixel_std` buffers (3x1x1, 0..255 pixel units)
    from a config's `pixel_mean` / `pixel_std`: they are not in checkpoints and are garbage
    after a meta build."""
    model.pixel_mean.copy_(torch.tensor(cfg.pixel_mean).view(-1, 1, 1))
    model.pixel_std.copy_(torch.tensor(cfg.pixel_std).view(-1, 1, 1))


def build_model(
    construct: Callable[[], nn.Module],
    state: Mapping[str, Tensor] | None,
    checkpoint: str | os.PathLike | None,
    *,
    reset_buffers: Callable[[nn.Module], None],
    init_weights: Callable[[nn.Module], None],
    user: str,
    family: str,
    spec: object,
    infer: Callable[[dict[str, Tensor]], object] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Construct on the meta device, allocate on `device` (default CPU), then load `state`
    strictly or initialise random weights, cast for `dtype` and return the model in eval mode.

    Args:
        construct: builds the model from its config (called under `torch.device("meta")`).
        state: the checkpoint's tensors (`read_checkpoint`), or None for random weights.
        checkpoint: where `state` came from (for messages and the provenance check).
        reset_buffers: fills the non-persistent buffers (pixel mean / std ...), which are not in
            checkpoints and are garbage after a meta build.
        init_weights: random initialisation of an allocated model (no checkpoint).
        user: who uses the file, for the provenance message, e.g. "the model of build_sam('vit_b')".
        family: the registered family being built (its registry `loader` checks the advice
            given when `state` does not fit, `samkit.build.misfit.family_misfit`).
        spec: the variant name, config or config.json path the builder was given; None when
            the architecture was read from `state` (a misfit then has no other advice than the
            loader's key report).
        infer: the family's checkpoint tensors -> architecture step (a variant name or a
            config; a ValueError when the tensors do not tell), for that advice; None: the
            architecture of a checkpoint cannot be read from its tensors.
        dtype: None / float32, or a low precision (`samkit.runtime.accel.low_precision`).

    Raises:
        ValueError: a samkit-written file made by another model (`samkit.io.provenance`), or any
            missing, unexpected or misshaped tensor (`samkit.checkpoint.load_state_dict_into`);
            with a `spec`, an `AdviceError` whose first line says what the checkpoint is and
            what builds it.
    """
    with torch.device("meta"):
        model = construct()
    model = model.to_empty(device=device or "cpu")
    with torch.no_grad():
        reset_buffers(model)
        if state is not None:
            check_file(checkpoint, model, user)
            try:
                load_state_dict_into(model, state, source=str(checkpoint))
            except ValueError as e:
                if spec is None:  # an architecture read from `state`: no other advice
                    raise
                raise family_misfit(e, family, spec, state, checkpoint, infer) from None
        else:
            init_weights(model)
    if dtype is not None:
        low_precision(model, dtype)
    return model.eval()
