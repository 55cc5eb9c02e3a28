"""SAM 3 models as the command line and `samkit.distributed` name them.

Three ways to name one (`samkit segment / auto --model ...`):

- `sam3`: the official architecture (`samkit.configs.sam3.SAM3_OFFICIAL`); its weights are the
  official `sam3.pt` given with `--checkpoint`, or found as `sam3.pt` in the checkpoint cache
  (`samkit.checkpoint.default_cache_dir`). Meta's weights are gated on Hugging Face, so samkit
  never downloads them. With `random_weights` the full-size model is built without weights.
- a config.json with `"family": "sam3"`: either the fixture format of
  `../shared/fixtures/sam3_tiny/config.json` (`builder_overrides`: the official builder functions'
  constructor arguments that differ from the full model) or samkit's own
  `{"family": "sam3", "config": {<Sam3Config field>: value, ...}}`.
- only a checkpoint in the `sam3.pt` layout (`detector.*` / `tracker.*` tensors): its
  architecture is read off the tensor shapes by `build_sam3_image_model`.

Standard library only at import time (torch is imported when a model is built).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samkit.configs.sam3 import SAM3_OFFICIAL, Sam3Config

SAM3_NAME = "sam3"
SAM3_CHECKPOINT_FILE = "sam3.pt"
SAM3_WEIGHTS_URL = "https://huggingface.co/facebook/sam3"

# official builder function -> constructor -> {official keyword: Sam3Config field}
_OFFICIAL_ARGS: dict[str, dict[str, dict[str, str]]] = {
    "_create_vit_backbone": {
        "ViT": {
            "img_size": "img_size",
            "patch_size": "patch_size",
            "pretrain_img_size": "pretrain_img_size",
            "embed_dim": "vit_embed_dim",
            "depth": "vit_depth",
            "num_heads": "vit_num_heads",
            "mlp_ratio": "vit_mlp_ratio",
            "window_size": "vit_window_size",
            "global_att_blocks": "vit_global_att_blocks",
        }
    },
    "_create_text_encoder": {
        "VETextEncoder": {
            "width": "text_width",
            "heads": "text_heads",
            "layers": "text_layers",
            "context_length": "context_length",
            "vocab_size": "vocab_size",
        }
    },
    "_create_transformer_encoder": {
        "TransformerEncoderFusion": {"num_layers": "encoder_layers"},
        "TransformerEncoderLayer": {"dim_feedforward": "encoder_ffn"},
    },
    "_create_transformer_decoder": {
        "TransformerDecoder": {"num_layers": "decoder_layers", "num_queries": "num_queries"},
        "TransformerDecoderLayer": {"dim_feedforward": "decoder_ffn"},
    },
    "_create_geometry_encoder": {
        "SequenceGeometryEncoder": {"num_layers": "geometry_layers"},
        "TransformerEncoderLayer": {"dim_feedforward": "geometry_ffn"},
    },
    "_create_dot_product_scoring": {"MLP": {"hidden_dim": "scoring_hidden"}},
}
# the video tracker's memory modules: not part of the image model, so their sizes do not matter
_VIDEO_ONLY_BUILDERS = (
    "_create_tracker_maskmem_backbone",
    "_create_tracker_transformer",
    "build_sam3_video_model",
)


def is_sam3_name(spec: str | None) -> bool:
    """True for the name `sam3` (any case)."""
    return isinstance(spec, str) and spec.strip().lower() == SAM3_NAME


def is_sam3_config(raw: Mapping[str, Any]) -> bool:
    """True for a config.json document of a SAM 3 model (`"family": "sam3"`)."""
    return isinstance(raw, Mapping) and raw.get("family") == SAM3_NAME


def sam3_config_from_json(raw: Mapping[str, Any], source: str = "the config") -> Sam3Config:
    """The `Sam3Config` of a SAM 3 config.json document (formats in the module docstring).

    Args:
        raw: the parsed JSON (`"family": "sam3"`).
        source: the file name, for error messages.

    Raises:
        ValueError: not a SAM 3 config, an unknown builder / constructor / argument or
            `Sam3Config` field, or a value of the wrong kind.
    """
    if not is_sam3_config(raw):
        raise ValueError(f'{source}: not a SAM 3 config (needs "family": "sam3")')
    fields = {f.name: f for f in dataclasses.fields(Sam3Config)}
    values: dict[str, Any] = {}
    overrides = raw.get("builder_overrides", {})
    own = raw.get("config", {})
    if not isinstance(overrides, Mapping) or not isinstance(own, Mapping):
        raise ValueError(f'{source}: "builder_overrides" and "config" must be JSON objects')
    for builder, constructors in overrides.items():
        if builder in _VIDEO_ONLY_BUILDERS:
            continue
        table = _OFFICIAL_ARGS.get(builder)
        if table is None or not isinstance(constructors, Mapping):
            raise ValueError(
                f"{source}: builder_overrides[{builder!r}] is not an image-model builder samkit "
                f"reads (known: {', '.join(sorted(_OFFICIAL_ARGS))})"
            )
        for constructor, kwargs in constructors.items():
            names = table.get(constructor)
            if names is None or not isinstance(kwargs, Mapping):
                raise ValueError(
                    f"{source}: builder_overrides[{builder!r}][{constructor!r}] is unknown "
                    f"(known: {', '.join(sorted(table))})"
                )
            for arg, value in kwargs.items():
                if arg not in names:
                    raise ValueError(
                        f"{source}: {builder}.{constructor}({arg}=...) is not an argument samkit "
                        f"reads (known: {', '.join(sorted(names))})"
                    )
                values[names[arg]] = value
    for name, value in own.items():
        if name not in fields:
            raise ValueError(
                f"{source}: config.{name} is not a Sam3Config field (known: {', '.join(fields)})"
            )
        values[name] = value
    for name, value in values.items():
        default = getattr(SAM3_OFFICIAL, name)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ValueError(f"{source}: {name} must be a list of integers, got {value!r}")
            values[name] = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{source}: {name} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or (isinstance(default, int) and not isinstance(value, int)) or value <= 0:
                kind = "a positive integer" if isinstance(default, int) else "a positive number"
                raise ValueError(f"{source}: {name} must be {kind}, got {value!r}")
    return dataclasses.replace(SAM3_OFFICIAL, **values)


def read_sam3_config(path: str | os.PathLike[str]) -> Sam3Config:
    """`sam3_config_from_json` of a file.

    Raises:
        FileNotFoundError: no such file.  ValueError: not JSON, or not a SAM 3 config.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable JSON config ({e})") from None
    return sam3_config_from_json(raw, str(p))


