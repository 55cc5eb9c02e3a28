"""The per-image work of `samkit auto` and `samkit embed`, shared by the CLI and `samkit.distributed`.

One image's job is: decode -> generator / encoder -> write the output files atomically. Whether
an image's outputs are already complete (a rerun skips it) is decided here too. The single-process
CLI and the Ray actors call the same code, so their outputs are the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.amg import render_overlay, write_coco_json
from samkit.amg.coco import DEFAULT_CATEGORIES, coco_dataset, json_image_entry, read_annotation_file
from samkit.amg.sam3 import CONCEPT_OPTIONS, concept_categories
from samkit.amg.select import mask_generator_for
from samkit.build.registry import get_family
from samkit.io.atomic import remove_stale_temporaries
from samkit.io.embeddings import features_of, load_embedding, rgb_sha256, save_embedding
from samkit.io.images import ImageDecodeError, decode_image
from samkit.io.limits import DEFAULT_MAX_PIXELS
from samkit.io.masks import atomic_write_bytes, png_bytes
from samkit.io.provenance import of_model
from samkit.predict.inputs import as_rgb_uint8


def decode(
    source: np.ndarray | bytes | str | os.PathLike[str],
    name: str = "",
    stretch: Any = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """An image as HxWx3 uint8 RGB: decoded from a path or encoded bytes, or an array converted.

    Args:
        source: an image array or PIL image (HxW, HxWx1, HxWx3 or HxWx4, by `set_image`'s rule:
            `samkit.predict.inputs.as_rgb_uint8`; an HxWx3 uint8 array comes back as is, so arrays are
            never stretched twice), encoded bytes or a file path.
        name: the file's name, used in error messages about `bytes` sources.
        stretch: `samkit.io.images.decode_image`'s percentile stretch (None: the default rule).
        max_pixels: `decode_image`'s size limit for files and bytes (the CLI's --max-pixels).

    Raises:
        ImageDecodeError (a ValueError): not a readable image, or over `max_pixels`.
        ValueError: an array the rule refuses (a wrong shape or dtype).
    """
    if not isinstance(source, (bytes, str, os.PathLike)):
        return as_rgb_uint8(source)
    try:
        return decode_image(source, max_pixels=max_pixels, stretch=stretch)
    except ImageDecodeError as e:
        if isinstance(source, bytes) and name:
            raise ImageDecodeError(str(e).replace("the upload", name, 1)) from None
        raise


def make_predictor(model: Any, family: str) -> Any:
    """A fresh image predictor of the family's registry entry for `model` (`SamPredictor`,
    `Sam2ImagePredictor`, SAM 3: `samkit.amg.sam3.Sam3ClickPredictor`, ...): what `samkit
    segment` clicks with and `samkit embed` encodes with.

    Raises:
        ValueError: an unknown family, or one without an image predictor.
    """
    return get_family(family).load("predictor")(model)


def make_generator(model: Any, family: str, amg_kwargs: dict[str, Any]) -> Any:
    """The automatic mask generator `samkit auto` runs (COCO RLE output): the family's registry
    `amg_generator` (`SamAutomaticMaskGenerator`, `Sam2AutomaticMaskGenerator`); a setting left
    at None takes that generator's default. A family with text concepts (SAM 3) labels concepts
    instead: its `concepts` generator (`samkit.amg.sam3.Sam3ConceptGenerator(model,
    text_prompts=..., confidence_threshold=...)`, its only two settings).

    Raises:
        ValueError: an invalid setting, a SAM 2-only setting (use_m2m) for a SAM 1 model, text
            prompts for a SAM 1 / 2 model, or a SAM 3 model without them.
    """
    fam = get_family(family)
    if fam.has("concepts") or "text_prompts" in amg_kwargs:
        if not fam.has("concepts"):
            raise ValueError("text prompts need a SAM 3 model (--model sam3)")
        if "text_prompts" not in amg_kwargs or set(amg_kwargs) - set(CONCEPT_OPTIONS):
            raise ValueError(
                f"a {fam.display} model labels concepts: its settings are "
                f"{', '.join(CONCEPT_OPTIONS)} (text_prompts required), got {sorted(amg_kwargs)}"
            )
        return fam.load("concepts")(model, **amg_kwargs)
    return mask_generator_for(model, output_mode="coco_rle", **amg_kwargs)


def settled_amg_kwargs(generator: Any, amg_kwargs: dict[str, Any]) -> dict[str, Any]:
    """`amg_kwargs` with the settings left at None replaced by `generator`'s values (the model
    family's defaults, e.g. pred_iou_thresh 0.88 for SAM 1, 0.8 for SAM 2), in the same order:
    what the outputs record."""
    return {k: getattr(generator, k) if v is None else v for k, v in amg_kwargs.items()}


DATASET_NAME = "_annotations.coco.json"


def image_ids(names: Sequence[str]) -> dict[str, int]:
    """The COCO image ids of a run's images: 1 + each file name's rank in sorted order.

    Args:
        names: the images' file names (names relative to their input folder; repeats allowed).

    Returns:
        {file name: id}; the same for the single-process and the Ray run, and for a resumed run.
    """
    return {name: i + 1 for i, name in enumerate(sorted(set(names)))}


@dataclass(frozen=True)
class AutoJob:
    """`samkit auto`: per image, `<stem>_overlay.png` and `<stem>.json` (COCO RLE) in `out`;
    per run, the COCO dataset `out/_annotations.coco.json` (`write_dataset`).

    Attributes:
        out: the output folder.
        params: the settings recorded under the JSON's `image.samkit` (model, random_weights and
            the generator's options, the JSON layout `format` ("coco" or "sa1b", see
            `samkit.amg.io.write_coco_json`) and the stretch when one is used); outputs with
            other settings are not complete.
        stretch: the percentile stretch images are decoded with (None: the default rule).
        max_pixels: the largest image decoded (`samkit.io.images.decode_image`); not recorded in
            `params`, as it never changes an output.
    """

    out: Path
    params: dict[str, Any]
    stretch: tuple[float, float] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def create(
        cls,
        out: str | os.PathLike[str],
        model_name: str,
        random_weights: bool,
        amg_kwargs: dict,
        stretch: tuple[float, float] | None = None,
        coco_format: str = "coco",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> AutoJob:
        params = {"model": model_name, "random_weights": random_weights, **amg_kwargs}
        params["format"] = coco_format
        if stretch is not None:
            params["stretch"] = list(stretch)
        return cls(Path(out), params, stretch, max_pixels)

    def output_names(self, stem: str) -> list[str]:
        return [f"{stem}.json", f"{stem}_overlay.png"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The COCO categories: SAM 3 runs (`text_prompts` in `params`) one per concept
        (`samkit.amg.sam3.concept_categories`), otherwise the one class "object"."""
        if "text_prompts" in self.params:
            return concept_categories(self.params["text_prompts"])
        return [dict(c) for c in DEFAULT_CATEGORIES]

    @property
    def dataset_path(self) -> Path:
        """The run's COCO dataset file, `out/_annotations.coco.json`."""
        return self.out / DATASET_NAME

    def start_run(self, names: Sequence[str]) -> None:
        """Before a run's images: refuse an image whose outputs would overwrite the dataset
        file, then delete the previous run's dataset file (it describes this run only once
        `write_dataset` ends it) and any temporary file of a killed run's dataset.

        Raises:
            ValueError: an image named `_annotations.coco.*`.
        """
        own = Path(DATASET_NAME).stem
        for name in names:
            if Path(name).stem == own:
                raise ValueError(
                    f"{name}: its masks would be written to {DATASET_NAME}, the run's COCO "
                    "dataset file; rename the image"
                )
        remove_stale_temporaries(self.out, [DATASET_NAME])
        self.dataset_path.unlink(missing_ok=True)

    def write_dataset(self, images: Sequence[tuple[int, str]]) -> Path:
        """Write the run's COCO dataset from its images' outputs, atomically; returns its path.

        One file for the run (`samkit.amg.coco.coco_dataset`): `images` (`id`, `file_name`,
        `height`, `width`) sorted by id, `annotations` with unique ids from 1 in that order
        (each image's masks in the generator's order), `categories`, and `info.samkit` with
        the run's settings. It is made from the per-image JSON files only, so the single-process
        run, the Ray run and a killed run that was resumed write the same bytes.

        Args:
            images: (image id, file name) of the images whose outputs are complete (done or
                skipped in this run; failed images are left out).

        Raises:
            ValueError: an image's JSON is missing or is not a samkit annotation file.
        """
        info = {"description": "samkit automatic masks", "samkit": self.params}
        with coco_dataset(self.dataset_path, self.categories, info=info) as dataset:
            for image_id, name in sorted(images):
                json_path = self.outputs(Path(name).stem)[0]
                try:
                    entry, annotations = read_annotation_file(json_path)
                except OSError as e:
                    raise ValueError(f"{json_path}: cannot read it ({e})") from None
                dataset.add_image(image_id, name, entry["height"], entry["width"], annotations)
        return self.dataset_path

    def outputs(self, stem: str) -> tuple[Path, Path]:
        """(JSON path, overlay path) of the image whose file stem is `stem`."""
        return self.out / f"{stem}.json", self.out / f"{stem}_overlay.png"

    def is_complete(self, stem: str) -> bool:
        """The JSON parses, matches the settings, and the overlay exists."""
        json_path, overlay = self.outputs(stem)
        if not (json_path.is_file() and overlay.is_file()):
            return False
        try:
            image = json_image_entry(json.loads(json_path.read_text()))
            return image is not None and image.get("samkit") == self.params
        except (OSError, ValueError, AttributeError):
            return False

    def run(
        self,
        generator: Any,
        source: np.ndarray | bytes | str | os.PathLike[str],
        file_name: str,
        image_id: int,
    ) -> int:
        """Segment one image and write its outputs; returns the number of masks.

        Args:
            generator: `make_generator(...)`.
            source: the image (see `decode`).
            file_name: the image's file name (its stem names the outputs).
            image_id: the image's COCO id (`image_ids`), recorded in its JSON.
        """
        image = decode(source, file_name, self.stretch, self.max_pixels)
        records = generator.generate(image)
        overlay = render_overlay(image, records)
        json_path, overlay_path = self.outputs(Path(file_name).stem)
        # The overlay first, the JSON last: a JSON on disk means the image is complete.
        atomic_write_bytes(overlay_path, png_bytes(overlay))
        info = {
            "image_id": image_id,
            "file_name": file_name,
            "height": image.shape[0],
            "width": image.shape[1],
            "samkit": self.params,
        }
        fmt = self.params["format"]
        write_coco_json(json_path, info, records, format=fmt, categories=self.categories)
        return len(records)


