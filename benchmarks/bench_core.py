"""SAM 1 core speed: vit_b encoder forward, set_image and one-point predict (fp32, 2 threads).

    python benchmarks/bench_core.py [--variant vit_b] [--repeats 5] [--threads 2]

Prints the encoder's achieved GFLOP/s divided by the fp32 matmul GFLOP/s measured in the same
run (the roofline ratio). Random weights: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import count_flops, matmul_gflops, median_time, write_json

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="vit_b")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", default=str(IMAGES / "truck.jpg"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from samkit import SamPredictor, build_sam

    model = build_sam(args.variant)
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        flops = count_flops(lambda: model.image_encoder(x))
        enc = median_time(lambda: model.image_encoder(x), repeats=args.repeats)
    peak = matmul_gflops(torch.float32)
    achieved = flops / enc["median_s"] / 1e9

    image = np.array(Image.open(args.image).convert("RGB"))
    predictor = SamPredictor(model)
    set_image = median_time(lambda: predictor.set_image(image), repeats=args.repeats)
    pt, lb = np.array([[500.0, 375.0]]), np.array([1])
    predict = median_time(
        lambda: predictor.predict(pt, lb), repeats=max(10, args.repeats), warmup=3
    )

    result = {
        "variant": args.variant,
        "image": Path(args.image).name,
        "image_hw": list(image.shape[:2]),
        "encoder_gflop": flops / 1e9,
        "encoder": enc,
        "encoder_gflops_per_s": achieved,
        "matmul_fp32_gflops_per_s": peak,
        "roofline_ratio": achieved / peak,
        "set_image": set_image,
        "predict_1pt_multimask": predict,
    }
    write_json(f"core_{args.variant}", result, args.out)
    print(
        f"\n{args.variant}: encoder {enc['median_s'] * 1e3:.0f} ms "
        f"({achieved:.0f} GFLOP/s = {achieved / peak:.0%} of fp32 matmul {peak:.0f} GFLOP/s), "
        f"set_image {set_image['median_s'] * 1e3:.0f} ms, "
        f"predict {predict['median_s'] * 1e3:.1f} ms"
    )
    return result


if __name__ == "__main__":
    main()
