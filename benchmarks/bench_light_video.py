"""EfficientTAM and EdgeTAM speed and memory next to SAM 2.1 hiera_t (random weights, CPU).

    python benchmarks/bench_light_video.py [--models sam2.1_hiera_t efficienttam_ti efficienttam_s
                                           edgetam]
                                           [--dtypes float32 bfloat16] [--repeats 3] [--threads 2]
                                           [--frames 4] [--objects 1 3] [--cpu-time]

Each (model, dtype) runs in its own subprocess, so its peak RSS (`ru_maxrss`) is its own. Per run:
image encoder forward on a preprocessed 1024 x 1024 input (after one warm-up), `set_image` on
truck.jpg, one-point `predict`, and video tracking of 1 and 3 objects (`--objects`: one click per
object on frame 0 of ../shared/fixtures/sam2_video/frames, then `propagate_in_video` over
`--frames` frames after it, a fresh state per object count: seconds per tracked frame, each
frame's image encoder included; frame 0, whose memory is encoded when propagation starts, is
not counted). EfficientTAM runs its pooled
cross-attention variant (`efficienttam_*_1`) for video; EdgeTAM its official model (`edgetam`,
with its batched video predictor). Writes benchmarks/results/light_video.json
with each model's times and the ratio to sam2.1_hiera_t in the same dtype. On a shared machine
take the ratios, not the absolute times, or pass `--cpu-time`: one thread, every time the
process's CPU time, which other jobs on the machine barely move.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
FRAMES = ROOT.parent / "shared" / "fixtures" / "sam2_video" / "frames"
MODELS = ("sam2.1_hiera_t", "efficienttam_ti", "efficienttam_s", "edgetam")


CLICKS = ([430.0, 200.0], [200.0, 300.0], [700.0, 350.0])


def run_one(
    model_name: str,
    dtype_name: str,
    repeats: int,
    threads: int,
    frames: int,
    objects: list[int],
    cpu_time: bool = False,
) -> dict:
    """Measure one model in this process (the subprocess side)."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from benchmarks.common import median_time
    from samkit import build_sam2
    from samkit.build.edgetam import build_edgetam
    from samkit.build.efficienttam import build_efficienttam
    from samkit.predict.sam2 import Sam2ImagePredictor
    from samkit.video.build import build_sam2_video_predictor
    from samkit.video.edgetam import build_edgetam_video_predictor
    from samkit.video.efficienttam import build_efficienttam_video_predictor

    clock = time.process_time if cpu_time else time.perf_counter
    torch.set_num_threads(1 if cpu_time else threads)
    dtype = getattr(torch, dtype_name)
    image = np.array(Image.open(IMAGES / "truck.jpg").convert("RGB"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    efficient, edge = model_name.startswith("efficienttam"), model_name == "edgetam"
    build = build_edgetam if edge else build_efficienttam if efficient else build_sam2
    model = build(model_name, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    enc_params = sum(p.numel() for p in model.image_encoder.parameters())
    x = model.preprocess(torch.rand(1, 3, 1024, 1024))
    with torch.inference_mode():
        enc = median_time(
            lambda: model.image_encoder(x.to(model.dtype)), repeats=repeats, clock=clock
        )
    pred = Sam2ImagePredictor(model)
    set_image = median_time(lambda: pred.set_image(image), repeats=repeats, warmup=0, clock=clock)
    pt, lb = np.array([[500.0, 375.0]]), np.array([1])
    predict = median_time(
        lambda: pred.predict(pt, lb), repeats=max(5, repeats), warmup=1, clock=clock
    )
    if edge:
        vp = build_edgetam_video_predictor(model_name, dtype=dtype, fill_hole_area=0)
    elif efficient:
        vp = build_efficienttam_video_predictor(model_name + "_1", dtype=dtype, fill_hole_area=0)
    else:
        vp = build_sam2_video_predictor(model_name, dtype=dtype, fill_hole_area=0)
    video: dict[str, float] = {}
    for n_objects in objects:
        state = vp.init_state(str(FRAMES))
        for obj_id in range(1, n_objects + 1):
            click = [CLICKS[(obj_id - 1) % len(CLICKS)]]
            vp.add_new_points_or_box(state, 0, obj_id, points=click, labels=[1])
        frames_iter = vp.propagate_in_video(state, max_frame_num_to_track=frames)
        next(frames_iter)  # frame 0: the clicked frame's memory, not a tracked frame
        t0, n = clock(), 0
        for _ in frames_iter:
            n += 1
        key = (
            "video_s_per_frame_1_object"
            if n_objects == 1
            else f"video_s_per_frame_{n_objects}_objects"
        )
        video[key] = (clock() - t0) / max(n, 1)
        del state
    return {
        "model": model_name,
        "dtype": dtype_name,
        "params_m": round(params / 1e6, 2),
        "encoder_params_m": round(enc_params / 1e6, 2),
        "encoder_s": enc["median_s"],
        "set_image_s": set_image["median_s"],
        "predict_ms": predict["median_s"] * 1e3,
        **video,
        "video_frames": n,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
        "threads": 1 if cpu_time else threads,
        "clock": "process CPU time" if cpu_time else "wall",
    }


RATIO_KEYS = ("encoder_s", "set_image_s", "predict_ms", "peak_rss_mb")


def _ratios(rows: list[dict]) -> None:
    base = {r["dtype"]: r for r in rows if r["model"] == "sam2.1_hiera_t"}
    for r in rows:
        b = base.get(r["dtype"])
        if b is not None:
            measured = [k for k in r if not k.endswith("_vs_hiera_t")]
            for k in [
                k for k in measured if k in b and (k.startswith("video_s") or k in RATIO_KEYS)
            ]:
                r[f"{k}_vs_hiera_t"] = r[k] / b[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--dtypes", nargs="+", default=["float32"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="one thread, every time the process's CPU time (for a shared machine)",
    )
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument(
        "--objects", type=int, nargs="+", default=[1, 3], help="objects tracked per run"
    )
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        row = run_one(
            *args.one, args.repeats, args.threads, args.frames, args.objects, args.cpu_time
        )
        print(json.dumps(row))
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import environment, write_json

    rows = []
    for dtype in args.dtypes:
        for model in args.models:
            cmd = [sys.executable, __file__, "--one", model, dtype, "--repeats", str(args.repeats)]
            cmd += ["--threads", str(args.threads), "--frames", str(args.frames)]
            cmd += ["--objects", *map(str, args.objects)] + ["--cpu-time"] * args.cpu_time
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
            _ratios(rows)
            write_json("light_video", {"environment": environment(), "runs": rows})


if __name__ == "__main__":
    main()