@dataclass(frozen=True)
class EmbedJob:
    """`samkit embed` for one image: `<stem>.safetensors` in `out`.

    Attributes:
        out: the output folder.
        variant: the model's name, recorded in the file; a file of another model is not complete.
        family: the model's family (`samkit.build.registry`).
        img_size: the encoder's input side.
        stretch: the percentile stretch images are decoded with (None: the default rule).
        max_pixels: the largest image decoded (`samkit.io.images.decode_image`).
    """

    out: Path
    variant: str
    family: str
    img_size: int
    stretch: tuple[float, float] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def output_names(self, stem: str) -> list[str]:
        return [f"{stem}.safetensors"]

    def output(self, stem: str) -> Path:
        return self.out / f"{stem}.safetensors"

    def is_complete(self, stem: str) -> bool:
        """The embedding file loads and was computed by this model."""
        dest = self.output(stem)
        if not dest.is_file():
            return False
        with contextlib.suppress(ValueError, OSError):
            return load_embedding(dest).variant == self.variant
        return False

    def run(
        self, predictor: Any, source: np.ndarray | bytes | str | os.PathLike[str], file_name: str
    ) -> Path:
        """Encode one image with `predictor` and write its embedding file; returns its path."""
        image = decode(source, file_name, self.stretch, self.max_pixels)
        predictor.set_image(image)
        return save_embedding(
            self.output(Path(file_name).stem),
            features_of(predictor, self.family),
            variant=self.variant,
            family=self.family,
            original_size=image.shape[:2],
            input_size=getattr(predictor, "input_size", None) or (self.img_size, self.img_size),
            img_size=self.img_size,
            image_sha256=rgb_sha256(image),
            file_name=file_name,
            provenance=of_model(predictor.model),
        )
