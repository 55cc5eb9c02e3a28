"""Which model family (SAM 1, SAM 2 or SAM 3) a checkpoint's state dict belongs to.

The families name their tensors differently (SAM 1: `image_encoder.patch_embed.*`,
`mask_decoder.*`; SAM 2: `image_encoder.trunk.*`, `sam_mask_decoder.*`; SAM 3, the official
`sam3.pt`: `detector.*`, `tracker.*`), so the keys alone say
which builder can load a checkpoint. The builders and the command line use this to tell a user
who passed a checkpoint of the other family exactly that, instead of a list of missing keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

FAMILY_NAMES = {"sam1": "SAM 1", "sam2": "SAM 2", "sam3": "SAM 3"}
_MARKERS = {
    "sam1": ("image_encoder.patch_embed.", "mask_decoder.", "prompt_encoder."),
    "sam2": ("image_encoder.trunk.", "sam_mask_decoder.", "sam_prompt_encoder."),
    "sam3": ("detector.",),  # tracker.* alone is no image model
}
_BUILDERS = {
    "sam1": "build_sam (CLI: --model vit_b / vit_l / vit_h, or no --model)",
    "sam2": "build_sam2 (CLI: --model sam2.1_hiera_t / _s / _b+ / _l, or no --model)",
    "sam3": "build_sam3_image_model (CLI: --model sam3, or no --model)",
}


def state_dict_family(keys: Iterable[str]) -> str | None:
    """The family, "sam1", "sam2" or "sam3", of a state dict's keys; None when none is there."""
    found = {fam: 0 for fam in _MARKERS}
    for k in keys:
        for fam, prefixes in _MARKERS.items():
            if k.startswith(prefixes):
                found[fam] += 1
    best = max(found, key=lambda fam: found[fam])
    return best if found[best] else None


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
    """Raise a ValueError naming both families when `keys` belong to the other family.

    Args:
        keys: the state dict's keys.
        expected: "sam1", "sam2" or "sam3", the family of the builder or model at hand.
        source: the file name, for the message.
    """
    found = state_dict_family(keys)
    if found is None or found == expected:
        return  # nothing recognisable: the key report of the loader says more
    raise ValueError(
        f"{source} is a {FAMILY_NAMES[found]} checkpoint, not a {FAMILY_NAMES[expected]} one: "
        f"load it with {_BUILDERS[found]}"
    )
