"""Segmentation datasets for fine-tuning and evaluation.

Two on-disk layouts are read:

* a folder ``DATA/images/NAME.{jpg,jpeg,png}`` with either ``DATA/masks/NAME.png`` (an instance-id
  PNG: 0 = background, every other value one instance) or ``DATA/masks/NAME/K.png`` (one binary
  PNG per instance, nonzero = foreground);
* a COCO JSON file (``images`` + ``annotations`` with polygon or RLE ``segmentation``).

Every sample is an HxWx3 uint8 RGB image and an NxHxW bool array of instance masks. Bad input (an
unreadable file, a mask whose size differs from its image, an empty mask, a missing image) raises
a `ValueError` naming the file, or is skipped with a warning when ``skip_invalid=True``.
`prepare_sample` (`samkit.train.samples`, re-exported here with `Sample` and `PreparedSample`)
applies the official SAM 1 resize / pad so the model and the losses see the same frame as
`SamPredictor`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samkit.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image
from samkit.io.masks import coco_segmentation_to_mask
from samkit.train.samples import PreparedSample as PreparedSample
from samkit.train.samples import Sample as Sample
from samkit.train.samples import prepare_sample as prepare_sample

logger = logging.getLogger("samkit")


class DataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent (the message names it)."""


def _read_image(
    path: Path, stretch: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """HxWx3 uint8 RGB through the one samkit decoder (`samkit.io.images`: 16-bit, float, CMYK,
    palette, EXIF orientation, the `max_pixels` size limit)."""
    try:
        return decode_image(path, max_pixels=max_pixels, stretch=stretch)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({e})") from e


def _read_mask_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                raise DataError(
                    f"{path}: a {im.mode} mask; expected a single-channel PNG "
                    "(mode L, P, I or 1) with instance ids or 0/nonzero values"
                )
            return np.array(im)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read the mask ({e})") from e


def _check_masks(masks: np.ndarray, image: np.ndarray, where: str) -> np.ndarray:
    if masks.shape[0] == 0:
        raise DataError(f"{where}: no instances (the mask is all background)")
    if masks.shape[1:] != image.shape[:2]:
        raise DataError(
            f"{where}: mask size {masks.shape[1]}x{masks.shape[2]} (HxW) differs from the image "
            f"size {image.shape[0]}x{image.shape[1]}"
        )
    empty = [i for i in range(masks.shape[0]) if not masks[i].any()]
    if empty:
        raise DataError(f"{where}: instance(s) {empty} have an empty mask")
    return masks


class SegmentationDataset:
    """Base class: a list of sample loaders with optional skipping of invalid samples."""

    def __init__(
        self, skip_invalid: bool = False, stretch: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.skip_invalid = skip_invalid
        self.stretch = stretch  # `samkit.io.images.decode_image`'s percentile stretch, or None
        self.max_pixels = max_pixels  # and its size limit (the CLI's --max-pixels)
        self._names: list[str] = []

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self._names[index])

    def load(self, name: str) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_all(self) -> None:
        """Load every sample once; drop (with a warning) or raise on the invalid ones."""
        kept = []
        for name in self._names:
            try:
                self.load(name)
            except DataError as e:
                if not self.skip_invalid:
                    raise
                warnings.warn(f"skipping {name}: {e}", stacklevel=3)
                continue
            kept.append(name)
        if not kept:
            raise DataError("no valid samples left in the dataset")
        self._names = kept


class FolderDataset(SegmentationDataset):
    """``DATA/images/NAME.ext`` + ``DATA/masks/NAME.png`` or ``DATA/masks/NAME/K.png``.

    Args:
        root: the DATA folder.
        skip_invalid: skip bad samples with a warning instead of raising.
        validate: read every sample once at construction (so errors surface early and skipped
            samples do not change the dataset length later).
    """

    def __init__(
        self,
        root: str | Path,
        skip_invalid: bool = False,
        validate: bool = True,
        stretch: Any = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(skip_invalid, stretch, max_pixels)
        self.root = Path(root)
        img_dir, mask_dir = self.root / "images", self.root / "masks"
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise DataError(
                    f"{d}: not a folder; expected DATA/images/NAME.jpg|png with DATA/masks/NAME.png "
                    "or DATA/masks/NAME/K.png"
                )
        self._images: dict[str, Path] = {}
        for p in sorted(img_dir.iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if p.stem in self._images:
                raise DataError(f"{p}: two images named {p.stem!r} in {img_dir}")
            self._images[p.stem] = p
        if not self._images:
            raise DataError(f"{img_dir}: no .jpg/.jpeg/.png images")
        names = []
        for stem, path in self._images.items():
            if (mask_dir / f"{stem}.png").is_file() or (mask_dir / stem).is_dir():
                names.append(stem)
                continue
            msg = f"{path}: no mask {mask_dir / (stem + '.png')} or folder {mask_dir / stem}"
            if not skip_invalid:
                raise DataError(msg)
            warnings.warn(f"skipping {stem}: {msg}", stacklevel=2)
        self._names = names
        if validate:
            self._validate_all()

    def load(self, name: str) -> Sample:
        image = _read_image(self._images[name], self.stretch, self.max_pixels)
        mask_dir = self.root / "masks"
        single = mask_dir / f"{name}.png"
        if single.is_file():
            ids = _read_mask_png(single)
            if ids.ndim != 2:
                raise DataError(f"{single}: expected a 2-D instance-id mask, got shape {ids.shape}")
            values = [v for v in np.unique(ids) if v != 0]
            masks = np.stack([ids == v for v in values]) if values else np.zeros((0, *ids.shape))
            return Sample(name, image, _check_masks(masks.astype(bool), image, str(single)))
        folder = mask_dir / name
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() == ".png"),
            key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.stem),
        )
        if not files:
            raise DataError(f"{folder}: no per-instance .png masks")
        masks = []
        for f in files:
            m = _read_mask_png(f)
            if m.ndim != 2:
                raise DataError(f"{f}: expected a 2-D binary mask, got shape {m.shape}")
            if m.shape != image.shape[:2]:
                _check_masks(m[None] != 0, image, str(f))
            if not m.any():
                raise DataError(f"{f}: the instance mask is empty")
            masks.append(m != 0)
        return Sample(name, image, _check_masks(np.stack(masks), image, str(folder)))


