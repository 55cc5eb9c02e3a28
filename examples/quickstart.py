"""Segment an object in a photo from one point prompt; write the mask PNG and an overlay PNG.

    python examples/quickstart.py ../shared/images/truck.jpg --point 500,375 --out out/
    python examples/quickstart.py --demo --out out/      # offline: the built-in demo model

Uses the official vit_b checkpoint (downloaded once into the cache), or any SAM 1 checkpoint given
with --checkpoint PATH. Offline, without that file, it says where to put the file and runs the
built-in demo instead (what --demo runs): samkit's 2 MB SAM trained on generated shapes,
segmenting a generated image of three shapes from a point on the largest, and printing the IoU
of its mask with the true shape. --random-weights runs vit_b with random weights (a smoke test:
the mask is meaningless).
Writes <out>/<stem>_mask.png (samkit's mask PNG: 1-bit, white = object) and
<out>/<stem>_overlay.png (the mask and the point drawn over the image); the demo also writes the
image it generated, <out>/demo_shapes.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "image", type=Path, nargs="?", default=None, help="the image (optional with --demo)"
    )
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
    weights.add_argument(
        "--demo",
        action="store_true",
        help="the built-in demo model (2 MB, offline) on a generated image of shapes (or on IMAGE; "
        "it only knows generated shapes)",
    )
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    args = ap.parse_args(argv)
    if args.image is None and not args.demo:
        ap.error("give an IMAGE, or --demo for the built-in demo")
    try:
        return _run(args)
    except (ValueError, OSError) as e:  # unknown model, unreadable image or checkpoint
        print(f"error: {e}", file=sys.stderr)
        return 2


def _parse_point(text: str | None, h: int, w: int) -> tuple[float, float]:
    if text is None:
        return w / 2, h / 2
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--point {text!r}: expected X,Y in pixels, e.g. 500,375") from None
    return x, y


def _run(args: argparse.Namespace) -> int:
    from samkit import build_sam
    from samkit.checkpoint import CheckpointUnavailableError, fetch_checkpoint
    from samkit.configs.sam import get_variant
    from samkit.io.masks import decode_image

    if args.demo:
        return _demo(args.out, args.image, args.point)
    image = decode_image(args.image)
    x, y = _parse_point(args.point, *image.shape[:2])
    if args.checkpoint is not None:  # any SAM 1 checkpoint: the architecture comes from it
        try:
            sam = build_sam(checkpoint=args.checkpoint)
        except ValueError as e:
            if " checkpoint, not a SAM 1 one" not in str(e):
                raise
            raise ValueError(
                f"{str(e).split(': load it with')[0]}. This example is SAM 1 only; "
                "`samkit segment` runs every family (samkit segment --help)"
            ) from None
    else:
        variant = get_variant(args.model)  # an unknown name says which names exist
        if variant.family != "sam1":
            raise ValueError(
                f"--model {args.model}: this example is SAM 1 only (vit_b, vit_l, vit_h); "
                "`samkit segment` runs every family (samkit segment --help)"
            )
        if args.random_weights:
            print(
                "warning: --random-weights: the mask is MEANINGLESS (smoke test)", file=sys.stderr
            )
            sam = build_sam(variant.name)
        else:
            try:
                ckpt = fetch_checkpoint(variant.name)
            except CheckpointUnavailableError as e:
                print(f"{e}\n", file=sys.stderr)
                print(
                    f"So {args.image.name} is not segmented. Running the built-in demo instead "
                    "(`--demo`, offline): a 2 MB SAM trained on generated shapes, on a generated "
                    "image it has not seen.",
                    file=sys.stderr,
                )
                return _demo(args.out, None, None)
            sam = build_sam(variant.name, checkpoint=ckpt)
    _segment_and_write(sam, image, (x, y), args.out, args.image.stem)
    return 0


def _segment_and_write(sam, image: np.ndarray, point: tuple[float, float], out: Path, stem: str):
    """Segment from one foreground point; write <stem>_mask.png and <stem>_overlay.png."""
    from samkit import SamPredictor
    from samkit.amg import render_overlay
    from samkit.io.atomic import atomic_write_bytes
    from samkit.io.masks import png_bytes, write_mask_png
    from samkit.io.overlay import draw_prompts

    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([point]), np.array([1]))
    best = int(np.argmax(scores))
    mask_path = write_mask_png(out / f"{stem}_mask.png", masks[best])
    overlay = render_overlay(image, [{"segmentation": masks[best], "area": 0}])
    overlay = draw_prompts(overlay, [point], [1])
    overlay_path = atomic_write_bytes(out / f"{stem}_overlay.png", png_bytes(overlay))
    print(
        f"mask {best} (predicted IoU {scores[best]:.3f}, {int(masks[best].sum())} px) -> {mask_path}"
    )
    print(f"overlay -> {overlay_path}")
    return masks[best]


def _demo(out: Path, image_path: Path | None, point: str | None) -> int:
    """The built-in demo model on its generated image, or on `image_path` (a --demo IMAGE)."""
    from PIL import Image

    from samkit.io.atomic import atomic_write_bytes
    from samkit.io.masks import decode_image, png_bytes
    from samkit.train.demo import build_demo_model, demo_sample

    model = build_demo_model()
    if image_path is not None:
        print(
            "note: --demo: the demo model only knows generated shapes (flat colours on clutter); "
            "on a photo its mask means little",
            file=sys.stderr,
        )
        image = decode_image(image_path)
        x, y = _parse_point(point, *image.shape[:2])
        _segment_and_write(model, image, (x, y), out, image_path.stem)
        return 0
    sample = demo_sample()
    h, w = sample.image.shape[:2]
    x, y = _parse_point(point, h, w) if point else sample.point
    image_path = atomic_write_bytes(
        out / f"{sample.name}.png", png_bytes(Image.fromarray(sample.image))
    )
    print(f"demo image ({w}x{h}, three generated shapes) -> {image_path}")
    mask = _segment_and_write(model, sample.image, (x, y), out, sample.name)
    k = sample.shape_at(x, y)
    if not (0 <= x < w and 0 <= y < h):
        print(f"the point ({x:g}, {y:g}) is outside the {w}x{h} image (no shape to compare with)")
    elif k is None:
        print(f"the point ({x:g}, {y:g}) is on the background (no shape to compare with)")
    else:
        truth = sample.masks[k]
        iou = float((mask & truth).sum() / (mask | truth).sum())
        print(
            f"IoU with the true shape under the point ({x:g}, {y:g}): {iou:.3f} "
            "(1.0 = pixel-perfect; the overlay shows the mask over the shape)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
