"""Read, check and write checkpoints without ever executing a pickle.

`.pth` / `.pt` / `.bin` files are read with `torch.load(weights_only=True)` (memory-mapped when the
file is a zip checkpoint), `.safetensors` with `safetensors`. Loading into a model is strict: every
missing key, unexpected key and shape mismatch is reported in one `ValueError`.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger("samkit")

_MAX_LISTED = 5  # offending keys listed per kind in an error message
_WRAPPER_KEYS = ("model", "state_dict")  # official SAM 2 format, Lightning-style checkpoints
_SAFETENSORS_SUFFIXES = (".safetensors",)


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


# --------------------------------------------------------------------------------------------
# reading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict on the CPU.

    Accepts torch checkpoints (zip or legacy format, any extension such as `.pth`, `.pt`, `.bin`)
    and `.safetensors` files. `{"model": sd}` (official SAM 2) and `{"state_dict": sd}` wrappers
    are unwrapped. Pickles are only read with `weights_only=True`: a pickle that would construct
    arbitrary objects or call functions is refused, never executed.

    Args:
        path: the checkpoint file.

    Returns:
        The state dict, with the tensors as stored (dtype unchanged). Zip checkpoints are
        memory-mapped, so the tensors share pages with the file until they are copied.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable checkpoint (truncated, an image, text, a pickle
            that would execute code, not a flat dict of tensors, ...).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    if p.is_dir():
        raise ValueError(
            f"{p}: is a directory, expected a checkpoint file (.pth, .pt, .safetensors)"
        )
    with open(p, "rb") as f:
        head = f.read(64)
    size = p.stat().st_size
    kind = _sniff(head, size)

    if p.suffix.lower() in _SAFETENSORS_SUFFIXES or kind == "safetensors":
        obj = _read_safetensors(p)
    elif kind == "zip":
        obj = _torch_load(p, mmap=True)
    elif kind == "pickle":
        obj = _torch_load(p, mmap=False)
    else:
        raise ValueError(
            f"{p}: not a checkpoint: {kind}. Expected a PyTorch checkpoint "
            "(torch.save of a state dict: .pth/.pt/.bin) or a .safetensors file"
        )
    return _as_flat_state_dict(obj, p)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata stored in a `.safetensors` header (empty dict when there is none)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise ValueError(f"{p}: not a readable .safetensors file ({e})") from e


def _sniff(head: bytes, size: int) -> str:
    """Classify a file by its first bytes: 'zip', 'pickle', 'safetensors' or a description."""
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"  # legacy torch.save format (pickle protocol 2+)
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{" and head[9:10] in (b'"', b"}"):
            return "safetensors"
    known = (
        (b"\xff\xd8\xff", "it is a JPEG image"),
        (b"\x89PNG\r\n\x1a\n", "it is a PNG image"),
        (b"GIF8", "it is a GIF image"),
        (b"%PDF", "it is a PDF document"),
        (b"\x1f\x8b", "it is a gzip archive"),
        (b"\x93NUMPY", "it is a NumPy .npy array"),
        (b"\x89HDF", "it is an HDF5 file"),
        (b"\x08", "it looks like an ONNX/protobuf file"),
    )
    for magic, what in known:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it is a WebP image"
    if head.lstrip()[:1] in (b"<",) and b"html" in head.lower():
        return "it is an HTML page (a download that returned an error page?)"
    text = None
    for cut in range(4):  # the 64-byte window may split a multi-byte character
        with contextlib.suppress(UnicodeDecodeError):
            text = head[: len(head) - cut].decode("utf-8")
            break
    if text is None or "\x00" in text:
        return f"unrecognised binary content starting with {head[:8].hex(' ')}"
    snippet = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is a text file (starts with {snippet!r})"


def _torch_load(p: Path, *, mmap: bool) -> object:
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ValueError(_unpickling_message(p, str(e))) from None
    except RuntimeError as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            raise ValueError(_unpickling_message(p, msg)) from None
        if "central directory" in msg or "zip archive" in msg or "PytorchStreamReader" in msg:
            raise ValueError(
                f"{p}: truncated or corrupt checkpoint: its zip archive cannot be read "
                f"({msg.split('.')[0]}). Download or copy the file again"
            ) from None
        raise ValueError(
            f"{p}: cannot be read as a PyTorch checkpoint ({_first_line(msg)})"
        ) from None
    except (EOFError, KeyError, ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        what = (
            "the file ends early (truncated?)" if isinstance(e, EOFError) else _first_line(repr(e))
        )
        raise ValueError(f"{p}: cannot be read as a PyTorch checkpoint: {what}") from None


def _unpickling_message(p: Path, msg: str) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", msg)
    if m is not None and m.group(1).startswith("torch.") and not _torch_has(m.group(1)):
        # a name torch does not have: the pickle stream is cut off or damaged
        return (
            f"{p}: truncated or corrupt checkpoint: its pickle data references "
            f"{m.group(1)!r}, which does not exist. Download or copy the file again"
        )
    if m is not None:
        return (
            f"{p}: refused: loading this pickle would execute code or build arbitrary Python "
            f"objects (it references {m.group(1)}), and samkit never executes pickles. Expected "
            "a plain state dict (torch.save(model.state_dict(), path)) or a .safetensors file"
        )
    detail = [ln.strip() for ln in msg.splitlines() if ln.strip() and "Unsupported" in ln]
    why = detail[0] if detail else _first_line(msg)
    return (
        f"{p}: refused: not a plain tensor checkpoint, the weights-only unpickler rejected it "
        f"({why}). Loading it unrestricted could execute code. Expected a state dict saved with "
        "torch.save or a .safetensors file"
    )


def _torch_has(name: str) -> bool:
    """Whether a dotted `torch.` name resolves by attribute access (nothing is imported)."""
    obj: object = torch
    for part in name.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # SafetensorError is not importable under a stable name
        raise ValueError(
            f"{p}: not a readable .safetensors file ({_first_line(str(e))}); "
            "it may be truncated or not a safetensors file at all"
        ) from None


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else msg


def _as_flat_state_dict(obj: object, p: Path) -> dict[str, torch.Tensor]:
    for _ in range(2):  # at most {"model": {"state_dict": sd}}
        if isinstance(obj, Mapping) and not _all_tensors(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{p}: expected a dict of tensors (a state dict), found {type(obj).__name__}"
        )
    if not obj:
        raise ValueError(f"{p}: the checkpoint holds an empty dict, expected model weights")
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"{p}: state-dict keys must be strings, found {bad_keys[:_MAX_LISTED]!r}")
    bad = [(k, type(v).__name__) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        listed = ", ".join(f"{k!r} ({t})" for k, t in bad[:_MAX_LISTED])
        wrappers = " or ".join(repr(k) for k in _WRAPPER_KEYS)
        raise ValueError(
            f"{p}: expected a flat dict of tensors, but {len(bad)} of {len(obj)} entries are not "
            f"tensors: {listed}. Top-level keys: {list(obj)[:10]!r}; samkit unwraps {wrappers}"
        )
    return dict(obj)


def _all_tensors(d: Mapping) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


# --------------------------------------------------------------------------------------------
# loading into a model


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
