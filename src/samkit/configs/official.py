"""What every official hydra-resolved config.json of SAM 2 and the models built on it (EfficientTAM,
EdgeTAM) spells the same way: the `model` mapping, `_target_` class names, the decoder's extra
arguments and the video flags. Each family's parser (`sam2_config_from_official`,
`efficienttam_config_from_official`, `edgetam_config_from_official`) reads its own trunk and neck
and these pieces through here; the defaults are the official constructors' (`SAM2Base`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from samkit.configs.common import MaskDecoderConfig

# the video flags of `SAM2Base`, with the constructor's defaults
_VIDEO_FLAGS = (
    ("directly_add_no_mem_embed", False),
    ("no_obj_embed_spatial", False),
    ("proj_tpos_enc_in_obj_ptrs", False),
    ("use_signed_tpos_enc_to_obj_ptrs", False),
    ("add_tpos_enc_to_obj_ptrs", True),
)


def model_mapping(cfg: dict[str, Any]) -> dict[str, Any]:
    """The `model` mapping of an official config: `cfg["model"]` when `cfg` holds it (the
    fixture config.json format), else `cfg` itself."""
    if "model" in cfg and isinstance(cfg["model"], dict):
        return cfg["model"]
    return cfg


def target_name(d: Any) -> str:
    """The class name of a hydra node's `_target_` (`"sam2.modeling.backbones.hieradet.Hiera"`
    -> `"Hiera"`); "" for a node without one or no mapping at all."""
    return str(d.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(d, dict) else ""


def with_decoder_extra_args(dec: MaskDecoderConfig, cfg: dict[str, Any]) -> MaskDecoderConfig:
    """`dec` with the dynamic multimask settings of the model's `sam_mask_decoder_extra_args`
    (absent: off, stability delta 0.05, threshold 0.98, the official defaults)."""
    extra = cfg.get("sam_mask_decoder_extra_args") or {}
    return dataclasses.replace(
        dec,
        dynamic_multimask_via_stability=bool(extra.get("dynamic_multimask_via_stability", False)),
        dynamic_multimask_stability_delta=float(
            extra.get("dynamic_multimask_stability_delta", 0.05)
        ),
        dynamic_multimask_stability_thresh=float(
            extra.get("dynamic_multimask_stability_thresh", 0.98)
        ),
    )


def video_flags(cfg: dict[str, Any]) -> dict[str, bool]:
    """The `SAM2Base` flags every SAM 2-layout config dataclass has, as keyword arguments:
    `directly_add_no_mem_embed`, `no_obj_embed_spatial` (SAM 2.1), `proj_tpos_enc_in_obj_ptrs`,
    `use_signed_tpos_enc_to_obj_ptrs`, `add_tpos_enc_to_obj_ptrs`."""
    return {name: bool(cfg.get(name, default)) for name, default in _VIDEO_FLAGS}


def is_official_config(raw: Any, family: str, match: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether a parsed config.json is `family`'s: it says `"family": family`, or its `model`
    mapping passes `match` (a lookup that raises KeyError / TypeError counts as no match)."""
    if not isinstance(raw, dict):
        return False
    if raw.get("family") == family:
        return True
    try:
        return bool(match(raw.get("model", raw)))
    except (KeyError, TypeError):
        return False
