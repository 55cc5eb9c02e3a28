"""The model of a distributed run: built once in the driver, shipped to the actors via Ray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from samkit.build.family import checkpoint_family
from samkit.build.loaded import LoadedModel, load_family_model
from samkit.build.registry import (
    DEFAULT_FAMILY,
    family_of,
    get_family,
    is_config_path,
    spec_family,
)

# The run's model is the command line's `LoadedModel` (model, family, name, random_weights,
# `img_size()`): one type for both.
RunModel = LoadedModel


def resolve_model(
    model: Any,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    random_weights: bool = False,
    model_name: str | None = None,
    device: str | None = None,
    dtype: Any = None,
) -> RunModel:
    """Build the run's model like `samkit auto --model/--checkpoint` does, or take a built one.

    Args:
        model: a variant name, `sam3`, a config.json path, None (infer the family from
            `checkpoint`; vit_b without one), or a built samkit model (`Sam`, `Sam2`,
            `Sam3Image`, ...).
        checkpoint: weights; without it a variant's official checkpoint is fetched into the cache.
        random_weights: build without weights (smoke tests and benchmarks only).
        model_name: the name recorded in the outputs (default: what `samkit auto` records).
        device, dtype: as in `build_sam` (dtype may be a name such as "bfloat16").

    Raises:
        ValueError: unknown variant, missing checkpoint, or checkpoint with random_weights.
    """
    import torch

    if isinstance(model, torch.nn.Module):
        name = model_name or type(model).__name__
        return RunModel(model.eval(), family_of(model).name, name, random_weights)
    if checkpoint is not None and random_weights:
        raise ValueError("checkpoint and random_weights exclude each other")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ValueError(f"checkpoint {checkpoint}: no such file")
    if model is None and checkpoint is None:
        model = get_family(DEFAULT_FAMILY).default_model
    if model is None:  # only a checkpoint: its tensors say the family
        family = checkpoint_family(checkpoint) or DEFAULT_FAMILY
    else:
        family = spec_family(str(model))  # ValueError lists the known names
        if is_config_path(str(model)) and checkpoint is None and not random_weights:
            raise ValueError(f"model {model} is a config file: also give its checkpoint")
    net = load_family_model(family, model, checkpoint, random_weights, device, dtype)
    name = model_name or str(model if model is not None else checkpoint)
    return RunModel(net, family, name, random_weights)
