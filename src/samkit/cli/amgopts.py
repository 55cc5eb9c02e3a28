"""The automatic-mask-generator options of `samkit auto` (names, types, defaults, help), and the
checks made before a model is loaded (`crop_layers_warnings`).

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
    (
        "crop_n_layers",
        int,
        0,
        "extra layers of image crops: layer i adds 4**i crops, each encoded like a whole image "
        "(1: 4 crops, 2: 4 + 16; more is warned about)",
    ),
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


# The most crop layers run without a word: the web app's limit (1 + 4 + 16 = 21 crops per
# image); the official examples use 1.
QUIET_CROP_LAYERS = 2


def crop_layers_warnings(
    crop_n_layers: int, points_per_side: int | None, downscale: int | None
) -> list[str]:
    """What `--crop-n-layers` costs when it is over `QUIET_CROP_LAYERS`: the crops per image
    (layer i has 2**i x 2**i crops, `samkit.amg.crops.generate_crop_boxes` as the official
    `generate_crop_boxes`) and the point prompts they take; no warning at or under it. The
    official `SamAutomaticMaskGenerator` takes any number, so a large one is warned about, not
    refused: it may be meant for a very large image.

    Args:
        crop_n_layers: `--crop-n-layers`.
        points_per_side, downscale: `--points-per-side` and `--crop-n-points-downscale-factor`
            (layer i takes int(points_per_side / downscale**i)**2 points per crop).

    Returns:
        The warning lines (none or one).

    Raises:
        ValueError: a negative `crop_n_layers`, before any model is loaded.
    """
    if crop_n_layers < 0:
        raise ValueError(
            f"--crop-n-layers {crop_n_layers}: must be 0 (the whole image only) or more (layer "
            "i adds 4**i crops)"
        )
    if crop_n_layers <= QUIET_CROP_LAYERS:
        return []
    per_layer = [4**i for i in range(crop_n_layers + 1)]
    crops = sum(per_layer)
    sizes = f"{' + '.join(f'{n:,}' for n in per_layer)} = {crops:,} crops"
    prompts = ""
    if points_per_side is not None and points_per_side > 0 and downscale and downscale > 0:
        n = sum(c * int(points_per_side / downscale**i) ** 2 for i, c in enumerate(per_layer))
        prompts = f", {n:,} point prompts instead of {points_per_side**2:,}"
    return [
        f"--crop-n-layers {crop_n_layers} means {sizes} per image, each encoded like the whole "
        f"image: about {crops:,}x the time of --crop-n-layers 0{prompts}. The official examples "
        f"use 1 and the web app at most {QUIET_CROP_LAYERS}; --crop-n-points-downscale-factor 2 "
        "makes the later layers' prompts fewer, not their encoder passes"
    ]
