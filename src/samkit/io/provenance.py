"""What made a file: recorded by every samkit writer, checked by every reader.

Embeddings (`samkit.io.embeddings`), ONNX exports (`samkit.export`), fine-tuning checkpoints, merged
models and adapter files (`samkit.train`) store one `Provenance` in their text metadata (a JSON
string under `METADATA_KEY`). A reader builds the `Provenance` of the model it is about to use the
file with (`of_model`) and calls `check`, which raises a ValueError naming both sides, e.g.::

    truck.safetensors was made by sam2 hiera_t (embedding 256x64x64, image 1024) but the
    predictor holds sam1 vit_b (embedding 256x64x64, image 1024)

instead of an AttributeError deep inside a predictor or a silently wrong mask. Two models agree
when they have the same family, the same architecture signature (a hash of every layer's kind and
size, see `arch_signature`) and the same image-embedding shape. Precision (fp32, bf16, int8),
`torch.compile`, LoRA and adapters do not change the signature: an embedding or a checkpoint moves
freely between those forms of one architecture. Weights are not compared (a fine-tuned model has
its base model's signature).

This module imports neither torch nor onnx: models are read through their attributes, so the
onnxruntime predictors use it too. A future writer (e.g. video outputs) stamps its metadata with
`to_metadata(of_model(model))` and its reader calls `check(from_metadata(meta), ..., what=path)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

METADATA_KEY = "samkit_provenance"
# Parts of a model that fine-tuning adds on top of an architecture (not part of its signature).
_ADDED_PARTS = (".adapter", "lora_A", "lora_B")
# family name -> the name people read; filled by `samkit.build.registry` (a higher layer) for
# every family it registers, so messages here can say "SAM 2" without knowing the families
_DISPLAY_NAMES: dict[str, str] = {}
_FAMILY_ID = re.compile(r"[a-z][a-z0-9_.+-]*")


def set_display_name(family: str, display: str) -> None:
    """Record how messages name a family (`samkit.build.registry.register` calls this)."""
    _DISPLAY_NAMES[family] = display


def display_name(family: str) -> str:
    """ "SAM 2" for "sam2" once the registry is imported; else the name as it is."""
    return _DISPLAY_NAMES.get(family, family)


# initialisms read letter by letter whose first letter's name starts with a vowel sound
_SPELLED_OUT = ("HQ",)


def with_article(name: str) -> str:
    """A name with its indefinite article as read aloud: "a SAM 2", "a MobileSAM", "an EdgeTAM",
    "an EfficientTAM", "an HQ-SAM" (said "aitch-cue"); "a SAM 1 or SAM 2" for a list."""
    an = name[:1].upper() in "AEIOU" or name.startswith(_SPELLED_OUT)
    return f"{'an' if an else 'a'} {name}"


@dataclass(frozen=True)
class Provenance:
    """The model a file was made with.

    Attributes:
        family: the model's family ("sam1", "sam2", "sam3", ...: `samkit.build.registry`).
        arch: readable architecture: an official name (`vit_b`, `hiera_t`, ...) or a short
            description of a custom one (`ViT 64 wide x 4 blocks`).
        signature: `arch_signature` of the model ("" when unknown, e.g. a file from before
            samkit recorded it: then only family and sizes are compared).
        embedding_shape: (C, h, w) of the image embedding.
        img_size: the encoder's input side in pixels.
        version: the samkit version that wrote the file.
    """

    family: str
    arch: str
    signature: str
    embedding_shape: tuple[int, int, int]
    img_size: int
    version: str = ""

    def describe(self) -> str:
        """E.g. 'sam1 vit_b (embedding 256x64x64, image 1024)'."""
        c, h, w = self.embedding_shape
        return f"{self.family} {self.arch} (embedding {c}x{h}x{w}, image {self.img_size})"

    def mismatch(self, other: Provenance) -> str | None:
        """What differs from `other` (None when a file of one fits the other)."""
        if self.family != other.family:
            return "family"
        if tuple(self.embedding_shape) != tuple(other.embedding_shape):
            return "embedding shape"
        if self.img_size != other.img_size:
            return "image size"
        if self.signature and other.signature and self.signature != other.signature:
            return "architecture"
        return None


def family_of(model: Any) -> str:
    """The family a model says it is (its `family` attribute: "sam1", "sam2", "sam3", ...).

    Raises:
        ValueError: not a samkit model (no `family` name).
    """
    family = getattr(model, "family", None)
    if not isinstance(family, str) or not family:
        raise ValueError(
            f"expected a samkit model (build_sam / build_sam2 / build_sam3_image_model, or any "
            f"model with a `family`), got {type(model).__name__}"
        )
    return family


def _layer_size(module: Any) -> tuple[Any, ...] | None:
    """A layer's kind and size, the same for its fp32, bf16, int8, compiled and LoRA forms."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return ("linear", int(module.in_features), int(module.out_features))
    if hasattr(module, "in_channels") and hasattr(module, "kernel_size"):
        kind = "convT" if "Transpose" in type(module).__name__ else "conv"
        size = (int(module.in_channels), int(module.out_channels), tuple(module.kernel_size))
        return (kind, *size, tuple(module.stride))
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return ("embedding", int(module.num_embeddings), int(module.embedding_dim))
    return None


