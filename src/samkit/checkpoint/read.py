"""Read checkpoint files without ever executing a pickle.

`.pth` / `.pt` / `.bin` files are read with `torch.load(weights_only=True)` (memory-mapped when the
file is a zip checkpoint), `.safetensors` with `safetensors`; official wrappers (`{"model": ...}`,
`{"state_dict": ...}`) are unwrapped. Loading into a model and writing are in
`samkit.checkpoint.load`.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

_MAX_LISTED = 5  # offending keys listed per kind in an error message
_WRAPPER_KEYS = ("model", "state_dict")  # official SAM 2 format, Lightning-style checkpoints
_SAFETENSORS_SUFFIXES = (".safetensors",)


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
