"""Automatic mask generation speed: encoder / decoder / post-processing split on truck.jpg.

    python benchmarks/bench_amg.py [--points-per-side 16 32] [--variant vit_b] [--threads 2]
    python benchmarks/bench_amg.py --variant vit_b sam2.1_hiera_t sam2.1_hiera_s --points-per-side 16 32

A SAM 2 / 2.1 variant runs `Sam2AutomaticMaskGenerator` (multimask, no m2m), a SAM 1 variant
`SamAutomaticMaskGenerator`; each variant writes its own JSON (`amg_<variant>.json`).

Random weights (speed does not depend on the values). With random weights every candidate mask
is a noisy whole-image pattern, so by default both quality filters are off
(`pred_iou_thresh=0`, `stability_score_thresh=0`): every candidate is upsampled to full
resolution, scored, boxed and goes through NMS, the worst case for post-processing.
"Post-processing" is everything outside the encoder (`set_image`) and decoder forward passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", nargs="+", default=["vit_b"])
    ap.add_argument("--points-per-side", type=int, nargs="+", default=[16])
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.0)
    ap.add_argument("--stability-score-thresh", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", default=str(IMAGES / "truck.jpg"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    image = np.array(Image.open(args.image).convert("RGB"))
    payloads = [_bench_variant(v, image, args) for v in args.variant]
    return payloads[0] if len(payloads) == 1 else {"variants": payloads}


def _bench_variant(variant: str, image: np.ndarray, args: argparse.Namespace) -> dict:
    from samkit.amg.select import mask_generator_for

    if variant.startswith("sam2"):
        from samkit import build_sam2

        model = build_sam2(variant)
    else:
        from samkit import build_sam

        model = build_sam(variant)
    runs = []
    for pps in args.points_per_side:
        gen = mask_generator_for(
            model,
            points_per_side=pps,
            points_per_batch=args.points_per_batch,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh,
            output_mode="binary_mask",
        )
        t0 = time.perf_counter()
        records = gen.generate(image)
        wall = time.perf_counter() - t0
        t = gen.timings
        run = {
            "points_per_side": pps,
            "num_prompts": pps * pps,
            "num_masks": len(records),
            "wall_s": wall,
            "encoder_s": t["encoder_s"],
            "decoder_s": t["decoder_s"],
            "postprocess_s": t["postprocess_s"],
            "postprocess_fraction": t["postprocess_s"] / t["total_s"],
            "outside_encoder_s": t["total_s"] - t["encoder_s"],
        }
        runs.append(run)
        print(
            f"{variant} pps={pps}: {wall:.2f} s total, encoder {t['encoder_s']:.2f} s, decoder "
            f"{t['decoder_s']:.2f} s, post-processing {t['postprocess_s']:.2f} s "
            f"({100 * run['postprocess_fraction']:.1f}%), {len(records)} masks",
            file=sys.stderr,
        )
    payload = {
        "variant": variant,
        "generator": type(gen).__name__,
        "load_average": list(os.getloadavg()),
        "image": Path(args.image).name,
        "image_hw": list(image.shape[:2]),
        "weights": "random",
        "params": {
            "points_per_batch": args.points_per_batch,
            "pred_iou_thresh": args.pred_iou_thresh,
            "stability_score_thresh": args.stability_score_thresh,
            "crop_n_layers": 0,
            "output_mode": "binary_mask",
        },
        "runs": runs,
    }
    out = args.out
    if out and len(args.variant) > 1:
        out = Path(out).with_name(f"{Path(out).stem}_{variant}{Path(out).suffix}")
    write_json(f"amg_{variant}", payload, out)
    return payload


if __name__ == "__main__":
    main()
