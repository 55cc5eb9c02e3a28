"""Where a tracked EdgeTAM frame spends its CPU time, next to SAM 2.1 hiera_t (random weights).

    python benchmarks/bench_edgetam_parts.py [--models edgetam sam2.1_hiera_t efficienttam_ti_1]
                                             [--dtypes float32 bfloat16] [--threads 1]
                                             [--frames 5] [--fuse]

One object clicked on frame 0 of ../shared/fixtures/sam2_video/frames (1024 px model input),
then `propagate_in_video` over `--frames` frames after it; frame 0 (its memory encoded at the
start of propagation) is not counted. Per frame: wall seconds, process CPU seconds (on a loaded
shared machine the CPU time with one thread is the stable number), and the CPU seconds of each
part (the model's modules timed around their `forward`: RepViT / Hiera trunk, FPN neck, memory
attention, memory encoder, spatial perceiver, mask decoder; "other" is the rest: frame decoding
and resizing, upsampling the masks, bookkeeping), and the GFLOP of the image encoder and of
a full-memory memory attention (torch.utils.flop_counter). `--fuse` folds the RepViT BatchNorms first (`RepViT.fuse_`).
Writes benchmarks/results/edgetam_parts.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT.parent / "shared" / "fixtures" / "sam2_video" / "frames"
PARTS = {
    "trunk": "image_encoder.trunk",
    "neck": "image_encoder.neck",
    "memory_attention": "memory_attention",
    "memory_encoder": "memory_encoder",
    "perceiver": "spatial_perceiver",
    "mask_decoder": "sam_mask_decoder",
}


def _hook(model: torch.nn.Module, cpu: dict[str, float]) -> None:
    for part, path in PARTS.items():
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        forward = module.forward

        def timed(*a: Any, _f: Any = forward, _p: str = part, **k: Any) -> Any:
            t = time.process_time()
            out = _f(*a, **k)
            cpu[_p] += time.process_time() - t
            return out

        module.forward = timed  # type: ignore[method-assign]


def gflops(model: Any) -> dict[str, float]:
    """GFLOP of the image encoder (1024 px) and of the memory attention with 7 memories and 16
    object pointers (a tracked frame with a full memory bank)."""
    dt = model.memory_attention.norm.weight.dtype
    c, cm = model.hidden_dim, model.mem_dim
    perceiver = getattr(model, "spatial_perceiver", None)
    per_memory = 64 * 64 if perceiver is None else perceiver.num_tokens
    n_ptr = 16 * (c // cm)
    mem = torch.rand(1, 7 * per_memory + n_ptr, cm, dtype=dt)
    feat = torch.rand(1, 64 * 64, c, dtype=dt)
    x = torch.rand(1, 3, 1024, 1024, dtype=next(model.image_encoder.parameters()).dtype)
    out = {}
    with torch.no_grad():
        for name, fn in (
            ("image_encoder", lambda: model.image_encoder(x)),
            ("memory_attention", lambda: model.memory_attention(feat, mem, feat, mem, n_ptr)),
        ):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[name] = counter.get_total_flops() / 1e9
    return out


def run(model_name: str, dtype_name: str, threads: int, frames: int, fuse: bool) -> dict:
    from samkit.video.build import build_sam2_video_predictor
    from samkit.video.edgetam import build_edgetam_video_predictor
    from samkit.video.efficienttam import build_efficienttam_video_predictor

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    edge = model_name == "edgetam"
    build = (
        build_edgetam_video_predictor
        if edge
        else build_efficienttam_video_predictor
        if model_name.startswith("efficienttam")
        else build_sam2_video_predictor
    )
    vp = build(model_name, dtype=dtype, fill_hole_area=0)
    if fuse and edge:
        vp.model.image_encoder.trunk.fuse_()
    cpu: dict[str, float] = defaultdict(float)
    state = vp.init_state(str(FRAMES))
    vp.add_new_points_or_box(state, 0, 1, points=[[430, 200]], labels=[1])
    frames_iter = vp.propagate_in_video(state, max_frame_num_to_track=frames)
    next(frames_iter)  # frame 0: the prompt's memory, not a tracked frame
    _hook(vp.model, cpu)
    wall0, cpu0, n = time.perf_counter(), time.process_time(), 0
    for _ in frames_iter:
        n += 1
    wall = (time.perf_counter() - wall0) / n
    total = (time.process_time() - cpu0) / n
    parts = {k: v / n for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])}
    parts["other"] = total - sum(parts.values())
    return {
        "model": model_name,
        "dtype": dtype_name,
        "threads": threads,
        "fused_trunk": fuse and edge,
        "frames": n,
        "wall_s_per_frame": wall,
        "frames_per_s": 1 / wall,
        "cpu_s_per_frame": total,
        "cpu_s_per_frame_by_part": parts,
        "gflop": gflops(vp.model),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["edgetam", "sam2.1_hiera_t"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--fuse", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import environment, write_json

    rows = []
    for dtype in args.dtypes:
        for model in args.models:
            rows.append(run(model, dtype, args.threads, args.frames, args.fuse))
            print(json.dumps(rows[-1]), flush=True)
            write_json("edgetam_parts", {"environment": environment(), "runs": rows})


if __name__ == "__main__":
    main()
