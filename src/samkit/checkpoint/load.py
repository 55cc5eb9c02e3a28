"""Load checkpoints into models and write them.

Loading into a model is strict: every missing key, unexpected key and shape mismatch is reported
in one `ValueError`. Reading files (never executing a pickle) is `samkit.checkpoint.read`,
re-exported here (`read_state_dict`, `read_metadata`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from samkit.checkpoint.read import read_metadata as read_metadata
from samkit.checkpoint.read import read_state_dict as read_state_dict

logger = logging.getLogger("samkit")

_MAX_LISTED = 5  # offending keys listed per kind in an error message


@dataclass(frozen=True)
class LoadReport:
    """What `load_state_dict_into` did.

    Attributes:
        loaded: number of state-dict entries copied into the model.
        unused: checkpoint keys skipped because they start with one of `ignore_prefixes`.
        source: where the state dict came from (a path or a description).
    """

    loaded: int
    unused: tuple[str, ...]
    source: str


def _dtype_kind(dt: torch.dtype) -> str:
    if dt == torch.bool:
        return "bool"
    if dt.is_complex:
        return "complex"
    if dt.is_floating_point:
        return "float"
    return "int"


def load_state_dict_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "<state dict>",
    ignore_prefixes: tuple[str, ...] = (),
) -> LoadReport:
    """Strictly load a state dict into `model`, reporting every problem at once.

    Keys of `model.state_dict()` missing from the checkpoint, checkpoint keys the model does not
    have (except those starting with one of `ignore_prefixes`), shape mismatches and incompatible
    dtypes (e.g. floats into an integer buffer) raise one `ValueError` listing the first few of
    each kind and the totals. Floating-point tensors are cast to the model's dtype; the model keeps
    its device and dtype. Non-persistent buffers are not part of the state dict and don't count.
    A model on the `meta` device gets the checkpoint tensors assigned (cast to its dtypes).

    Args:
        model: the module to fill.
        state_dict: flat ``{name: tensor}`` dict, e.g. from `read_state_dict`.
        source: name of the checkpoint in messages (usually its path).
        ignore_prefixes: checkpoint key prefixes to skip silently (e.g. SAM 2's
            ``"memory_attention."`` for an image-only model); reported in `LoadReport.unused` and
            in one INFO log line.

    Returns:
        A `LoadReport`.

    Raises:
        ValueError: the checkpoint does not fit the model.
    """
    if isinstance(ignore_prefixes, str):
        ignore_prefixes = (ignore_prefixes,)
    expected = model.state_dict(keep_vars=True)
    unused = tuple(k for k in state_dict if k not in expected and k.startswith(ignore_prefixes))
    unused_set = set(unused)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected and k not in unused_set]
    shapes: list[str] = []
    dtypes: list[str] = []
    for k, ref in expected.items():
        v = state_dict.get(k)
        if v is None:
            continue
        if not isinstance(v, torch.Tensor):
            dtypes.append(f"{k}: expected a tensor, found {type(v).__name__}")
        elif tuple(v.shape) != tuple(ref.shape):
            shapes.append(f"{k}: expected {tuple(ref.shape)}, found {tuple(v.shape)}")
        elif _dtype_kind(v.dtype) != _dtype_kind(ref.dtype):
            dtypes.append(f"{k}: expected {ref.dtype}, found {v.dtype}")

    if missing or unexpected or shapes or dtypes:
        parts = [f"checkpoint {source} does not fit {type(model).__name__}:"]
        for title, items in (
            ("missing keys (in the model, not in the checkpoint)", missing),
            ("unexpected keys (in the checkpoint, not in the model)", unexpected),
            ("shape mismatches", shapes),
            ("dtype mismatches", dtypes),
        ):
            if items:
                more = (
                    f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                )
                parts.append(f"{len(items)} {title}: {', '.join(items[:_MAX_LISTED])}{more}")
        if unexpected and not missing and not shapes:
            parts.append(
                "(pass ignore_prefixes=... to skip checkpoint parts the model does not use)"
            )
        raise ValueError("\n  ".join(parts))

    if unused:
        prefixes = sorted({p for k in unused for p in ignore_prefixes if k.startswith(p)})
        logger.info(
            "%s: ignored %d checkpoint tensors not used by %s (prefixes: %s)",
            source,
            len(unused),
            type(model).__name__,
            ", ".join(prefixes),
        )

    on_meta = any(t.is_meta for t in expected.values())
    filtered: dict[str, torch.Tensor] = {}
    for k, ref in expected.items():
        v = state_dict[k]
        if on_meta:  # assign=True keeps the given tensors as they are: cast (and place) first
            v = v.to(dtype=ref.dtype, device="cpu" if ref.is_meta else ref.device)
        filtered[k] = v  # otherwise copy_ casts and moves into the existing parameter
    with torch.no_grad():
        model.load_state_dict(filtered, strict=True, assign=on_meta)
    return LoadReport(loaded=len(filtered), unused=unused, source=source)


# --------------------------------------------------------------------------------------------
# writing


def save_checkpoint(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a model's weights (or a state dict) as a `.safetensors` file, atomically.

    Tensors are written contiguous and on the CPU; tensors sharing memory (tied weights, views)
    are cloned so each entry stands alone. The file is written to a temporary file in the same
    directory and moved into place with `os.replace`, so a reader never sees a partial file.

    Args:
        model_or_state_dict: an `nn.Module` (its `state_dict()` is saved) or a flat tensor dict.
        path: destination file (parent directories are created).
        metadata: optional text metadata stored in the safetensors header.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    dest = Path(path)
    sd = (
        model_or_state_dict.state_dict()
        if isinstance(model_or_state_dict, nn.Module)
        else model_or_state_dict
    )
    if not isinstance(sd, Mapping):
        raise ValueError(
            f"save_checkpoint: expected an nn.Module or a dict of tensors, found {type(sd).__name__}"
        )
    meta = {"format": "pt"} if metadata is None else dict(metadata)
    bad_meta = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad_meta:
        raise ValueError(f"save_checkpoint: metadata keys and values must be str, not {bad_meta!r}")
    meta.setdefault("format", "pt")

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValueError(
                f"save_checkpoint: entry {k!r} is {type(v).__name__}; expected str -> Tensor"
            )
        t = v.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)  # shared or a view: own copy
        else:
            t = t.contiguous()
        if t.numel():
            seen.add(ptr)
        tensors[k] = t

    from samkit.io.atomic import atomic_path

    with atomic_path(dest) as tmp:  # the user's umask mode, not safetensors' 0600
        save_file(tensors, str(tmp), metadata=meta)
    return dest
