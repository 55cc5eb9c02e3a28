"""MobileSAM and HQ-SAM speed and memory next to SAM 1 vit_b (random weights, CPU).

    python benchmarks/bench_light.py [--models vit_b mobile_sam sam_hq_vit_tiny sam_hq_vit_b]
                                     [--dtypes float32 bfloat16] [--repeats 3] [--threads 2]
                                     [--cpu-time]

Each (model, dtype) runs in its own subprocess, so its peak RSS (`ru_maxrss`) is its own. Per run:
image encoder forward on a preprocessed 1024 x 1024 input (after one warm-up), `set_image` on truck.jpg (resize,
normalise, encoder; HQ-SAM also its early feature and HQ features), and one-point `predict`
(multimask; HQ: one mask = best SAM mask + HQ mask). bf16 is `build_*(..., dtype=torch.bfloat16)`:
the encoder in bf16, the decoder under bf16 autocast. Writes benchmarks/results/light.json with
each model's times and the ratio to vit_b in the same dtype. Random weights: speed does not
depend on the values. On a shared machine take the ratios, not the absolute times, or pass `--cpu-time`
(one thread, process CPU time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
MODELS = ("vit_b", "mobile_sam", "sam_hq_vit_tiny", "sam_hq_vit_b")


def build_image_model(model_name: str, dtype: Any) -> Any:
    """`model_name` (vit_b, mobile_sam or an HQ-SAM variant) with random weights in `dtype`."""
    from samkit import build_sam
    from samkit.build.light import build_mobile_sam, build_sam_hq

    if model_name == "vit_b":
        return build_sam("vit_b", dtype=dtype)
    if model_name == "mobile_sam":
        return build_mobile_sam("mobile_sam", dtype=dtype)
    return build_sam_hq(model_name, dtype=dtype)


def run_one(
    model_name: str, dtype_name: str, repeats: int, threads: int, cpu_time: bool = False
) -> dict:
    """Measure one model in this process (the subprocess side)."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from benchmarks.common import median_time
    from samkit import SamPredictor
    from samkit.predict.sam_hq import SamHQPredictor

    clock = time.process_time if cpu_time else time.perf_counter
    torch.set_num_threads(1 if cpu_time else threads)
    dtype = getattr(torch, dtype_name)
    image = np.array(Image.open(IMAGES / "truck.jpg").convert("RGB"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_image_model(model_name, dtype)
    params = sum(p.numel() for p in model.parameters())
    enc_params = sum(p.numel() for p in model.image_encoder.parameters())
    x = model.preprocess(torch.rand(1, 3, 1024, 1024) * 255)
    with torch.inference_mode():
        enc = median_time(
            lambda: model.image_encoder(x.to(model.dtype)), repeats=repeats, clock=clock
        )
    pred = SamHQPredictor(model) if model_name.startswith("sam_hq") else SamPredictor(model)
    set_image = median_time(lambda: pred.set_image(image), repeats=repeats, warmup=0, clock=clock)
    pt, lb = np.array([[500.0, 375.0]]), np.array([1])
    predict = median_time(
        lambda: pred.predict(pt, lb), repeats=max(5, repeats), warmup=1, clock=clock
    )
    return {
        "model": model_name,
        "dtype": dtype_name,
        "params_m": round(params / 1e6, 2),
        "encoder_params_m": round(enc_params / 1e6, 2),
        "encoder_s": enc["median_s"],
        "set_image_s": set_image["median_s"],
        "predict_ms": predict["median_s"] * 1e3,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
        "threads": 1 if cpu_time else threads,
        "clock": "process CPU time" if cpu_time else "wall",
    }


def _ratios(rows: list[dict]) -> None:
    """Each run's encoder and predict time over vit_b's in the same dtype (when measured)."""
    base = {r["dtype"]: r for r in rows if r["model"] == "vit_b"}
    for r in rows:
        b = base.get(r["dtype"])
        if b is not None:
            r["encoder_vs_vit_b"] = r["encoder_s"] / b["encoder_s"]
            r["predict_vs_vit_b"] = r["predict_ms"] / b["predict_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="one thread, every time the process's CPU time (for a shared machine)",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # subprocess: MODEL DTYPE
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], a.repeats, a.threads, a.cpu_time)))
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import write_json

    rows = []
    for dtype in a.dtypes:
        for name in a.models:
            cmd = [sys.executable, __file__, "--one", name, dtype, "--repeats", str(a.repeats)]
            cmd += ["--threads", str(a.threads)] + ["--cpu-time"] * a.cpu_time
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            _ratios(rows)
            write_json("light", {"runs": rows}, a.out)  # after every run: partial results kept
            print(
                f"{name:<16} {dtype:<9} encoder {row['encoder_s']:.3f} s  set_image "
                f"{row['set_image_s']:.3f} s  predict {row['predict_ms']:.1f} ms  peak RSS "
                f"{row['peak_rss_mb']:.0f} MB  ({row['params_m']} M params)",
                flush=True,
            )


if __name__ == "__main__":
    main()