def arch_signature(model: Any) -> str:
    """A 16-hex-digit hash of the model's layers (names, kinds, sizes) and its own tensors' shapes.

    Dtype, device, int8 quantisation, `torch.compile`, LoRA wrappers and adapters leave it
    unchanged; any other change of architecture (width, depth, heads' layer sizes, windows with
    different position tables, ...) changes it.
    """
    parts = []
    for name, module in model.named_modules():
        if any(p in name for p in _ADDED_PARTS):
            continue
        size = _layer_size(module)
        if size is not None:
            parts.append((name, *size))
            continue
        if hasattr(module, "named_parameters"):
            for pname, p in module.named_parameters(recurse=False):
                if not any(a in pname for a in _ADDED_PARTS):
                    parts.append((f"{name}.{pname}", tuple(p.shape)))
    return hashlib.sha256(repr(sorted(parts)).encode()).hexdigest()[:16]


def of_model(model: Any) -> Provenance:
    """The `Provenance` of a samkit model (what a file made with it records), from what the
    model says it is: `family`, `variant`, `image_embedding_shape`, `image_size` (a SAM 3
    model's image embedding is its detector's coarsest level, d_model x S/14 x S/14)."""
    from samkit import __version__

    return Provenance(
        family=family_of(model),
        arch=str(model.variant),
        signature=arch_signature(model),
        embedding_shape=tuple(int(v) for v in model.image_embedding_shape),  # type: ignore[arg-type]
        img_size=int(model.image_size),
        version=__version__,
    )


def to_metadata(prov: Provenance) -> dict[str, str]:
    """{METADATA_KEY: JSON} to merge into a file's text metadata."""
    return {METADATA_KEY: json.dumps(asdict(prov))}


def from_json(value: Any, source: str = "the file") -> Provenance:
    """A `Provenance` from its JSON text (or the already-decoded dict)."""
    try:
        d = json.loads(value) if isinstance(value, str) else dict(value)
        prov = Provenance(
            family=str(d["family"]),
            arch=str(d.get("arch", "")),
            signature=str(d.get("signature", "")),
            embedding_shape=tuple(int(v) for v in d["embedding_shape"]),  # type: ignore[arg-type]
            img_size=int(d["img_size"]),
            version=str(d.get("version", "")),
        )
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{source}: unreadable {METADATA_KEY} metadata ({e!r})") from None
    # any lowercase id: the families are open (`samkit.build.registry`); one this reader's model
    # is not of is refused by `check` (family differs)
    if not _FAMILY_ID.fullmatch(prov.family) or len(prov.embedding_shape) != 3:
        raise ValueError(f"{source}: {METADATA_KEY} metadata is not a samkit provenance: {d}")
    return prov


def from_metadata(meta: Mapping[str, Any], source: str = "the file") -> Provenance | None:
    """The `Provenance` stored in a metadata map (None when the file has none)."""
    value = meta.get(METADATA_KEY)
    return None if value is None else from_json(value, source)


def check(found: Provenance | None, expected: Provenance | None, what: str, user: str) -> None:
    """Raise a ValueError naming both sides unless a file made by `found` fits `expected`.

    Args:
        found: the file's provenance (None: the file does not record one; nothing to check).
        expected: the provenance of the model the file is about to be used with (None:
            unknown, e.g. an onnxruntime predictor on official files; nothing to check).
        what: the file, e.g. its path ("truck.safetensors").
        user: who uses it, e.g. "the predictor".

    Raises:
        ValueError: family, embedding shape, image size or architecture differ.
    """
    if found is None or expected is None:
        return
    diff = found.mismatch(expected)
    if diff is not None:
        raise ValueError(
            f"{what} was made by {found.describe()} but {user} holds {expected.describe()} "
            f"({diff} differs): use a file made by this model, or the model that made it"
        )


def read_file_metadata(path: Any) -> dict[str, str]:
    """The text metadata of a `.safetensors` file ({} for other files or a file without any).

    Reads only the header (stdlib only): the 8-byte length and the JSON that follows it.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 2 <= n <= 100_000_000:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def check_file(path: Any, model: Any, user: str) -> Provenance | None:
    """Check the provenance recorded in a `.safetensors` file against `model` (see `check`).

    Returns:
        The file's provenance, None when it records none (official checkpoints, `.pth` files).
    """
    found = from_metadata(read_file_metadata(path), str(path))
    check(found, of_model(model), str(path), user)
    return found
