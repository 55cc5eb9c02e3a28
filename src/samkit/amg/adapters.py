"""The model-specific steps of automatic mask generation, behind one seam.

The generator pipeline (grid, crops, filters, NMS, RLE) is the same for SAM 1 and SAM 2; an
adapter supplies what differs: encoding a crop, decoding a batch of single-point prompts to
low-res logits and predicted IoUs, the threshold, and how low-res logits are upsampled to the
crop's size.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from samkit.amg.upsample import DirectUpsampler, MaskUpsampler


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


class SamAdapter:
    """SAM 1: `SamPredictor` features, 3 masks per point, two-step upsampling (pad then crop)."""

    def __init__(self, model: Any) -> None:
        from samkit.modeling.sam import Sam
        from samkit.predict.sam import SamPredictor

        if isinstance(model, SamPredictor):
            self.predictor = model
        elif isinstance(model, Sam):
            self.predictor = SamPredictor(model)
        else:
            from samkit.modeling.sam2 import Sam2
            from samkit.predict.sam2 import Sam2ImagePredictor

            if isinstance(model, (Sam2, Sam2ImagePredictor)):
                raise ValueError(
                    "SamAutomaticMaskGenerator takes a SAM 1 model; for a SAM 2 / 2.1 model use "
                    "samkit.Sam2AutomaticMaskGenerator (official SAM 2 defaults and semantics)"
                )
            raise ValueError(
                f"model must be a SAM 1 model (samkit.build_sam) or a SamPredictor, got "
                f"{type(model).__name__}"
            )
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
        predictor = self.predictor
        model = predictor.model
        coords = predictor.transform.apply_coords(points, im_size)
        in_points = torch.as_tensor(coords, device=predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        sparse, dense = model.prompt_encoder(
            points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None
        )
        # `shared` is unused: the predictor keeps the decoder's image-side work itself.
        out = predictor._prompt_decoder(
            predictor.features,
            predictor._get_dense_pe(),
            sparse,
            dense,
            multimask_output=True,
            no_mask_embed=model.prompt_encoder.no_mask_embed.weight,
        )
        return out[0].flatten(0, 1).float(), out[1].flatten(0, 1).float()

    def upsampler(self, low_res_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Upsampler:
        return MaskUpsampler(
            low_res_hw,
            self.predictor.model.image_encoder.img_size,
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
        from samkit.modeling.sam2 import Sam2
        from samkit.predict.sam2 import Sam2ImagePredictor

        if isinstance(model, Sam2ImagePredictor):
            self.predictor = model
        elif isinstance(model, Sam2):
            self.predictor = Sam2ImagePredictor(model)
        else:
            raise ValueError(
                f"Sam2AutomaticMaskGenerator takes a SAM 2 / 2.1 model (samkit.build_sam2) or a "
                f"Sam2ImagePredictor, got {type(model).__name__}; for SAM 1 use "
                "samkit.SamAutomaticMaskGenerator"
            )
        if min_mask_region_area > 0:
            from samkit.predict.postprocess import require_scipy

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
        p = self.predictor
        coords = p._transform_coords(points, True, im_size)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
        return p._decode_low_res(
            mask_input, coords[:, None, :], labels[:, None], None, multimask, 0
        )

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
            from samkit.predict.postprocess import fill_holes_and_remove_sprinkles

            low_res = fill_holes_and_remove_sprinkles(
                low_res, self.predictor.mask_threshold, self.hole_area, self.hole_area
            )
        return low_res.flatten(0, 1), iou.flatten(0, 1)

    def upsampler(self, low_res_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Upsampler:
        return DirectUpsampler(crop_hw, self.device)
