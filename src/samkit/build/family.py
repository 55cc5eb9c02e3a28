"""Which model family a checkpoint belongs to, read off its tensor names.

The families name their tensors differently (SAM 1: `image_encoder.patch_embed.*`,
`mask_decoder.*`; SAM 2: `image_encoder.trunk.*`, `sam_mask_decoder.*`; SAM 3, the official
`sam3.pt`: `detector.*`, `tracker.*`; each family's prefixes are in its registry entry,
`samkit.build.registry`), so the keys alone say which builder can load a checkpoint. The builders
and the command line use this to tell a user who passed a checkpoint of another family exactly
that, instead of a list of missing keys; `resolve_family_config` does the same for a variant
name or config.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from samkit.build.registry import FAMILY_NAMES, display_name, get_family, state_dict_family
from samkit.configs.sam import (
    get_variant,
    load_config_json,
    official_yaml_to_variant,
    variant_names,
)
from samkit.io.provenance import with_article

__all__ = [
    "FAMILY_NAMES",
    "check_family",
    "checkpoint_family",
    "resolve_family_config",
    "state_dict_family",
]


def checkpoint_family(path: str | os.PathLike) -> str | None:
    """`state_dict_family` of a checkpoint file (zip checkpoints are memory-mapped, not copied).

    Raises:
        FileNotFoundError, ValueError: as `samkit.checkpoint.read_state_dict`.
    """
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                return state_dict_family(f.keys())
        except Exception:  # not readable as safetensors: let read_state_dict explain why
            pass
    from samkit.checkpoint import read_state_dict

    return state_dict_family(read_state_dict(p).keys())


def check_family(keys: Iterable[str], expected: str, source: str = "the checkpoint") -> None:
    """Raise a ValueError naming both families when `keys` belong to another family.

    Args:
        keys: the state dict's keys.
        expected: the registered name ("sam1", "sam2", ...) of the builder or model at hand.
        source: the file name, for the message.
    """
    found = state_dict_family(keys)
    if found is None or found == expected:
        return  # nothing recognisable: the key report of the loader says more
    raise ValueError(
        f"{source} is {_a(FAMILY_NAMES[found])} checkpoint, not {_a(FAMILY_NAMES[expected])} one: "
        f"load it with {get_family(found).builder_hint}"
    )


def resolve_family_config(
    spec: Any,
    family: str,
    config_type: type,
    from_official: Callable[[dict[str, Any]], Any],
) -> tuple[Any, str | None]:
    """(config, registered variant name or None) of a `family` model named by `spec`: a config
    object of `config_type`, a variant name (or an official YAML config name of one,
    `samkit.configs.sam.official_yaml_to_variant`), or the path of a config.json (an
    `os.PathLike`, a `.json` name or a path with a separator; parsed with `from_official`).

    Raises:
        ValueError: a variant or config.json of another family (the message names it and its
            builder), an unknown variant, an unreadable config, or a `spec` of another type.
        FileNotFoundError: a config path that does not exist.
    """
    entry = get_family(family)
    if isinstance(spec, config_type):
        return spec, None
    spec = official_yaml_to_variant(spec, family, entry.default_model)
    if isinstance(spec, os.PathLike) or (
        isinstance(spec, str) and (spec.endswith(".json") or os.sep in spec)
    ):
        raw = load_config_json(spec)
        if not isinstance(raw, dict):
            raise ValueError(f"{spec}: expected a JSON object")
        other = raw.get("family", family)
        if other != family:
            raise ValueError(
                f"{spec}: a {display_name(other)} config, not {_a(entry.display)} one"
                + _use_builder_of(other)
            )
        return from_official(raw), None
    if isinstance(spec, str):
        variant = get_variant(spec)
        if variant.family != family:
            names = variant_names(family)
            ours = (
                f"the {entry.display} variant is {names[0]}"
                if len(names) == 1
                else f"{entry.display} variants are {', '.join(names)}"
            )
            raise ValueError(
                f"{spec!r} is {_a(display_name(variant.family))} variant; {ours}"
                + _use_builder_of(variant.family)
            )
        return variant.config, variant.name
    raise ValueError(
        f"expected {_a(entry.display)} variant name (e.g. {entry.default_model!r}), "
        f"{_a(config_type.__name__)} or a config.json path; got {type(spec).__name__}"
    )


def _a(display: str) -> str:
    """A name with its article, as read aloud: "a SAM 2", "an EdgeTAM", "an HQ-SAM"."""
    return with_article(display)


def _use_builder_of(family: Any) -> str:
    if isinstance(family, str) and family in FAMILY_NAMES:
        return f"; use samkit.{get_family(family).builder_hint}"
    return ""
