"""The image-reading options shared by `segment`, `auto` and `embed` (see `samkit.imageio`)."""

from __future__ import annotations

import argparse
from typing import Any

from samkit.imageio import PERCENTILE_STRETCH


def add_image_args(p: argparse.ArgumentParser) -> None:
    """Add `--stretch` (percentile contrast stretch of 16-bit / float / low-contrast images)."""
    lo, hi = PERCENTILE_STRETCH
    p.add_argument(
        "--stretch",
        action="store_true",
        help=f"stretch the {lo:g}th..{hi:g}th percentiles of the pixel values to 0..255 (for "
        "low-contrast 16-bit microscopy and float TIFFs); without it 16-bit images are reduced "
        "by a right shift of 8, as OpenCV does, and float images must lie in [0, 1]",
    )


def image_stretch(args: argparse.Namespace) -> Any:
    """The `stretch` argument of `samkit.imageio.decode_image` for these parsed arguments."""
    return PERCENTILE_STRETCH if getattr(args, "stretch", False) else None
