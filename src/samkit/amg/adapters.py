"""The model-specific steps of automatic mask generation, behind one seam.

The generator pipeline (grid, crops, filters, NMS, RLE) is the same for SAM 1 and SAM 2; an
adapter supplies what differs: encoding a crop, decoding a batch of single-point prompts to
low-res logits and predicted IoUs, the threshold, and how low-res logits are upsampled to the
crop's size. Adapters drive an image predictor through its public surface only (`set_image`,
`decode_low_res`; `samkit.build.registry`), so a family whose predictor has that surface can
use an existing generator by naming it in its registry entry.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from samkit.amg.upsample import DirectUpsampler, MaskUpsampler
from samkit.build.registry import family_names, family_of, get_family
from samkit.io.provenance import with_article
from samkit.predict.postprocess import fill_holes_and_remove_sprinkles, require_scipy


class Upsampler(Protocol):
    def __call__(self, low_res: Tensor) -> Tensor: ...


class ModelAdapter(Protocol):
    """What the generator needs from a model."""

    predictor: Any
    mask_threshold: float

    @property
    def device(self) -> torch.device: ...

    def set_image(self, image: np.ndarray) -> None:
        """Encode an HxWx3 uint8 crop."""

    def reset_image(self) -> None:
        """Forget the crop's features."""

    def prompt_points(self, points: np.ndarray) -> np.ndarray:
        """Nx2 crop-frame points as the official generator records them (dtype)."""

    def decode(
        self, points: np.ndarray, im_size: tuple[int, int], shared: dict
    ) -> tuple[Tensor, Tensor]:
        """Nx2 crop-frame points -> (N*C)xhxw float32 logits to upsample, N*C float32 IoUs
        (prompt-major, C masks per prompt)."""

    def upsampler(self, low_res_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Upsampler:
        """A callable hxw low-res logits -> HxW logits of the crop, exactly as the official code."""


def adapter_predictor(model: Any, generator: str) -> Any:
    """The image predictor an adapter drives: `model` itself when it is one, else its family's
    predictor (`samkit.build.registry`) on the model.

    Args:
        model: a samkit model or image predictor.
        generator: the class name of the generator asking (e.g. "SamAutomaticMaskGenerator").

    Raises:
        ValueError: `model` is no samkit model or predictor, or its family's generator is
            another one (the message names it).
    """
    names = [
        get_family(f).display
        for f in family_names("amg_generator")
        if _class_name(get_family(f).amg_generator) == generator
    ]
    takers = f"{names[0] if names else '?'} model" + (
        f" (or {', '.join(names[1:])})" if names[1:] else ""
    )
    try:
        family = family_of(model)
    except ValueError:
        raise ValueError(
            f"{generator} takes a {takers} or its image predictor, got {type(model).__name__}"
        ) from None
    if _class_name(family.amg_generator) != generator:
        hint = (
            f"use samkit.{_class_name(family.amg_generator)}"
            if family.amg_generator
            else "it has no automatic mask generator"
        )
        raise ValueError(
            f"{generator} takes {with_article(takers)}; for {with_article(family.display)} model "
            f"{hint}"
        )
    return model if hasattr(model, "set_image") else family.load("predictor")(model)


def _class_name(ref: str | None) -> str:
    return "" if ref is None else ref.rpartition(":")[2]


class SamAdapter:
    """SAM 1: the predictor's features and `decode_low_res`, 3 masks per point, two-step
    upsampling (pad then crop). Also the adapter of any family whose registry entry names
    `SamAutomaticMaskGenerator` (a predictor with SAM 1's surface and input frame)."""

    def __init__(self, model: Any) -> None:
        self.predictor = adapter_predictor(model, "SamAutomaticMaskGenerator")
        self.mask_threshold = float(self.predictor.model.mask_threshold)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def reset_image(self) -> None:
        self.predictor.reset_image()

    def prompt_points(self, points: np.ndarray) -> np.ndarray:
        return points

    def decode(
        self, points: np.ndarray, im_size: tuple[int, int], shared: dict
    ) -> tuple[Tensor, Tensor]:
        # `shared` is unused: the predictor keeps the decoder's image-side work itself.
        labels = np.ones((len(points), 1), dtype=np.int64)
        low_res, iou = self.predictor.decode_low_res(points[:, None, :], labels)
        return low_res.flatten(0, 1).float(), iou.flatten(0, 1).float()

    def upsampler(self, low_res_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Upsampler:
        return MaskUpsampler(
            low_res_hw,
            self.predictor.model.image_size,
            tuple(self.predictor.input_size),
            crop_hw,
            self.device,
        )


class Sam2Adapter:
    """SAM 2 / 2.1: `Sam2ImagePredictor` features, normalised point coordinates, optional
    single-mask output and mask-to-mask refinement, low-res hole / sprinkle clean-up, one-step
    upsampling.

    Args:
        model: a `Sam2` model or a `Sam2ImagePredictor` wrapping one.
        mask_threshold: the generator's binarisation threshold (the clean-up uses the
            predictor's, 0.0, as the official generator does).
        multimask_output: 3 masks per point (True) or the decoder's single mask.
        use_m2m: refine every mask once more with its own clamped low-res logits as mask prompt.
        points_per_batch: prompts per decoder call of the refinement.
        min_mask_region_area: the official generator passes it to its predictor as
            max_hole_area and max_sprinkle_area: components up to that many *low-res* pixels.
    """

    def __init__(
        self,
        model: Any,
        mask_threshold: float,
        multimask_output: bool,
        use_m2m: bool,
        points_per_batch: int,
        min_mask_region_area: int,
    ) -> None:
        self.predictor = adapter_predictor(model, "Sam2AutomaticMaskGenerator")
        if min_mask_region_area > 0:
            require_scipy("Sam2AutomaticMaskGenerator(min_mask_region_area > 0)")
        self.mask_threshold = float(mask_threshold)
        self.multimask_output = bool(multimask_output)
        self.use_m2m = bool(use_m2m)
        self.points_per_batch = int(points_per_batch)
        self.hole_area = float(min_mask_region_area)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def reset_image(self) -> None:
        self.predictor.reset_predictor()

    def prompt_points(self, points: np.ndarray) -> np.ndarray:
        # The official generator keeps the points as a float32 tensor.
        return np.asarray(points, dtype=np.float32)

    def _run(
        self, points: Tensor, im_size: tuple[int, int], mask_input: Tensor | None, multimask: bool
    ) -> tuple[Tensor, Tensor]:
        labels = torch.ones((points.shape[0], 1), dtype=torch.int, device=points.device)
        return self.predictor.decode_low_res(points[:, None, :], labels, mask_input, multimask)

    def decode(
        self, points: np.ndarray, im_size: tuple[int, int], shared: dict
    ) -> tuple[Tensor, Tensor]:
        # `shared` is unused: the predictor keeps the decoder's image-side work itself.
        pts = torch.as_tensor(self.prompt_points(points), device=self.device)
        low_res, iou = self._run(pts, im_size, None, self.multimask_output)
        low_res, iou = low_res.float(), iou.float()
        if self.use_m2m:
            n_out = low_res.shape[1]
            pts = pts.repeat_interleave(n_out, dim=0)
            clamped = torch.clamp(low_res.flatten(0, 1), -32.0, 32.0)
            parts = [
                self._run(
                    pts[i : i + self.points_per_batch],
                    im_size,
                    clamped[i : i + self.points_per_batch, None],
                    False,
                )
                for i in range(0, len(pts), self.points_per_batch)
            ]
            low_res = torch.cat([lr for lr, _ in parts]).float()
            iou = torch.cat([s for _, s in parts]).float()
        if self.hole_area > 0:
            low_res = fill_holes_and_remove_sprinkles(
                low_res, self.predictor.mask_threshold, self.hole_area, self.hole_area
            )
        return low_res.flatten(0, 1), iou.flatten(0, 1)

    def upsampler(self, low_res_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Upsampler:
        return DirectUpsampler(crop_hw, self.device)
