"""One model family's registry entry: the `Family` record and its slots.

A `Family` names where each piece of a family lives as a "module:attribute" string, resolved on
first use (`Family.load`); `samkit.build.registry` holds the entries and explains the design. The
slots and how the shared code calls each piece:

| slot | what it is | called as |
|---|---|---|
| `model` | the nn.Module class | `isinstance` / documentation |
| `loader` | checkpoint -> model (the builder) | `(spec, checkpoint=, device=, dtype=) -> model`; with `loader_finds_checkpoint`: `(spec, checkpoint, random_weights, device, dtype)` |
| `predictor` | image predictor class | `(model) -> predictor` (the surface in `samkit.build.registry`) |
| `amg_generator` | automatic mask generator class | `(model_or_predictor, **settings)` |
| `trainer` | fine-tuning steps (`samkit.train.families.FamilyOps`) | `(model) -> ops` |
| `exporter` | ONNX export function | `(model, out_dir, return_single_mask=, opset=, encoder=)` |
| `onnx_predictor` | onnxruntime predictor class | `(encoder_path, decoder_path, ...)` |
| `video_predictor` | video predictor builder | `(spec, checkpoint, device, dtype, ...)` |
| `video_exporter` | ONNX export of the video parts | `(model, out_dir, opset=) -> {part: path}` |
| `onnx_video_predictor` | onnxruntime video predictor class | `(export_dir, fill_hole_area=, ...)` |
| `concepts` | text-concept generator class | `(model, text_prompts, ...)` |
| `config_match` | config.json detector | `(raw JSON dict) -> bool` |

Standard library only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

# slot -> the top-level folders of src/samkit its "module:attribute" may live in
SLOT_FOLDERS: dict[str, tuple[str, ...]] = {
    "model": ("modeling",),
    "loader": ("build",),
    "config_match": ("build", "configs"),
    "predictor": ("predict", "amg"),
    "amg_generator": ("amg",),
    "concepts": ("amg",),
    "trainer": ("train",),
    "exporter": ("export",),
    "onnx_predictor": ("export",),
    "video_predictor": ("video",),
    "video_exporter": ("export",),
    "onnx_video_predictor": ("export",),
}
# what a missing slot means, for "SAM 3 models have no ..." messages
_SLOT_WORDS = {
    "model": "model class",
    "loader": "loader",
    "config_match": "config format",
    "predictor": "image predictor (clicks and boxes)",
    "amg_generator": "automatic mask generator (segment everything)",
    "concepts": "text-concept search",
    "trainer": "fine-tuning",
    "exporter": "ONNX export",
    "onnx_predictor": "onnxruntime predictor",
    "video_predictor": "video tracking",
    "video_exporter": "ONNX export of video tracking",
    "onnx_video_predictor": "onnxruntime video predictor",
}


@dataclass(frozen=True)
class Family:
    """One model family and where its pieces live ("module:attribute" strings, see the module
    docstring for each slot's call signature; None: the family has no such piece).

    Attributes:
        name: the id files and messages record ("sam1"); lowercase, no spaces.
        display: the name people read ("SAM 1").
        checkpoint_prefixes: state-dict key prefixes only this family's checkpoints have (the
            family of a bare checkpoint is the one with the most keys under its prefixes).
        builder_hint: what loads this family, for "load it with ..." messages.
        default_model: a model name of this family, for examples in messages (and, for
            `DEFAULT_FAMILY`, what no `--model` and no checkpoint means: `vit_b`).
        names: model names that are this family itself (`--model sam3`), lowercase; variant
            names registered in `samkit.configs` map to their family there.
        checkpoint_markers: key prefixes a checkpoint must have for this family to be a
            candidate at all (MobileSAM: a TinyViT encoder; HQ-SAM: the HQ token), for families
            whose other keys are another family's (SAM 1's).
        loader_finds_checkpoint: the loader takes `random_weights` and finds its checkpoint
            itself (or says where to get it: SAM 3's gated `sam3.pt`); False (every other
            family): `samkit.build.loaded.load_family_model` passes the loader the given
            checkpoint or the variant's official file, fetched into the cache.
    """

    name: str
    display: str
    checkpoint_prefixes: tuple[str, ...]
    builder_hint: str
    model: str
    loader: str
    predictor: str | None = None
    config_match: str | None = None
    amg_generator: str | None = None
    concepts: str | None = None
    trainer: str | None = None
    exporter: str | None = None
    onnx_predictor: str | None = None
    video_predictor: str | None = None
    video_exporter: str | None = None
    onnx_video_predictor: str | None = None
    names: tuple[str, ...] = ()
    default_model: str = ""
    checkpoint_markers: tuple[str, ...] = ()
    loader_finds_checkpoint: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def has(self, slot: str) -> bool:
        """Whether the family has the piece `slot` (a key of `SLOT_FOLDERS`)."""
        _check_slot(slot)
        return getattr(self, slot) is not None

    def load(self, slot: str) -> Any:
        """The piece named in `slot`, imported on first use.

        Raises:
            ValueError: an unknown slot, or the family has no such piece (the message names the
                family and the piece).
        """
        _check_slot(slot)
        ref = getattr(self, slot)
        if ref is None:
            raise ValueError(f"{self.display} models have no {_SLOT_WORDS[slot]}")
        if slot not in self._cache:
            self._cache[slot] = resolve(ref)
        return self._cache[slot]

    def canonical_name(self, spec: str) -> str | None:
        """`spec` as one of `names` ("SAM3 " -> "sam3"), or None."""
        key = spec.strip().lower()
        return key if key in self.names else None


def resolve(ref: str) -> Any:
    """The object a "package.module:attribute" string names (imports the module)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{ref!r} is not a 'package.module:attribute' reference")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check_slot(slot: str) -> None:
    if slot not in SLOT_FOLDERS:
        raise ValueError(f"unknown family slot {slot!r}; slots: {', '.join(SLOT_FOLDERS)}")