class CocoDataset(SegmentationDataset):
    """A COCO instance-segmentation JSON (polygons, uncompressed or compressed RLE).

    Args:
        annotation_file: the JSON file.
        image_dir: folder of the images (default: ``images/`` next to the JSON if it exists,
            else the JSON's folder).
        include_crowd: keep ``iscrowd=1`` annotations (skipped by default).
        skip_invalid: skip bad images with a warning instead of raising.
        validate: read every sample once at construction.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path | None = None,
        include_crowd: bool = False,
        skip_invalid: bool = False,
        validate: bool = True,
        stretch: Any = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(skip_invalid, stretch, max_pixels)
        self.annotation_file = Path(annotation_file)
        try:
            data = json.loads(self.annotation_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{self.annotation_file}: not a readable COCO JSON ({e})") from e
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DataError(f"{self.annotation_file}: expected 'images' and 'annotations' lists")
        if image_dir is None:
            cand = self.annotation_file.parent / "images"
            image_dir = cand if cand.is_dir() else self.annotation_file.parent
        self.image_dir = Path(image_dir)
        self._info: dict[str, dict[str, Any]] = {}
        self._anns: dict[str, list[dict[str, Any]]] = {}
        by_id: dict[Any, str] = {}
        for img in data["images"]:
            try:
                name = str(img["file_name"])
                by_id[img["id"]] = name
            except (KeyError, TypeError) as e:
                raise DataError(
                    f"{self.annotation_file}: image entry without {e}: {img!r:.80}"
                ) from e
            self._info[name] = img
            self._anns[name] = []
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            name = by_id.get(ann.get("image_id"))
            if name is None:
                raise DataError(
                    f"{self.annotation_file}: annotation {ann.get('id')} refers to unknown "
                    f"image_id {ann.get('image_id')!r}"
                )
            self._anns[name].append(ann)
        names = []
        for name in self._info:
            path = self.image_dir / name
            problem = None
            if not path.is_file():
                problem = f"{path}: image listed in {self.annotation_file} is missing"
            elif not self._anns[name]:
                problem = f"{path}: no annotations in {self.annotation_file}"
            if problem is None:
                names.append(name)
            elif skip_invalid:
                warnings.warn(f"skipping {name}: {problem}", stacklevel=2)
            else:
                raise DataError(problem)
        self._names = names
        if validate:
            self._validate_all()

    def load(self, name: str) -> Sample:
        path = self.image_dir / name
        image = _read_image(path, self.stretch, self.max_pixels)
        h, w = image.shape[:2]
        info = self._info[name]
        if (int(info.get("height", h)), int(info.get("width", w))) != (h, w):
            raise DataError(
                f"{path}: image is {h}x{w} (HxW) but {self.annotation_file} says "
                f"{info.get('height')}x{info.get('width')}"
            )
        masks = []
        for ann in self._anns[name]:
            where = f"{self.annotation_file} annotation {ann.get('id')} (image {path})"
            m = decode_segmentation(ann.get("segmentation"), h, w, where)
            if not m.any():
                raise DataError(f"{where}: the instance mask is empty")
            masks.append(m)
        return Sample(name, image, _check_masks(np.stack(masks), image, str(path)))


def decode_segmentation(seg: Any, h: int, w: int, where: str = "segmentation") -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, or RLE dict) as an HxW bool mask
    (`samkit.io.masks.coco_segmentation_to_mask`); a DataError naming `where` if it is bad."""
    try:
        return coco_segmentation_to_mask(seg, h, w)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None


def open_dataset(
    path: str | Path,
    skip_invalid: bool = False,
    image_dir: str | Path | None = None,
    stretch: Any = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SegmentationDataset:
    """A `FolderDataset` for a folder, a `CocoDataset` for a ``.json`` file (`stretch` and
    `max_pixels`: see `samkit.io.images.decode_image`)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset not found: {p}")
    if p.is_file():
        if p.suffix.lower() != ".json":
            raise DataError(f"{p}: expected a DATA folder or a COCO .json file")
        return CocoDataset(
            p,
            image_dir=image_dir,
            skip_invalid=skip_invalid,
            stretch=stretch,
            max_pixels=max_pixels,
        )
    return FolderDataset(p, skip_invalid=skip_invalid, stretch=stretch, max_pixels=max_pixels)


def split_names(
    names: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic train / val split, independent of the listing order.

    Names are ordered by ``sha256(f"{seed}:{name}")`` and the first ``round(val_fraction * n)``
    (at least one when 0 < val_fraction and n >= 2) go to val. Both lists keep the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(names)
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = sorted(names, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    val = set(order[:n_val])
    return [s for s in names if s not in val], [s for s in names if s in val]


class Subset:
    """The samples of a dataset with the given names."""

    def __init__(self, dataset: SegmentationDataset, names: Sequence[str]) -> None:
        self.dataset = dataset
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset.load(self.names[index])
