"""Which model family a checkpoint belongs to, read off its tensor names.

The families name their tensors differently (SAM 1: `image_encoder.patch_embed.*`,
`mask_decoder.*`; SAM 2: `image_encoder.trunk.*`, `sam_mask_decoder.*`; SAM 3, the official
`sam3.pt`: `detector.*`, `tracker.*`; each family's prefixes are in its registry entry,
`samkit.build.registry`), so the keys alone say which builder can load a checkpoint. The builders
and the command line use this to tell a user who passed a checkpoint of another family exactly
that, instead of a list of missing keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from samkit.build.registry import FAMILY_NAMES, get_family, state_dict_family

__all__ = ["FAMILY_NAMES", "check_family", "checkpoint_family", "state_dict_family"]


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
        f"{source} is a {FAMILY_NAMES[found]} checkpoint, not a {FAMILY_NAMES[expected]} one: "
        f"load it with {get_family(found).builder_hint}"
    )