def sam3_build_kwargs(
    spec: str | None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
) -> dict[str, Any]:
    """The `build_sam3_image_model` keywords (`checkpoint_path`, `config`) for a model named
    `spec` (`sam3`, a SAM 3 config.json, or None with a checkpoint).

    Raises:
        ValueError: both or neither of a checkpoint and `random_weights` where one is needed;
            `sam3` without weights (says where to get `sam3.pt`); a bad config file.
    """
    if checkpoint is not None and random_weights:
        raise ValueError("a checkpoint and random weights exclude each other")
    if spec is None or is_sam3_name(spec):
        if checkpoint is None and not random_weights:
            checkpoint = cached_sam3_checkpoint()
        if checkpoint is None:
            return {"checkpoint_path": None, "config": SAM3_OFFICIAL}
        return {"checkpoint_path": str(checkpoint), "config": None}
    config = read_sam3_config(spec)
    if checkpoint is None and not random_weights:
        raise ValueError(
            f"{spec} is a config file: also give its checkpoint (or random weights for a smoke "
            "test)"
        )
    return {"checkpoint_path": None if checkpoint is None else str(checkpoint), "config": config}


def cached_sam3_checkpoint() -> Path:
    """`sam3.pt` in the checkpoint cache.

    Raises:
        ValueError: it is not there; the message says how to get it (samkit downloads nothing:
            Meta's weights need a Hugging Face access request).
    """
    from samkit.checkpoint import default_cache_dir

    path = default_cache_dir() / SAM3_CHECKPOINT_FILE
    if path.is_file():
        return path
    raise ValueError(
        f"SAM 3 needs the official {SAM3_CHECKPOINT_FILE}, which samkit does not download (Meta "
        f"gates it): request access at {SAM3_WEIGHTS_URL}, download {SAM3_CHECKPOINT_FILE} and "
        f"pass --checkpoint PATH (or put it at {path}); --random-weights builds the "
        "full-size model without weights for a smoke test"
    )


def build_sam3(
    spec: str | None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    device: Any = None,
    dtype: Any = None,
    checkpoint_state: dict[str, Any] | None = None,
) -> Any:
    """A `Sam3Image` in eval mode for a model named as in the module docstring.

    Args:
        spec: `sam3`, a SAM 3 config.json path, or None (architecture from `checkpoint`).
        checkpoint: an official-layout `sam3.pt` (or `.safetensors` with the same keys).
        random_weights: no weights (smoke tests only).
        device, dtype, checkpoint_state: as `build_sam3_image_model`'s (`checkpoint_state`:
            the tensors of the checkpoint already read).

    Raises:
        ValueError, FileNotFoundError: see `sam3_build_kwargs` and `build_sam3_image_model`.
    """
    from samkit.build.sam3 import build_sam3_image_model

    kwargs = sam3_build_kwargs(spec, checkpoint, random_weights)
    return build_sam3_image_model(
        device=device, dtype=dtype, checkpoint_state=checkpoint_state, **kwargs
    )


def sam3_img_size(model: Any) -> int:
    """The input side of a `Sam3Image` (1008 for the official model)."""
    return int(model.backbone.vision_backbone.trunk.img_size)
