"""The image-reading options of every command that decodes image files (see `samkit.io.images`):
`--stretch` and `--max-pixels`. Built from `samkit.io.limits`, so no numpy / PIL import."""

from __future__ import annotations

import argparse
from typing import Any

from samkit.io.limits import DEFAULT_MAX_PIXELS, PERCENTILE_STRETCH, parse_max_pixels


def max_pixels_arg(text: str) -> int:
    """argparse `type` of `--max-pixels`: `samkit.io.limits.parse_max_pixels`'s rule."""
    try:
        return parse_max_pixels(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_max_pixels_arg(p: argparse.ArgumentParser, default: int = DEFAULT_MAX_PIXELS) -> None:
    """Add `--max-pixels N`: the largest image (width x height) decoded; larger files are
    refused with an error that names the option (decompression-bomb protection)."""
    p.add_argument(
        "--max-pixels",
        type=max_pixels_arg,
        default=default,
        metavar="N",
        help="largest image to decode, in pixels (width x height); larger files are refused "
        "(decompression-bomb protection); raise it for large images, e.g. 108,000,000 for "
        "12000x9000",
    )


def add_image_args(
    p: argparse.ArgumentParser, max_pixels_default: int | None = DEFAULT_MAX_PIXELS
) -> None:
    """Add `--stretch` (percentile contrast stretch of 16-bit / float / low-contrast images) and
    `--max-pixels` (`add_max_pixels_arg`; left out when `max_pixels_default` is None)."""
    lo, hi = PERCENTILE_STRETCH
    p.add_argument(
        "--stretch",
        action="store_true",
        help=f"stretch the {lo:g}th..{hi:g}th percentiles of the pixel values to 0..255 (for "
        "low-contrast 16-bit microscopy and float TIFFs); without it 16-bit images are reduced "
        "by a right shift of 8, as OpenCV does, and float images must lie in [0, 1]",
    )
    if max_pixels_default is not None:
        add_max_pixels_arg(p, max_pixels_default)


def image_stretch(args: argparse.Namespace) -> Any:
    """The `stretch` argument of `samkit.io.images.decode_image` for these parsed arguments."""
    return PERCENTILE_STRETCH if getattr(args, "stretch", False) else None


def image_max_pixels(args: argparse.Namespace) -> int:
    """The `max_pixels` argument of `samkit.io.images.decode_image` for these parsed arguments."""
    return int(getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS)
