"""Image embedding files: what `samkit embed` writes and `SamPredictor.set_embedding` loads.

A file is a safetensors archive with the image encoder's output (SAM 1, MobileSAM:
`image_embedding`, 1xCxhxw; HQ-SAM: plus `interm_embedding`, 1xVxhxw, the early encoder feature
its decoder fuses; SAM 2: `image_embedding` = the predictor's `image_embed`, plus
`high_res_feats_0` and `high_res_feats_1` (EfficientTAM: `image_embedding` alone); SAM 3:
`image_embedding` = the detector's 72x72 level, plus the other levels `backbone_fpn_0/1` and the
interactive head's `sam2_backbone_fpn_0/1/2`, see `samkit.amg.sam3.sam3_image_features`), and
string metadata:

| key | meaning |
|---|---|
| `format` | `samkit.embedding/1` |
| `variant` | the model (variant name or config path) that computed it |
| `family` | the registry family: `sam1`, `sam2`, `sam3`, `mobile_sam`, `sam_hq`, ... |
| `original_size` | `H,W` of the image |
| `input_size` | `H,W` of the resized image before padding (the model input frame) |
| `img_size` | the encoder's input side (1024 for the official models) |
| `image_sha256` | sha256 of the HxWx3 uint8 RGB pixels (C order), to check it is the same image |
| `file_name` | the image's file name (informational) |
| `samkit_provenance` | the model that computed it (`samkit.io.provenance`): family, architecture, sizes, version |

`ImageEmbedding.apply` checks the provenance against the predictor's model and raises a
ValueError naming both when they differ (another family, architecture or embedding size); files
written before samkit recorded it are checked on family and embedding shape.

Usage::

    emb = load_embedding("truck.safetensors")
    predictor.set_embedding(emb.embedding, emb.original_size, emb.input_size)  # SAM 1
    emb.apply(predictor)  # any family: predictor.set_image_features(emb.tensors, ...)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from samkit.io.atomic import atomic_path
from samkit.io.provenance import (
    Provenance,
    check,
    display_name,
    from_metadata,
    of_model,
    to_metadata,
    with_article,
)

FORMAT = "samkit.embedding/1"
_KEY = "image_embedding"


@dataclass(frozen=True)
class ImageEmbedding:
    """A loaded embedding file.

    Attributes:
        embedding: 1xCxhxw float tensor (CPU).
        original_size: (H, W) of the image.
        input_size: (H, W) of the resized image in the model input frame.
        variant: the model that computed it.
        family: the model's family ("sam1", "sam2", "sam3", ...).
        img_size: the encoder's input side.
        image_sha256: sha256 of the RGB pixels, or "" if not recorded.
        metadata: every metadata string of the file.
        tensors: every tensor of the file (the predictor's `get_image_features`; SAM 2 adds
            `high_res_feats_0/1`).
        source: where it was read from (its path), for messages.
    """

    embedding: Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    variant: str
    family: str
    img_size: int
    image_sha256: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    source: str = "this embedding"

    @property
    def provenance(self) -> Provenance:
        """The model that made it (from the metadata; older files: family, variant, sizes)."""
        prov = from_metadata(self.metadata, self.source)
        if prov is None:
            c, h, w = (int(v) for v in self.embedding.shape[1:])
            prov = Provenance(self.family, self.variant, "", (c, h, w), self.img_size)
        return prov

    def apply(self, predictor: Any) -> None:
        """Give `predictor` this image's features, skipping its encoder.

        Works with every family's image predictor (`SamPredictor`, `Sam2ImagePredictor`, the
        SAM 3 click predictor, the onnxruntime predictors): `restore_features`.

        Raises:
            ValueError: the embedding was made by a model of another family, architecture or
                embedding size than the predictor's (the message names both).
        """
        try:
            check(self.provenance, predictor_provenance(predictor), self.source, "the predictor")
        except ValueError as e:
            mine = predictor_family(predictor)
            if mine is None or mine == self.family:
                raise
            raise ValueError(
                f"this is {with_article(display_name(self.family))} embedding ({self.variant}), "
                f"but the predictor is {display_name(mine)}: embed the image with a model of "
                f"the same family ({e})"
            ) from None
        restore_features(
            predictor,
            self.family,
            self.tensors or {_KEY: self.embedding},
            self.original_size,
            self.input_size,
        )


def predictor_provenance(predictor: Any) -> Provenance | None:
    """The provenance of a predictor's model (onnxruntime predictors: their files' metadata)."""
    if hasattr(predictor, "model"):
        return of_model(predictor.model)
    return getattr(predictor, "provenance", None)


def predictor_family(predictor: Any) -> str | None:
    """The family a predictor serves (its `family`), None when it does not say."""
    family = getattr(predictor, "family", None)
    return family if isinstance(family, str) else None


def features_of(predictor: Any, family: str | None = None) -> dict[str, Tensor]:
    """The current image's encoder output as flat named tensors, what an embedding file stores:
    the predictor's `get_image_features()` (every family's predictor has it; `family`, when
    given, is checked against the predictor's).

    Raises:
        ValueError: `family` is not the predictor's, or no image is set.
    """
    _check_family(predictor, family, "asked for")
    return predictor.get_image_features()


def restore_features(
    predictor: Any,
    family: str,
    tensors: dict[str, Tensor],
    original_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
) -> None:
    """Set stored features (`features_of`) on a fresh predictor, as if `set_image` had run:
    its `set_image_features(tensors, original_size, input_size)`.

    Raises:
        ValueError: `family` is not the predictor's, or tensors the predictor needs are missing.
    """
    _check_family(predictor, family, "these are")
    predictor.set_image_features(tensors, original_size, input_size)


def _check_family(predictor: Any, family: str | None, what: str) -> None:
    held = predictor_family(predictor)
    if family is not None and held is not None and held != family:
        raise ValueError(f"{what} {family} image features but the predictor holds a {held} model")


def rgb_sha256(image: np.ndarray) -> str:
    """sha256 of an HxWx3 uint8 array's bytes (C order), prefixed by nothing: the fixture convention."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _size(text: str, key: str, path: Path) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{path}: metadata {key}={text!r} is not 'H,W'") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{path}: metadata {key}={text!r} must be positive")
    return h, w


