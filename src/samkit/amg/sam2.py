"""Sam2AutomaticMaskGenerator: "segment everything" with a SAM 2 / 2.1 model (official semantics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from samkit.amg.adapters import Sam2Adapter
from samkit.amg.pipeline import MaskGeneratorBase
from samkit.amg.runtime import ProgressFn
from samkit.amg.validate import check_params


class Sam2AutomaticMaskGenerator(MaskGeneratorBase):
    """Generates masks for a whole image from a grid of point prompts, with the semantics of
    `sam2.SAM2AutomaticMaskGenerator` (sam2 1.1.0).

    The pipeline is the SAM 1 one (`MaskGeneratorBase`); what SAM 2 changes is in `Sam2Adapter`:
    points are normalised by the crop size before scaling to the model input, the low-res
    logits are upsampled in one bilinear step, `mask_threshold` is a generator setting,
    `multimask_output=False` keeps the decoder's single (stability-selected) mask per point,
    `use_m2m` decodes every mask once more with its own low-res logits (clamped to [-32, 32])
    as the mask prompt and filters on the refined masks and IoUs, and `min_mask_region_area`
    fills holes and removes sprinkles of up to that many *low-res* pixels before upsampling
    (the official generator passes it to its predictor; there is no full-resolution
    small-region pass).

    Args:
        model: a SAM 2 / 2.1 model (`samkit.build_sam2`) or a `Sam2ImagePredictor`.
        points_per_side: grid points per side (points_per_side**2 prompts); exclusive with
            `point_grids`.
        points_per_batch: prompts run through the decoder at once (also the refinement batch).
        pred_iou_thresh: keep masks with predicted IoU > this (0 disables), in [0, 1].
        stability_score_thresh: keep masks with stability >= this (0 disables), in [0, 1].
        stability_score_offset: logit offset of the stability score, >= 0.
        mask_threshold: logit threshold binarising the masks (finite).
        box_nms_thresh: box IoU threshold of NMS within a crop, in [0, 1].
        crop_n_layers: extra layers of image crops (layer i has 2**i crops per side).
        crop_nms_thresh: box IoU threshold of NMS between crops, in [0, 1].
        crop_overlap_ratio: overlap of layer-1 crops as a fraction of the short side, in [0, 1).
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side.
        point_grids: explicit Nx2 grids in [0, 1], one per crop layer.
        min_mask_region_area: low-res hole / sprinkle area (see above; needs scipy).
        output_mode: "binary_mask" (HxW bool arrays), "uncompressed_rle" or "coco_rle".
        use_m2m: one mask-to-mask refinement step per candidate.
        multimask_output: 3 masks per point (True) or 1.
        progress: a callable `(done, total, stage)`, or True for a tqdm bar.

    Raises:
        ValueError: for a SAM 1 model or any setting out of range.
    """

    small_region_pass = False

    def __init__(
        self,
        model: Any,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        progress: ProgressFn | bool | None = None,
    ) -> None:
        params = dict(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids,
            min_mask_region_area=min_mask_region_area,
        )
        check_params(**params)
        if (
            isinstance(mask_threshold, bool)
            or not isinstance(mask_threshold, (int, float, np.floating, np.integer))
            or not math.isfinite(float(mask_threshold))
        ):
            raise ValueError(f"mask_threshold must be a finite number, got {mask_threshold!r}")
        for name, flag in (("use_m2m", use_m2m), ("multimask_output", multimask_output)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        adapter = Sam2Adapter(
            model,
            mask_threshold=float(mask_threshold),
            multimask_output=bool(multimask_output),
            use_m2m=bool(use_m2m),
            points_per_batch=int(points_per_batch),
            min_mask_region_area=int(min_mask_region_area),
        )
        self.mask_threshold = float(mask_threshold)
        self.use_m2m = bool(use_m2m)
        self.multimask_output = bool(multimask_output)
        self._setup(adapter, output_mode=output_mode, progress=progress, **params)
