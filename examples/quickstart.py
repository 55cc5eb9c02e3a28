"""Segment an object in a photo from one point prompt and write the mask as a PNG.

    python examples/quickstart.py ../shared/images/truck.jpg --point 500,375 --out out/

Uses the official vit_b checkpoint (downloaded once into the cache; offline, the message says
where to put the file), or any SAM 1 checkpoint given with --checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--point", default=None, help="X,Y in pixels (default: the image centre)")
    ap.add_argument("--model", default="vit_b", help="variant name (default vit_b)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a local checkpoint file")
    ap.add_argument("--out", type=Path, default=Path("out"))
    args = ap.parse_args(argv)

    from samkit import SamPredictor, build_sam
    from samkit.checkpoint import CheckpointUnavailableError, fetch_checkpoint
    from samkit.imageio import decode_image

    try:
        checkpoint = args.checkpoint or fetch_checkpoint(args.model)
    except CheckpointUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        image = decode_image(args.image)  # 16-bit, float, CMYK, palette, EXIF: see samkit.imageio
    except (OSError, ValueError) as e:
        print(f"error: cannot read image {args.image}: {e}", file=sys.stderr)
        return 2
    h, w = image.shape[:2]
    x, y = (w / 2, h / 2) if args.point is None else map(float, args.point.split(","))

    predictor = SamPredictor(
        build_sam(args.model if args.checkpoint is None else None, checkpoint=checkpoint)
    )
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[x, y]]), np.array([1]))
    best = int(np.argmax(scores))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.image.stem}_mask.png"
    Image.fromarray(masks[best].astype(np.uint8) * 255).save(path)
    print(f"mask {best} (predicted IoU {scores[best]:.3f}, {int(masks[best].sum())} px) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
