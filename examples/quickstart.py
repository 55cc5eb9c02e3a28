"""Segment an object in a photo from one point prompt; write the mask PNG and an overlay PNG.

    python examples/quickstart.py ../shared/images/truck.jpg --point 500,375 --out out/

Uses the official vit_b checkpoint (downloaded once into the cache; offline, the message says
where to put the file), any SAM 1 checkpoint given with --checkpoint PATH, or, to try it without
any file, --random-weights (everything runs, but the mask is meaningless).
Writes <out>/<stem>_mask.png (samkit's mask PNG: 1-bit, white = object) and
<out>/<stem>_overlay.png (the mask and the point drawn over the photo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image", type=Path)
    ap.add_argument(
        "--point", default=None, help="X,Y in pixels, e.g. 500,375 (default: the image centre)"
    )
    ap.add_argument("--model", default="vit_b", help="variant name (default: vit_b)")
    weights = ap.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, default=None, help="a local checkpoint file")
    weights.add_argument(
        "--random-weights",
        action="store_true",
        help="no checkpoint at all: runs offline, but the mask is meaningless (smoke test)",
    )
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as e:  # unknown model, unreadable image or checkpoint, offline
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from samkit import SamPredictor, build_sam
    from samkit.amg import render_overlay
    from samkit.checkpoint import fetch_checkpoint
    from samkit.configs import get_variant
    from samkit.fileio import atomic_write_bytes, write_mask_png
    from samkit.server.encoding import decode_image, draw_prompts, png_bytes

    image = decode_image(args.image)
    h, w = image.shape[:2]
    if args.point is None:
        x, y = w / 2, h / 2
    else:
        try:
            x, y = (float(v) for v in args.point.split(","))
        except ValueError:
            raise ValueError(
                f"--point {args.point!r}: expected X,Y in pixels, e.g. 500,375"
            ) from None

    if args.checkpoint is not None:  # any SAM 1 checkpoint: the architecture comes from it
        sam = build_sam(checkpoint=args.checkpoint)
    else:
        variant = get_variant(args.model)  # an unknown name says which names exist
        if variant.family != "sam1":
            raise ValueError(f"--model {args.model}: this example uses SAM 1 (vit_b, vit_l, vit_h)")
        if args.random_weights:
            print(
                "warning: --random-weights: the mask is MEANINGLESS (smoke test)", file=sys.stderr
            )
            sam = build_sam(variant.name)
        else:
            sam = build_sam(variant.name, checkpoint=fetch_checkpoint(variant.name))

    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[x, y]]), np.array([1]))
    best = int(np.argmax(scores))
    mask_path = write_mask_png(args.out / f"{args.image.stem}_mask.png", masks[best])
    overlay = render_overlay(image, [{"segmentation": masks[best], "area": 0}])
    overlay = draw_prompts(overlay, [(x, y)], [1])
    overlay_path = atomic_write_bytes(
        args.out / f"{args.image.stem}_overlay.png", png_bytes(overlay)
    )
    print(
        f"mask {best} (predicted IoU {scores[best]:.3f}, {int(masks[best].sum())} px) -> {mask_path}"
    )
    print(f"overlay -> {overlay_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
