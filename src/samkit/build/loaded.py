"""A model as an application loads it: built by its family's loader, with where it came from.

`LoadedModel` is what the command line (`samkit.cli.common.load_model`), the web app and the
Ray runs (`samkit.distributed.models.resolve_model`) pass around; `load_family_model` is the one
build step of every family (the official checkpoint of a variant fetched into the cache when
none is given, then the family's registry `loader`, its builder). Its predictor comes from a
higher layer (`samkit.jobs.make_predictor`), as a predictor is no part of this one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from samkit.build.registry import get_family, is_config_path


@dataclass
class LoadedModel:
    """A built model and where it came from.

    Attributes:
        model: a samkit model (`Sam`, `Sam2`, `Sam3Image`, ...; eval mode).
        family: its registered family name ("sam1", "sam2", "sam3", ...).
        name: what outputs record as the model: the variant name or config path given, or
            the checkpoint path when only a checkpoint was given.
        random_weights: built without trained weights (smoke tests; recorded in outputs).
    """

    model: Any
    family: str
    name: str
    random_weights: bool = False

    def img_size(self) -> int:
        """The model's square input side in pixels (`model.image_size`; 1024 for SAM 1 / 2)."""
        return int(self.model.image_size)


def official_checkpoint(
    spec: str | None, checkpoint: str | os.PathLike[str] | None, random_weights: bool
) -> str | os.PathLike[str] | None:
    """The checkpoint to load: `checkpoint` when given, None for random weights or a config
    file, else the official checkpoint of the variant `spec` (cached, downloaded if missing).

    Raises:
        ValueError: `spec` is no registered variant or family.  CheckpointUnavailableError:
            offline.
    """
    if checkpoint is not None or random_weights or spec is None or is_config_path(spec):
        return checkpoint
    from samkit.build.registry import families
    from samkit.configs.sam import variant_names

    if spec not in variant_names() and any(f.name == spec for f in families()):
        return checkpoint  # a family's own name (`sam3`): its loader finds the file or says where
    from samkit.checkpoint import fetch_checkpoint

    return fetch_checkpoint(spec)


def load_family_model(
    family: str,
    spec: Any,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    device: Any = None,
    dtype: Any = None,
    checkpoint_state: Mapping[str, Any] | None = None,
) -> Any:
    """Build a model of `family` with its registry `loader` (eval mode).

    The one loading step of every family: the checkpoint is `checkpoint` when given, none with
    `random_weights` or a config file, else the official file of the variant `spec` (fetched
    into the cache, `official_checkpoint`); the loader (the family's builder, `build_sam` ...)
    then builds and loads it. A family whose entry sets `loader_finds_checkpoint` (SAM 3: its
    gated `sam3.pt`) is handed `checkpoint` and `random_weights` as they are.

    Args:
        family: a registered family name.
        spec: a variant name, the family's own name (`sam3`), a config.json path, a config
            object, or None (the architecture from `checkpoint`).
        checkpoint, random_weights: the weights, or none at all (smoke tests).
        device: torch device (default CPU).
        dtype: a torch dtype or its name ("bfloat16"); None is float32.
        checkpoint_state: the tensors of `checkpoint` already read, handed to a loader that
            finds its checkpoint (SAM 3's `checkpoint_state`: `samkit serve` builds the video
            tracker from the same tensors, so the file is read once); others read the file.

    Raises:
        ValueError: an unknown family or variant, or what the family's builder raises.
        CheckpointUnavailableError: the official checkpoint is not cached and cannot be fetched.
    """
    if isinstance(dtype, str):
        import torch

        dtype = getattr(torch, dtype)
    entry = get_family(family)
    loader = entry.load("loader")
    if entry.loader_finds_checkpoint:
        read = {} if checkpoint_state is None else {"checkpoint_state": checkpoint_state}
        model = loader(spec, checkpoint, random_weights, device, dtype, **read)
    else:
        name = spec if isinstance(spec, str) else None
        checkpoint = official_checkpoint(name, checkpoint, random_weights)
        model = loader(spec, checkpoint=checkpoint, device=device, dtype=dtype)
    return model.eval()
