"""The onnxruntime video predictor next to the torch one: seconds per tracked frame, 1 and 3 objects.

A randomly initialised sam2.1_hiera_t (float32, built from the variant config; the timing does
not depend on the weights) is exported with `samkit.export.sam2_video.export_sam2_video_onnx`;
`Sam2VideoPredictor` (torch) and `OnnxSam2VideoPredictor` (onnxruntime, CPU provider) then track
the same synthetic 960x540 frames with the same clicks on frame 0. Seconds per frame are timed
after the memory bank is full (frame > num_maskmem), the two predictors alternating A B A B in
one process with the same thread count, so their ratio holds on a loaded machine. The largest
logit difference between the two runs is printed as a check.

    python -m benchmarks.bench_onnx_video                       # 1 and 3 objects, 2 threads
    python -m benchmarks.bench_onnx_video --objects 1 --frames 10 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_video import synthetic_frames
from benchmarks.common import write_json


def track(pred, frames: list[np.ndarray], n_obj: int) -> tuple[float, list[torch.Tensor]]:
    """Mean seconds per frame after the memory bank is full, and every frame's logits."""
    state = pred.init_state(frames)
    for k in range(n_obj):
        pred.add_new_points_or_box(state, 0, k + 1, points=[[380 + 150 * k, 270]], labels=[1])
    warm = pred.model.num_maskmem
    times, logits = [], []
    t_prev = time.perf_counter()
    for f, _, masks in pred.propagate_in_video(state):
        now = time.perf_counter()
        if f > warm:
            times.append(now - t_prev)
        logits.append(masks.clone())
        t_prev = time.perf_counter()
    return float(np.mean(times)), logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="sam2.1_hiera_t")
    ap.add_argument("--objects", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--frames", type=int, default=11, help="frames tracked per run")
    ap.add_argument("--repeats", type=int, default=2, help="A B rounds per object count")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from samkit import build_sam2_video_predictor
    from samkit.export.ort_video import OnnxSam2VideoPredictor
    from samkit.export.sam2_video import export_sam2_video_onnx

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tp = build_sam2_video_predictor(args.variant, fill_hole_area=0)
    frames = synthetic_frames(args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_sam2_video_onnx(tp.model, tmp)
        export_s = time.perf_counter() - t0
        op = OnnxSam2VideoPredictor(tmp, fill_hole_area=0, threads=args.threads)
        for n_obj in args.objects:
            t_torch, t_ort, diff = [], [], 0.0
            for _ in range(args.repeats):
                a, la = track(tp, frames, n_obj)
                b, lb = track(op, frames, n_obj)
                t_torch.append(a)
                t_ort.append(b)
                diff = max(diff, max(float((x - y).abs().max()) for x, y in zip(la, lb)))
            row = {
                "variant": args.variant,
                "objects": n_obj,
                "threads": args.threads,
                "torch_s_per_frame": min(t_torch),
                "ort_s_per_frame": min(t_ort),
                "ort_over_torch": min(t_ort) / min(t_torch),
                "max_logit_diff": diff,
            }
            rows.append(row)
            print(
                f"{args.variant} {n_obj} obj: torch {row['torch_s_per_frame']:.3f} s/frame, "
                f"onnxruntime {row['ort_s_per_frame']:.3f} s/frame, ratio ORT/torch "
                f"{row['ort_over_torch']:.2f} (max logit diff {diff:.1e})",
                file=sys.stderr,
            )
    write_json("onnx_video", {"rows": rows, "export_s": export_s}, args.out)


if __name__ == "__main__":
    main()
