"""The automatic-mask-generator options of `samkit auto` (names, types, defaults, help).

Standard library only: the parser is built from this list without importing the generator.
"""

from __future__ import annotations

import argparse
from typing import Any

# (keyword of SamAutomaticMaskGenerator / Sam2AutomaticMaskGenerator, type, default, help);
# a None default takes the model family's own default (see `samkit.jobs.settled_amg_kwargs`).
AMG_OPTIONS: list[tuple[str, type, Any, str]] = [
    ("points_per_side", int, 32, "grid points per side (points_per_side**2 prompts)"),
    ("points_per_batch", int, 64, "prompts decoded at once"),
    (
        "pred_iou_thresh",
        float,
        None,
        "keep masks with predicted IoU above this (default 0.88 for SAM 1, 0.8 for SAM 2)",
    ),
    ("stability_score_thresh", float, 0.95, "keep masks with stability at least this"),
    ("stability_score_offset", float, 1.0, "logit offset of the stability score"),
    ("box_nms_thresh", float, 0.7, "box IoU of NMS within a crop"),
    ("crop_n_layers", int, 0, "extra layers of image crops"),
    ("crop_nms_thresh", float, 0.7, "box IoU of NMS between crops"),
    ("crop_overlap_ratio", float, 512 / 1500, "overlap of layer-1 crops"),
    ("crop_n_points_downscale_factor", int, 1, "points per side shrink per crop layer"),
    ("min_mask_region_area", int, 0, "remove holes/islands smaller than this (pixels)"),
]


def add_amg_args(p: argparse.ArgumentParser) -> None:
    """Add `--points-per-side`, `--pred-iou-thresh`, ... (one per `AMG_OPTIONS` entry)."""
    for name, typ, default, help_ in AMG_OPTIONS:
        p.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=typ, default=default, help=help_
        )