def save_embedding(
    path: str | os.PathLike,
    embedding: Tensor | dict[str, Tensor],
    *,
    variant: str,
    family: str,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    img_size: int,
    image_sha256: str = "",
    file_name: str = "",
    provenance: Provenance | None = None,
) -> Path:
    """Write an embedding file atomically (temporary file + rename).

    Args:
        path: destination `.safetensors` file.
        embedding: 1xCxhxw tensor (stored as float32 unless it is float16/bfloat16), or the
            named tensors of `features_of` (SAM 2).
        variant, family: the model that computed it.
        original_size, input_size: (H, W) as in `SamPredictor.original_size` / `.input_size`.
        img_size: the encoder input side.
        image_sha256: `rgb_sha256(image)`, recorded so a loader can check the image.
        file_name: informational.
        provenance: `samkit.io.provenance.of_model(model)` of the model that computed it; without
            it, family, variant and sizes are recorded (no architecture signature).

    Returns:
        The path written.
    """
    from safetensors.torch import save

    named = embedding if isinstance(embedding, dict) else {_KEY: embedding}
    tensors = {}
    for name, t in named.items():
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[0] != 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t)
            raise ValueError(f"{name} must be a 1xCxhxw tensor, got {shape}")
        t = t.detach().cpu()
        tensors[name] = (
            t if t.dtype in (torch.float16, torch.bfloat16) else t.float()
        ).contiguous()
    if _KEY not in tensors:
        raise ValueError(f"the embedding needs an {_KEY!r} tensor")
    meta = {
        "format": FORMAT,
        "variant": str(variant),
        "family": str(family),
        "original_size": f"{int(original_size[0])},{int(original_size[1])}",
        "input_size": f"{int(input_size[0])},{int(input_size[1])}",
        "img_size": str(int(img_size)),
        "image_sha256": image_sha256,
        "file_name": file_name,
    }
    if provenance is None:
        c, h, w = (int(v) for v in tensors[_KEY].shape[1:])
        provenance = Provenance(str(family), str(variant), "", (c, h, w), int(img_size))
    elif provenance.family != family:
        raise ValueError(f"provenance is a {provenance.family} model's, family is {family!r}")
    meta.update(to_metadata(provenance))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # not mkstemp: its 0600 mode would stick to the file
        tmp.write_bytes(_sorted_metadata(save(tensors, metadata=meta)))
    return path


def _sorted_metadata(data: bytes) -> bytes:
    """The safetensors bytes with the metadata keys in sorted order.

    safetensors writes `__metadata__` in hash-map order, which changes from process to process;
    sorting it makes an embedding file's bytes a function of its content (the header keeps its
    length: JSON padded with spaces, as the format allows).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    if meta is None:
        return data
    ordered = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # never for the JSON serde writes; keep the original then
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def load_embedding(path: str | os.PathLike) -> ImageEmbedding:
    """Read an embedding file written by `save_embedding` / `samkit embed`.

    Raises:
        ValueError: not a safetensors file, or not a samkit embedding (missing tensor or metadata).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no embedding file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            if _KEY not in keys:
                raise ValueError(
                    f"{path}: no {_KEY!r} tensor (has {keys}); not a samkit embedding file"
                )
            tensors = {k: f.get_tensor(k) for k in keys}
            tensor = tensors[_KEY]
    except SafetensorError as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path}: metadata format={meta.get('format')!r}, expected {FORMAT!r}; "
            "write it with `samkit embed`"
        )
    missing = [
        k for k in ("variant", "family", "original_size", "input_size", "img_size") if k not in meta
    ]
    if missing:
        raise ValueError(f"{path}: metadata lacks {missing}")
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise ValueError(f"{path}: {_KEY} has shape {tuple(tensor.shape)}, expected 1xCxhxw")
    return ImageEmbedding(
        embedding=tensor,
        original_size=_size(meta["original_size"], "original_size", path),
        input_size=_size(meta["input_size"], "input_size", path),
        variant=meta["variant"],
        family=meta["family"],
        img_size=int(meta["img_size"]),
        image_sha256=meta.get("image_sha256", ""),
        metadata=meta,
        tensors=tensors,
        source=str(path),
    )
