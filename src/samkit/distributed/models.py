"""The model of a distributed run: built once in the driver, shipped to the actors via Ray."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunModel:
    """A built model and the name its outputs record.

    Attributes:
        model: a samkit `Sam`, `Sam2` or `Sam3Image` module (in eval mode).
        family: "sam1", "sam2" or "sam3".
        name: recorded in outputs as `model` / `variant` (`samkit auto --model` records the
            variant name or config path; with only `--checkpoint`, the checkpoint path).
        random_weights: the model has no trained weights (recorded in `samkit auto` JSON).
    """

    model: Any
    family: str
    name: str
    random_weights: bool = False

    def img_size(self) -> int:
        """The encoder's input side."""
        if self.family == "sam2":
            return int(self.model.image_size)
        if self.family == "sam3":
            from samkit.build.sam3_models import sam3_img_size

            return sam3_img_size(self.model)
        return int(self.model.image_encoder.img_size)

    def predictor(self) -> Any:
        """A `SamPredictor` / `Sam2ImagePredictor` of the model (SAM 3: a
        `samkit.amg.sam3.Sam3ClickPredictor`)."""
        if self.family == "sam3":
            from samkit.amg.sam3 import Sam3ClickPredictor

            return Sam3ClickPredictor(self.model)
        if self.family == "sam2":
            from samkit import Sam2ImagePredictor

            return Sam2ImagePredictor(self.model)
        from samkit.predict.sam import SamPredictor

        return SamPredictor(self.model)


def _family_of_module(model: Any) -> str:
    from samkit.modeling.sam2 import Sam2
    from samkit.modeling.sam3.sam3_image import Sam3Image

    if isinstance(model, Sam3Image):
        return "sam3"
    return "sam2" if isinstance(model, Sam2) else "sam1"


def _family_of_spec(spec: str) -> str:
    from samkit.build.sam3_models import is_sam3_config, is_sam3_name
    from samkit.configs.sam import get_variant, load_config_json

    if is_sam3_name(spec):
        return "sam3"
    if spec.endswith(".json") or Path(spec).is_file():
        raw = load_config_json(spec)
        if is_sam3_config(raw):
            return "sam3"
        sam2 = raw.get("family") == "sam2" or "model" in raw or "hydra_overrides" in raw
        return "sam2" if sam2 else "sam1"
    return get_variant(spec).family  # ValueError lists the known names


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
            `checkpoint`; vit_b without one), or a built `Sam` / `Sam2` / `Sam3Image` module.
        checkpoint: weights; without it a variant's official checkpoint is fetched into the cache.
        random_weights: build without weights (smoke tests and benchmarks only).
        model_name: the name recorded in the outputs (default: what `samkit auto` records).
        device, dtype: as in `build_sam`.

    Raises:
        ValueError: unknown variant, missing checkpoint, or checkpoint with random_weights.
    """
    import torch

    if isinstance(model, torch.nn.Module):
        name = model_name or type(model).__name__
        return RunModel(model.eval(), _family_of_module(model), name, random_weights)
    if checkpoint is not None and random_weights:
        raise ValueError("checkpoint and random_weights exclude each other")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ValueError(f"checkpoint {checkpoint}: no such file")
    if model is None and checkpoint is None:
        model = "vit_b"
    if model is None:  # only a checkpoint: its tensors say the family
        from samkit.build.family import checkpoint_family

        family = checkpoint_family(checkpoint) or "sam1"
    else:
        family = _family_of_spec(str(model))
    if family == "sam3":
        from samkit.build.sam3_models import build_sam3

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        net = build_sam3(model, checkpoint, random_weights, device=device, dtype=dtype)
        name = model_name or str(model if model is not None else checkpoint)
        return RunModel(net.eval(), family, name, random_weights)
    if model is not None and checkpoint is None and not random_weights:
        if str(model).endswith(".json") or Path(str(model)).is_file():
            raise ValueError(f"model {model} is a config file: also give its checkpoint")
        from samkit.checkpoint import fetch_checkpoint

        checkpoint = fetch_checkpoint(str(model))
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if family == "sam2":
        from samkit import build_sam2

        net = build_sam2(model, checkpoint=checkpoint, device=device, dtype=dtype)
    else:
        from samkit.build.sam import build_sam

        net = build_sam(model, checkpoint=checkpoint, device=device, dtype=dtype)
    name = model_name or str(model if model is not None else checkpoint)
    return RunModel(net.eval(), family, name, random_weights)
