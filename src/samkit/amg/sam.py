"""SamAutomaticMaskGenerator: "segment everything" with a SAM 1 model (official semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.amg.adapters import SamAdapter
from samkit.amg.masks import _MISSING_CC, connected_components_available
from samkit.amg.pipeline import OUTPUT_MODES, MaskGeneratorBase
from samkit.amg.runtime import ProgressFn
from samkit.amg.validate import check_params

__all__ = ["OUTPUT_MODES", "SamAutomaticMaskGenerator"]


class SamAutomaticMaskGenerator(MaskGeneratorBase):
    """Generates masks for a whole image from a grid of point prompts, with the semantics of
    `segment_anything.SamAutomaticMaskGenerator`.

    Args:
        model: a SAM 1 model (or a `SamPredictor` wrapping one). A SAM 2 model raises a
            ValueError pointing to `Sam2AutomaticMaskGenerator`.
        points_per_side: grid points per side (points_per_side**2 prompts); exclusive with
            `point_grids`.
        points_per_batch: prompts run through the decoder at once.
        pred_iou_thresh: keep masks with predicted IoU > this (0 disables), in [0, 1].
        stability_score_thresh: keep masks with stability >= this (0 disables), in [0, 1].
        stability_score_offset: logit offset of the stability score, >= 0.
        box_nms_thresh: box IoU threshold of NMS within a crop, in [0, 1].
        crop_n_layers: extra layers of image crops (layer i has 2**i crops per side).
        crop_nms_thresh: box IoU threshold of NMS between crops, in [0, 1].
        crop_overlap_ratio: overlap of layer-1 crops as a fraction of the short side, in [0, 1).
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side.
        point_grids: explicit Nx2 grids in [0, 1], one per crop layer.
        min_mask_region_area: if > 0, fill holes and remove islands smaller than this (needs
            scipy or opencv, the `[amg]` extra).
        output_mode: "binary_mask" (HxW bool arrays), "uncompressed_rle" or "coco_rle".
        progress: a callable `(done, total, stage)`, or True for a tqdm bar.

    After `generate`, `timings` has the encoder / decoder / post-processing split and
    `filter_counts` / `empty_reason()` say which filter removed how many candidates.
    """

    def __init__(
        self,
        model: Any,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
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
        if min_mask_region_area > 0 and not connected_components_available():
            raise ValueError(_MISSING_CC)
        self._setup(SamAdapter(model), output_mode=output_mode, progress=progress, **params)
