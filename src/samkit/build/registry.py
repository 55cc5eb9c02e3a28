"""The family registry: one entry per model family, the only code that tells families apart.

A family (SAM 1, SAM 2, SAM 3, later MobileSAM, HQ-SAM, EfficientTAM, EdgeTAM) is one `Family`
record: its name ("sam1"), the name users read ("SAM 1"), how its checkpoints and config files
are recognised, and where each of its pieces lives, named as "module:attribute" strings. The
slots (`samkit.build.family_entry`, which defines `Family`): `model`, `loader`,
`config_match`, `predictor`, `amg_generator`, `concepts`, `trainer`, `exporter`,
`onnx_predictor`, `video_predictor`, `video_exporter`, `onnx_video_predictor`; each is
documented there with how the shared code calls it.

Every model says what it is (`family`, `image_size`, `variant`, `image_embedding_shape`; the
official names `Sam.img_size` / `Sam2.image_size` stay as aliases), and every image predictor has
one small public surface: `family`, `get_image_features() -> {name: 1xCxhxw tensor}` (what an
embedding file stores), `set_image_features(features, original_size, input_size=None)`,
`decode_low_res(point_coords, point_labels, mask_input, multimask_output)` (low-res logits and
IoUs, what automatic mask generation needs) and the official `predict`. The shared code
(embedding files, the CLI, the web app, Ray, fine-tuning, automatic masks) asks the registry and
these surfaces, never `family == ...`; `tests/build/test_family_seam.py` counts such branches
outside this module (zero) and adds a fake fourth family through the registry alone.

How to add a family (e.g. MobileSAM):

1. Write its pieces in their layers: the model class in `modeling/` (with the class attribute
   `family = "mobilesam"` and the properties above), a loader in `build/`, a predictor with the
   surface above in `predict/`, and optionally an AMG generator, trainer ops, an exporter.
2. Add one `Family(...)` to `_BUILTIN` below, naming each piece by "module:attribute" (a slot left
   None means "this family cannot do that": the CLI and the server refuse it by name).
3. Nothing else: `samkit segment / auto / embed / serve`, embedding files, Ray and the AMG
   adapters find the family here. A test or a plugin can also call `register(Family(...))`.

Why strings, and why the layering holds. `build/` is the lowest layer that knows the families
(it reads checkpoints), but predictors, generators, trainers and exporters sit in higher layers,
which `build/` must not import. So an entry is data: the names of the pieces, never the objects.
`Family.load(slot)` imports a piece when it is asked for, and it is asked for only by code at or
above the piece's own layer (the CLI asks for a predictor, the server for a generator): the
import that runs is one the asking module could have written itself, pointing down, the same
dependency as the `if family == "sam2": from samkit.predict.sam2 import ...` it replaces.
`tests/build/test_family_seam.py` checks both halves: every registered string lives in the
folder its slot declares (`SLOT_FOLDERS`) and resolves, and no module below a slot's layer calls
`.load("<slot>")`. (The other design, higher layers registering themselves on import, needs
every one of those modules imported before any lookup, i.e. the same list of module names
somewhere, plus import-order dependent results and work at import time.)

Standard library only (and `samkit.io.provenance`, which tells messages the display names):
importing this module imports no torch and no family code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from samkit.build.family_entry import SLOT_FOLDERS as SLOT_FOLDERS
from samkit.build.family_entry import Family as Family
from samkit.build.family_entry import resolve as resolve
from samkit.io.provenance import set_display_name

_BUILTIN = (
    Family(
        name="sam1",
        display="SAM 1",
        checkpoint_prefixes=("image_encoder.patch_embed.", "mask_decoder.", "prompt_encoder."),
        builder_hint="build_sam (CLI: --model vit_b / vit_l / vit_h, or no --model)",
        model="samkit.modeling.sam:Sam",
        loader="samkit.build.sam:build_sam",
        predictor="samkit.predict.sam:SamPredictor",
        amg_generator="samkit.amg.sam:SamAutomaticMaskGenerator",
        trainer="samkit.train.families:FamilyOps",
        exporter="samkit.export.sam:export_sam_onnx",
        onnx_predictor="samkit.export.ort_sam:OnnxSamPredictor",
        default_model="vit_b",
    ),
    Family(
        name="sam2",
        display="SAM 2",
        checkpoint_prefixes=("image_encoder.trunk.", "sam_mask_decoder.", "sam_prompt_encoder."),
        builder_hint="build_sam2 (CLI: --model sam2.1_hiera_t / _s / _b+ / _l, or no --model for "
        "an official size; another size: its config.json as --model)",
        model="samkit.modeling.sam2:Sam2",
        loader="samkit.build.sam2:build_sam2",
        config_match="samkit.build.sam2:is_sam2_config",
        predictor="samkit.predict.sam2:Sam2ImagePredictor",
        amg_generator="samkit.amg.sam2:Sam2AutomaticMaskGenerator",
        trainer="samkit.train.families:Sam2Ops",
        exporter="samkit.export.sam2:export_sam2_onnx",
        onnx_predictor="samkit.export.ort_sam2:OnnxSam2Predictor",
        video_predictor="samkit.video.build:build_sam2_video_predictor",
        video_exporter="samkit.export.sam2_video:export_sam2_video_onnx",
        onnx_video_predictor="samkit.export.ort_video:OnnxSam2VideoPredictor",
        default_model="sam2.1_hiera_t",
    ),
    Family(
        name="sam3",
        display="SAM 3",
        checkpoint_prefixes=("detector.",),  # tracker.* alone is no image model
        builder_hint="build_sam3_image_model (CLI: --model sam3, or no --model)",
        model="samkit.modeling.sam3.sam3_image:Sam3Image",
        loader="samkit.build.sam3_models:build_sam3",
        loader_finds_checkpoint=True,  # the gated sam3.pt: its loader says where to get it
        config_match="samkit.build.sam3_models:is_sam3_config",
        predictor="samkit.amg.sam3:Sam3ClickPredictor",
        concepts="samkit.amg.sam3:Sam3ConceptGenerator",
        video_predictor="samkit.video.track_concepts:build_concept_tracker",
        names=("sam3",),
        default_model="sam3",
    ),
    Family(
        name="efficienttam",
        display="EfficientTAM",
        # the SAM 2 prefixes plus the ViTDet neck's (SAM 2's neck has `convs.{i}.conv.*`): an
        # EfficientTAM file counts more keys here, a SAM 2 file ties and goes to SAM 2 (first)
        checkpoint_prefixes=(
            "image_encoder.trunk.",
            "sam_mask_decoder.",
            "sam_prompt_encoder.",
            "image_encoder.neck.convs.0.conv_1x1.",
            "image_encoder.neck.convs.0.conv_3x3.",
            "image_encoder.neck.convs.0.norm_",
        ),
        builder_hint="build_efficienttam (CLI: --model efficienttam_ti / efficienttam_s)",
        model="samkit.modeling.efficienttam:EfficientTam",
        loader="samkit.build.efficienttam:build_efficienttam",
        config_match="samkit.build.efficienttam:is_efficienttam_config_file",
        predictor="samkit.predict.sam2:Sam2ImagePredictor",
        amg_generator="samkit.amg.sam2:Sam2AutomaticMaskGenerator",
        trainer="samkit.train.families:Sam2Ops",
        exporter="samkit.export.efficienttam:export_efficienttam_onnx",
        onnx_predictor="samkit.export.ort_efficienttam:OnnxEfficientTamPredictor",
        video_predictor="samkit.video.efficienttam:build_efficienttam_video_predictor",
        video_exporter="samkit.export.sam2_video:export_sam2_video_onnx",
        onnx_video_predictor="samkit.export.ort_video:OnnxSam2VideoPredictor",
        default_model="efficienttam_ti",
    ),
    # SAM 2's prefixes plus the neck and the perceiver (which SAM 2 does not count) and the timm
    # trunk as a marker: an EdgeTAM file counts more keys here, other files have no marker
    Family(
        name="edgetam",
        display="EdgeTAM",
        checkpoint_prefixes=(
            "image_encoder.",
            "sam_mask_decoder.",
            "sam_prompt_encoder.",
            "spatial_perceiver.",
        ),
        checkpoint_markers=("image_encoder.trunk.body.",),
        builder_hint="build_edgetam (CLI: --model edgetam)",
        model="samkit.modeling.edgetam:EdgeTam",
        loader="samkit.build.edgetam:build_edgetam",
        config_match="samkit.build.edgetam:is_edgetam_config_file",
        predictor="samkit.predict.sam2:Sam2ImagePredictor",
        amg_generator="samkit.amg.sam2:Sam2AutomaticMaskGenerator",
        video_predictor="samkit.video.edgetam:build_edgetam_video_predictor",
        video_exporter="samkit.export.sam2_video:export_sam2_video_onnx",
        onnx_video_predictor="samkit.export.ort_video:OnnxEdgeTamVideoPredictor",
        default_model="edgetam",
    ),
    # SAM 1's keys plus a marker: a file with the marker counts all its keys here (more than
    # SAM 1's prefixes); HQ-SAM first, so an HQ file with a TinyViT encoder ties and goes to it
    Family(
        name="sam_hq",
        display="HQ-SAM",
        checkpoint_prefixes=("image_encoder.", "mask_decoder.", "prompt_encoder."),
        checkpoint_markers=("mask_decoder.hf_token.",),
        builder_hint="build_sam_hq (CLI: --model sam_hq_vit_b / _l / _h / sam_hq_vit_tiny; "
        "another size: leave --model out)",
        model="samkit.modeling.sam_hq:SamHQ",
        loader="samkit.build.light:build_sam_hq",
        predictor="samkit.predict.sam_hq:SamHQPredictor",
        amg_generator="samkit.amg.sam:SamAutomaticMaskGenerator",
        trainer="samkit.train.sam_hq:SamHQOps",
        exporter="samkit.export.sam_hq:export_sam_hq_onnx",
        onnx_predictor="samkit.export.ort_sam_hq:OnnxSamHQPredictor",
        default_model="sam_hq_vit_b",
    ),
    Family(
        name="mobile_sam",
        display="MobileSAM",
        checkpoint_prefixes=("image_encoder.", "mask_decoder.", "prompt_encoder."),
        checkpoint_markers=("image_encoder.layers.",),
        builder_hint="build_mobile_sam (CLI: --model mobile_sam; another size: leave --model out)",
        model="samkit.modeling.mobile_sam:MobileSam",
        loader="samkit.build.light:build_mobile_sam",
        predictor="samkit.predict.sam:SamPredictor",
        amg_generator="samkit.amg.sam:SamAutomaticMaskGenerator",
        trainer="samkit.train.families:FamilyOps",
        exporter="samkit.export.sam:export_sam_onnx",
        onnx_predictor="samkit.export.ort_sam:OnnxSamPredictor",
        default_model="mobile_sam",
    ),
)
DEFAULT_FAMILY = "sam1"  # no --model and no checkpoint; a config.json no family claims

_REGISTRY: dict[str, Family] = {f.name: f for f in _BUILTIN}
for _f in _BUILTIN:
    set_display_name(_f.name, _f.display)


def register(family: Family, *, replace: bool = False) -> Family:
    """Add a family (or, with `replace`, swap an entry of the same name).

    Raises:
        ValueError: the name is taken (without `replace`), is not a lowercase identifier, or
            a reference names a module outside its slot's folders.
    """
    name = family.name
    if not name or name != name.strip().lower() or " " in name:
        raise ValueError(f"a family name is a lowercase id such as 'sam2', got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"family {name!r} is already registered")
    for slot, folders in SLOT_FOLDERS.items():
        ref = getattr(family, slot)
        if ref is not None and not _in_folders(ref, folders):
            raise ValueError(
                f"{name}.{slot} = {ref!r}: a {slot} lives under samkit.{' / samkit.'.join(folders)}"
                " (the registry names pieces in their own layer)"
            )
    _REGISTRY[name] = family
    set_display_name(name, family.display)
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register a fake one clean up with this)."""
    _REGISTRY.pop(name, None)


