"""Click latency of the web app: server-side decode + RLE (+ PNG) encoding, vit_b architecture.

The image is encoded once (as the app does); then each "click" is one random foreground point
answered with 3 candidate masks at the original resolution, as `POST /api/images/{id}/predict`
does. Measured per click:

* `engine`: `Engine.submit_predict` on the app's decoding thread = prompt encoder + mask decoder + upsampling to the image size +
  threshold + COCO RLE, bbox and area of the 3 masks (what the page asks for);
* `engine_png`: the same plus a 1-bit PNG of each of the 3 masks (`png: true`);
* `http`: the full request through the app (FastAPI TestClient: routing, validation, JSON).

Random weights (`build_sam("vit_b")`): the timing does not depend on the weights.

    python benchmarks/bench_server.py [--clicks 100] [--threads 2] [--out benchmarks/results/bench_server.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"


def _summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "median_ms": round(float(np.median(a)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "mean_ms": round(float(a.mean()), 2),
        "min_ms": round(float(a.min()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clicks", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", nargs="+", default=["truck.jpg", "dog.jpg"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_server.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fastapi.testclient import TestClient

    from samkit import build_sam
    from samkit.accel import tune_malloc
    from samkit.server.app import create_app
    from samkit.server.threads import run_in_fresh_thread

    # As `samkit serve` does: tuned malloc, no torch op on the main thread
    # (see samkit.accel.tune_malloc and samkit.server.threads).
    tune_malloc()
    model = run_in_fresh_thread(build_sam, "vit_b")
    app = create_app(model, cache_bytes=1 << 30, max_upload_bytes=32 * 2**20)
    engine = app.state.engine
    results: dict[str, object] = {
        "benchmark": "server click latency",
        "model": "vit_b (random weights)",
        "clicks": args.clicks,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "images": {},
    }
    with TestClient(app) as client:
        for name in args.images:
            data = (IMAGES / name).read_bytes()
            t = time.perf_counter()
            r = client.post("/api/images", content=data)
            r.raise_for_status()
            encode_s = time.perf_counter() - t
            info = r.json()
            entry = engine.get(info["image_id"])
            w, h = info["width"], info["height"]
            rng = np.random.default_rng(0)
            points = rng.uniform([0, 0], [w, h], size=(args.clicks + 5, 2)).tolist()
            timings: dict[str, list[float]] = {
                "engine": [],
                "engine_png": [],
                "http": [],
                "decode_only": [],
            }
            for i, p in enumerate(points):
                t0 = time.perf_counter()
                out = engine.submit_predict(entry, [tuple(p)], [1], None, True).result()
                t1 = time.perf_counter()
                engine.submit_predict(entry, [tuple(p)], [1], None, True, png=True).result()
                t2 = time.perf_counter()
                resp = client.post(
                    f"/api/images/{info['image_id']}/predict", json={"points": [p], "labels": [1]}
                )
                t3 = time.perf_counter()
                resp.raise_for_status()
                if i < 5:  # warm-up
                    continue
                timings["engine"].append((t1 - t0) * 1e3)
                timings["engine_png"].append((t2 - t1) * 1e3)
                timings["http"].append((t3 - t2) * 1e3)
                timings["decode_only"].append(out["decode_ms"])
            results["images"][name] = {
                "size_hw": [h, w],
                "encode_s": round(encode_s, 2),
                **{k: _summary(v) for k, v in timings.items()},
            }
            print(name, json.dumps(results["images"][name]), flush=True)
    medians = [v["engine"]["median_ms"] for v in results["images"].values()]
    results["target"] = "median engine click < 60 ms"
    results["worst_median_ms"] = max(medians)
    results["meets_target"] = statistics.fmean([m < 60 for m in medians]) == 1.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
