"""SAM 2.1 speed: Hiera encoder forward, set_image and one-point predict (fp32, 2 threads).

    python benchmarks/bench_sam2.py [--variants sam2.1_hiera_t sam2.1_hiera_s] [--repeats 5]

For each variant it prints the encoder's achieved GFLOP/s divided by the fp32 matmul GFLOP/s
measured in the same run (the roofline ratio), and writes benchmarks/results/sam2_<variant>.json.
The encoder time covers the trunk, the neck and the decoder's conv_s0 / conv_s1 projections
(`Sam2.encode_image` on a preprocessed 1024x1024 input); set_image adds reading the uint8 image,
the antialiased resize and normalisation. Random weights: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import count_flops, matmul_gflops, median_time, write_json

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def bench_variant(name: str, image: np.ndarray, repeats: int, peak: float) -> dict:
    from samkit import Sam2ImagePredictor, build_sam2

    t0 = time.perf_counter()
    model = build_sam2(name)
    build_s = time.perf_counter() - t0
    x = model.preprocess(torch.rand(1, 3, 1024, 1024))
    with torch.inference_mode():
        flops = count_flops(lambda: model.encode_image(x))
        enc = median_time(lambda: model.encode_image(x), repeats=repeats)
    achieved = flops / enc["median_s"] / 1e9

    predictor = Sam2ImagePredictor(model)
    set_image = median_time(lambda: predictor.set_image(image), repeats=repeats)
    pt, lb = np.array([[500.0, 375.0]]), np.array([1])
    predict = median_time(lambda: predictor.predict(pt, lb), repeats=max(10, repeats), warmup=3)
    box = np.array([425.0, 600.0, 700.0, 875.0])
    predict_box = median_time(
        lambda: predictor.predict(box=box, multimask_output=False),
        repeats=max(10, repeats),
        warmup=3,
    )
    return {
        "variant": name,
        "params_image_path": sum(p.numel() for p in model.parameters()),
        "build_s": build_s,
        "encoder_gflop": flops / 1e9,
        "encoder": enc,
        "encoder_gflops_per_s": achieved,
        "roofline_ratio": achieved / peak,
        "set_image": set_image,
        "predict_1pt_multimask": predict,
        "predict_box_single": predict_box,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_s"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", default=str(IMAGES / "truck.jpg"))
    ap.add_argument("--out-dir", default=None, help="default benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    image = np.array(Image.open(args.image).convert("RGB"))
    peak = matmul_gflops(torch.float32)
    results = []
    for name in args.variants:
        r = bench_variant(name, image, args.repeats, peak)
        r.update(
            image=Path(args.image).name,
            image_hw=list(image.shape[:2]),
            matmul_fp32_gflops_per_s=peak,
        )
        out = None if args.out_dir is None else Path(args.out_dir) / f"sam2_{name}.json"
        write_json(f"sam2_{name}", r, out)
        results.append(r)
    print()
    for r in results:
        print(
            f"{r['variant']}: encoder {r['encoder']['median_s'] * 1e3:.0f} ms "
            f"({r['encoder_gflop']:.0f} GFLOP, {r['encoder_gflops_per_s']:.0f} GFLOP/s = "
            f"{r['roofline_ratio']:.0%} of fp32 matmul {peak:.0f} GFLOP/s), "
            f"set_image {r['set_image']['median_s'] * 1e3:.0f} ms, "
            f"predict {r['predict_1pt_multimask']['median_s'] * 1e3:.1f} ms"
        )
    return results


if __name__ == "__main__":
    main()