def _in_folders(ref: str, folders: tuple[str, ...]) -> bool:
    module = ref.partition(":")[0]
    parts = module.split(".")
    # pieces outside samkit (a plugin package or a test module) are the plugin's own business
    return parts[0] != "samkit" or (len(parts) > 1 and parts[1] in folders)


def families() -> tuple[Family, ...]:
    """Every registered family, in registration order."""
    return tuple(_REGISTRY.values())


def family_names(*slots: str) -> tuple[str, ...]:
    """The registered family names (those that have every one of `slots`, if given)."""
    return tuple(f.name for f in families() if all(f.has(slot) for slot in slots))


def get_family(name: str) -> Family:
    """The `Family` named `name`.

    Raises:
        ValueError: no such family (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(_REGISTRY)}") from None


class _Names(Mapping[str, str]):
    """family name -> display name, live over the registry (`FAMILY_NAMES["sam2"] == "SAM 2"`)."""

    def __getitem__(self, key: str) -> str:
        try:
            return _REGISTRY[key].display
        except (KeyError, TypeError):
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)


FAMILY_NAMES: Mapping[str, str] = _Names()


def display_name(name: str) -> str:
    """ "SAM 2" for "sam2"; an unknown name as it is."""
    return FAMILY_NAMES.get(name, name)


def family_of(obj: Any) -> Family:
    """The family of a model or predictor (its `family` attribute; a predictor without one:
    its model's).

    Raises:
        ValueError: `obj` names no registered family.
    """
    name = getattr(obj, "family", None)
    if not isinstance(name, str):
        name = getattr(getattr(obj, "model", None), "family", None)
    if isinstance(name, str):
        return get_family(name)  # ValueError for a family this samkit does not know
    known = " / ".join(f.display for f in families())
    raise ValueError(
        f"expected a {known} model or predictor (samkit.build_sam, build_sam2, ...), got "
        f"{type(obj).__name__}"
    )


# ------------------------------------------------------------------ recognising files and names


def state_dict_family(keys: Iterable[str]) -> str | None:
    """The family whose checkpoint key prefixes most keys have; None when no key has any."""
    keys = list(keys)
    count = dict.fromkeys(_REGISTRY, 0)
    for k in keys:
        for f in families():
            if k.startswith(f.checkpoint_prefixes):
                count[f.name] += 1
    for f in families():
        if f.checkpoint_markers and not any(k.startswith(f.checkpoint_markers) for k in keys):
            count[f.name] = 0
    best = max(count, key=lambda n: count[n], default=None)
    return best if best is not None and count[best] else None


def config_family(raw: Mapping[str, Any]) -> str:
    """The family of a parsed config.json: its `"family"` when that is registered, else the first
    family whose `config_match` accepts it, else `DEFAULT_FAMILY` (SAM 1's constructor configs
    carry no marker)."""
    if isinstance(raw, Mapping):
        named = raw.get("family")
        if isinstance(named, str) and named in _REGISTRY:
            return named
        for f in families():
            if f.config_match is not None and f.load("config_match")(raw):
                return f.name
    return DEFAULT_FAMILY


def is_config_path(spec: str | os.PathLike[str]) -> bool:
    """Whether a `--model` value names a config file (a `.json` name or an existing file)."""
    return str(spec).endswith(".json") or Path(spec).is_file()


def spec_family(spec: str) -> str:
    """The family of a model named as on the command line: a family's own name (`sam3`), a
    config.json path, or a variant name registered in `samkit.configs`.

    Raises:
        FileNotFoundError: a config path that does not exist.  ValueError: an unknown variant
            (the message lists the known names) or an unreadable config.
    """
    for f in families():
        if f.canonical_name(spec) is not None:
            return f.name
    if is_config_path(spec):
        from samkit.configs.sam import load_config_json

        return config_family(load_config_json(spec))
    from samkit.configs.sam import get_variant

    return get_variant(spec).family
