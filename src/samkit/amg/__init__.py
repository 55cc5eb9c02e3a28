"""Automatic mask generation: point grids, crops, NMS, RLE, mask utilities and the generator."""

from samkit.amg.crops import (
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from samkit.amg.grid import build_all_layer_point_grids, build_point_grid
from samkit.amg.io import render_overlay, write_coco_json
from samkit.amg.masks import batched_mask_to_box, calculate_stability_score, remove_small_regions
from samkit.amg.nms import batched_nms, box_area, box_iou, nms
from samkit.amg.sam import OUTPUT_MODES, SamAutomaticMaskGenerator
from samkit.amg.sam2 import Sam2AutomaticMaskGenerator
from samkit.io.rle import (
    area_from_rle,
    bbox_from_rle,
    coco_decode_rle,
    coco_encode_rle,
    mask_to_rle_pytorch,
    rle_to_mask,
)

__all__ = [
    "OUTPUT_MODES",
    "Sam2AutomaticMaskGenerator",
    "SamAutomaticMaskGenerator",
    "area_from_rle",
    "batched_mask_to_box",
    "batched_nms",
    "bbox_from_rle",
    "box_area",
    "box_iou",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_decode_rle",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "nms",
    "remove_small_regions",
    "render_overlay",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
    "write_coco_json",
]
