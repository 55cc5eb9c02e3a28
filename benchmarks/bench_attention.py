"""Attention kernels against the matmul roofline, and SAM 2 video per frame, before / after (#21).

Prints the CPU model and ISA (AMX or not, AVX-512 BF16), `torch.mm` GFLOP/s in float32 and
bfloat16, then for each attention shape samkit runs the GFLOP/s of `F.scaled_dot_product_attention`
("sdpa", what samkit called before) and of `samkit.layers.attention_kernels.attention` ("ours"),
each as a share of the same dtype's matmul rate, timed alternately (A B A B) in this process.
FLOPs are 2 * Tq * Tk * (hs + hv) per head, the bias ignored. The memory cross-attention row
"late values" runs ours on the 64-wide memory (`RoPEAttention` weighs the values before
projecting them) and sdpa on the projected 256-wide values: its GFLOP/s are "equivalent"
(the sdpa problem's FLOPs over our time).

With `--video`, sam2.1_hiera_t video (random weights, synthetic 960x540 frames) is tracked with
1 and 3 objects; after the memory bank is full (frame > num_maskmem) the frames alternate
between everything on and a "before" path, so both are timed on the same state in the same
process. `--video-switch` says what the before path turns off: `attention` (default) the blocked
kernels (`blocked_attention(False)`: SDPA everywhere and the value projection first), `objects`
the batching of objects per frame, `keys` the memory keys kept between frames, `memory` both of
those, `fused` the MLPs' fused Linear + activation, `all` everything. With several object
counts, the cost of each object beyond the first is printed for both paths. (Alternating frames, the after path's key cache lacks the memories of the
two frames before instead of one: it computes two memories' key parts per frame, one more than
when every frame keeps the cache.)

With `--cpu-time` every time is the process's CPU time (`time.process_time`) on one thread:
on a machine shared with other jobs, wall time counts the time the process waits for a core,
CPU time does not (cache sharing still slows it), so the ratios stay meaningful there.

    python benchmarks/bench_attention.py                      # kernels, 2 threads
    python benchmarks/bench_attention.py --video --frames 4   # + video, 4 timed frames per path
    python benchmarks/bench_attention.py --cpu-time --video   # loaded machine: 1 thread, CPU time
    python benchmarks/bench_attention.py --cpu-time --video --no-kernels --video-switch memory \
        --objects 1 3 --frames 1                              # objects batched + keys kept
    python benchmarks/bench_attention.py --cpu-time --no-kernels --memory-step 3 --rounds 2
                                       # one frame's memory attention: batched / kept keys
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from benchmarks.sam3_pipeline import machine
from samkit.layers.attention_kernels import attention, blocked_attention
from samkit.layers.fused_linear import fused_linear
from samkit.layers.rel_pos import rel_pos_attention

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CLOCK = {"clock": time.perf_counter}

# name: (B, nh, Tq, Tk, hs, hv); "relpos" rows run rel_pos_attention on a (H, W) grid instead.
SHAPES: dict[str, tuple[int, ...]] = {
    "sam2 memory self-attn (1 head of 256)": (1, 1, 4096, 4096, 256, 256),
    "sam2 memory cross-attn, 4 memories + 16 pointers": (1, 1, 4096, 4 * 4096 + 64, 256, 256),
    "sam2 memory cross-attn, full bank (7 + 16 pointers)": (1, 1, 4096, 7 * 4096 + 64, 256, 256),
    "hiera_t global (4 heads of 96)": (1, 4, 4096, 4096, 96, 96),
    "hiera_t window 14x14 (25 windows, 4 heads)": (25, 4, 196, 196, 96, 96),
    "hiera_t window 8x8 (1024 windows, 1 head)": (1024, 1, 64, 64, 96, 96),
    "sam3 global 72x72 (16 heads of 64)": (1, 16, 5184, 5184, 64, 64),
    "sam3 window 24x24 (9 windows, 16 heads)": (9, 16, 576, 576, 64, 64),
    "vit_b global 64x64 + rel-pos (relpos)": (1, 12, 64, 64, 64),
    "vit_b window 14x14 + rel-pos (relpos)": (25, 12, 14, 14, 64),
}


def alternate(fns: list[Callable[[], Any]], rounds: int) -> list[float]:
    """Best wall time of each fn, timed in turn (A B A B ...) after one warm-up call each."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = CLOCK["clock"]()
            fn()
            best[i] = min(best[i], CLOCK["clock"]() - t0)
    return best


def mm_gflops(dtype: torch.dtype, rounds: int) -> float:
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    return 2 * 2048**3 / alternate([lambda: torch.mm(a, b)], rounds)[0] / 1e9


def _reference(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with blocked_attention(False):
            return fn()

    return run


def kernel_row(name: str, shape: tuple[int, ...], dtype: torch.dtype, rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    if "(relpos)" in name:
        b, nh, h, w, hs = shape
        t = h * w
        q, k, v = (torch.randn(b, nh, t, hs, generator=g).to(dtype) for _ in range(3))
        rph = torch.randn(2 * h - 1, hs, generator=g).to(dtype)
        rpw = torch.randn(2 * w - 1, hs, generator=g).to(dtype)

        def ours() -> Any:
            return rel_pos_attention(q, k, v, rph, rpw, (h, w), (h, w))

        ref, flops = _reference(ours), 4 * b * nh * t * t * hs
        late = None
    else:
        b, nh, tq, tk, hs, hv = shape
        q = torch.randn(b, nh, tq, hs, generator=g).to(dtype)
        k = (torch.randn(b, nh, tk, hs, generator=g) + 0.3).to(dtype)
        v = torch.randn(b, nh, tk, hv, generator=g).to(dtype)
        flops = 2 * b * nh * tq * tk * (hs + hv)

        def ours() -> Any:
            return attention(q, k, v)

        def ref() -> Any:
            return F.scaled_dot_product_attention(q, k, v)

        late = None
        if "cross-attn" in name:  # ours on the 64-wide memory, value projection after
            v64 = torch.randn(b, nh, tk, 64, generator=g).to(dtype)
            w = torch.randn(hv, 64, generator=g).to(dtype) / 8

            def late() -> Any:
                return attention(q, k, v64) @ w.T

    fns = [ref, ours] + ([late] if late else [])
    times = alternate(fns, rounds)
    row = {
        "shape": name,
        "dtype": str(dtype).removeprefix("torch."),
        "gflop": flops / 1e9,
        "sdpa_gflops": flops / times[0] / 1e9,
        "ours_gflops": flops / times[1] / 1e9,
        "speedup": times[0] / times[1],
    }
    if late:
        row["late_values_equiv_gflops"] = flops / times[2] / 1e9
        row["late_values_speedup"] = times[0] / times[2]
    return row


def synthetic_frames(n: int, h: int = 540, w: int = 960) -> list[np.ndarray]:
    """Moving red box on a gradient with noise (as bench_video's frames)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = np.stack([(xx + 5 * t) % 256, yy % 256, (xx + yy) % 256], -1).astype(np.float32)
        img[200:340, 300 + 4 * t : 460 + 4 * t] = (220, 40, 40)
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


# --video-switch: what the "before" frames turn off (the "after" frames run everything on)
SWITCHES = ("attention", "objects", "keys", "memory", "fused", "all")


@contextlib.contextmanager
def before_path(pred: Any, switch: str, before: bool) -> Iterator[None]:
    """Within the block, the predictor runs without the optimisation named by `switch` when
    `before`: "attention" the blocked attention kernels and late values (SDPA everywhere),
    "objects" the batching of objects per frame (one by one, as the official), "keys" the
    memory keys kept between frames (recomputed every frame), "memory" objects and keys,
    "fused" the oneDNN Linear + activation of the MLPs (`fused_linear(False)`), "all" every one
    of them."""
    tracker = pred.tracker
    old = tracker.batch_objects, tracker.cache_memory_keys
    tracker.batch_objects = not (before and switch in ("objects", "memory", "all"))
    tracker.cache_memory_keys = not (before and switch in ("keys", "memory", "all"))
    try:
        with (
            blocked_attention(not (before and switch in ("attention", "all"))),
            fused_linear(not (before and switch in ("fused", "all"))),
        ):
            yield
    finally:
        tracker.batch_objects, tracker.cache_memory_keys = old


def video_row(dtype: str, n_obj: int, timed: int, switch: str = "attention") -> dict:
    """Seconds per tracked frame, before (`switch` off) vs after alternating on one state."""
    from samkit import build_sam2_video_predictor

    torch.manual_seed(0)
    pred = build_sam2_video_predictor("sam2.1_hiera_t", dtype=DTYPES[dtype], fill_hole_area=0)
    warm = pred.model.num_maskmem
    state = pred.init_state(synthetic_frames(warm + 1 + 2 * timed))
    for k in range(n_obj):
        pred.add_new_points_or_box(state, 0, k + 1, points=[[380 + 150 * k, 270]], labels=[1])
    frames = pred.propagate_in_video(state)
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(warm + 1 + 2 * timed):
        fast = i % 2 == 0
        t0 = CLOCK["clock"]()
        with before_path(pred, switch, not fast):
            next(frames)
        if i > warm:
            times[fast].append(CLOCK["clock"]() - t0)
    after, before = float(np.median(times[True])), float(np.median(times[False]))
    row = {"dtype": dtype, "objects": n_obj, "switch": switch, "before_s": before}
    row.update(after_s=after, after_over_before=after / before)
    print(row, flush=True)
    return row


def extra_object_costs(video: list[dict]) -> list[dict]:
    """Per dtype and switch, the cost of each object beyond the first, before and after:
    (t(n) - t(1)) / (n - 1) for the largest n run."""
    rows = []
    for dtype in dict.fromkeys(r["dtype"] for r in video):
        for switch in dict.fromkeys(r["switch"] for r in video):
            runs = {r["objects"]: r for r in video if r["dtype"] == dtype and r["switch"] == switch}
            n = max(runs)
            if n < 2 or 1 not in runs:
                continue
            cost = {
                k: (runs[n][f"{k}_s"] - runs[1][f"{k}_s"]) / (n - 1) for k in ("before", "after")
            }
            row = {"dtype": dtype, "switch": switch, "objects": n, **cost}
            print(f"each object beyond the first ({dtype}, {switch}): {row}", flush=True)
            rows.append(row)
    return rows


def memory_step(dtype: str, n_obj: int, rounds: int) -> dict:
    """One frame's memory attention for `n_obj` objects at a full bank in steady state (each
    step one new memory per object enters, the others stay): one by one or batched, keys
    recomputed or kept (`MemoryKeyCache`); best time per path over `rounds` after a warm-up."""
    from samkit import build_sam2_video_predictor
    from samkit.modeling.memory_keys import MemoryKeyCache

    torch.manual_seed(0)
    m = build_sam2_video_predictor("sam2.1_hiera_t", dtype=DTYPES[dtype], fill_hole_area=0).model
    g = torch.Generator().manual_seed(0)
    pix, pos = torch.randn(2, 1, 256, 64, 64, generator=g)
    mpos = torch.randn(1, 64, 64, 64, generator=g)

    def new() -> torch.Tensor:
        return torch.randn(1, 64, 64, 64, generator=g).to(torch.bfloat16)

    objs = [[(0, new())] + [(t, new()) for t in range(1, 7)] for _ in range(n_obj)]
    ptrs = [[(k, torch.randn(1, 256, generator=g)) for k in range(1, 17)] for _ in range(n_obj)]
    cache = MemoryKeyCache()

    def step(batched: bool, keep: bool) -> None:
        for o in objs:  # the newest memory enters slot 1, the oldest leaves
            o[1:] = [(1, new())] + [(t + 1, x) for t, x in o[1:-1]]
        kw = {"key_cache": cache} if keep else {}
        if batched:
            mems = []
            for i in range(7):
                parts = [o[i][1] for o in objs]
                cat = torch.cat(parts)
                if keep:
                    cache.register_batch(cat, parts)
                mems.append((objs[0][i][0], cat, mpos.expand(n_obj, -1, -1, -1)))
            pt = [(ptrs[0][k][0], torch.cat([p[k][1] for p in ptrs])) for k in range(16)]
            b = (n_obj, -1, -1, -1)
            m.condition_on_memory(pix.expand(b), pos.expand(b), mems, pt, 16, **kw)
        else:
            for o, p in zip(objs, ptrs, strict=True):
                m.condition_on_memory(pix, pos, [(t, x, mpos) for t, x in o], p, 16, **kw)
        if keep:
            cache.end_frame()

    paths = {
        "one by one": (False, False),
        "one by one + keys": (False, True),
        "batched": (True, False),
        "batched + keys": (True, True),
    }
    with torch.inference_mode():
        step(False, True)  # fill the cache
        times = alternate([lambda b=b, k=k: step(b, k) for b, k in paths.values()], rounds)
    row = {"dtype": dtype, "objects": n_obj, **dict(zip(paths, times, strict=True))}
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="A B rounds per kernel (best of)")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--only", nargs="*", default=None, help="substrings of shape names to run")
    ap.add_argument("--video", action="store_true", help="also time hiera_t video per frame")
    ap.add_argument("--frames", type=int, default=3, help="timed frames per path (video)")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    ap.add_argument(
        "--video-switch",
        default="attention",
        choices=SWITCHES,
        help="what the video's before frames turn off",
    )
    ap.add_argument("--no-kernels", action="store_true", help="skip the kernel table")
    ap.add_argument(
        "--memory-step",
        type=int,
        default=0,
        help="time one frame's memory attention for this many objects (batched / keys)",
    )
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, process CPU time")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.cpu_time:
        args.threads = 1
        CLOCK["clock"] = time.process_time
    torch.set_num_threads(args.threads)
    info = machine()
    print(f"CPU {info['cpu']}, ISA {info['isa']}, AMX {'amx_bf16' in info['isa']}", flush=True)
    rows, mm = [], {}
    with torch.inference_mode():
        for dname in [] if args.no_kernels else args.dtypes:
            dtype = DTYPES[dname]
            before = mm_gflops(dtype, args.rounds)
            for name, shape in SHAPES.items():
                if args.only and not any(s in name for s in args.only):
                    continue
                row = kernel_row(name, shape, dtype, args.rounds)
                rows.append(row)
            mm[dname] = (before + mm_gflops(dtype, args.rounds)) / 2
            for row in rows:
                if row["dtype"] == dname:
                    row["sdpa_share"] = row["sdpa_gflops"] / mm[dname]
                    row["ours_share"] = row["ours_gflops"] / mm[dname]
                    if "late_values_equiv_gflops" in row:
                        row["late_values_share"] = row["late_values_equiv_gflops"] / mm[dname]
            print(f"torch.mm 2048^3 {dname}: {mm[dname]:.0f} GFLOP/s", flush=True)
            for row in rows:
                if row["dtype"] == dname:
                    extra = ""
                    if "late_values_share" in row:
                        extra = (
                            f" | late values {row['late_values_equiv_gflops']:.0f} "
                            f"({row['late_values_share']:.0%}) {row['late_values_speedup']:.2f}x"
                        )
                    print(
                        f"  {row['shape']:52s} sdpa {row['sdpa_gflops']:5.0f} "
                        f"({row['sdpa_share']:4.0%})  ours {row['ours_gflops']:5.0f} "
                        f"({row['ours_share']:4.0%})  {row['speedup']:.2f}x{extra}",
                        flush=True,
                    )
    video = []
    if args.video:
        for dname in args.dtypes:
            for n_obj in args.objects:
                video.append(video_row(dname, n_obj, args.frames, args.video_switch))
    steps = [memory_step(d, args.memory_step, args.rounds) for d in args.dtypes if args.memory_step]
    info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    write_json(
        "bench_attention",
        {
            "machine": info,
            "clock": "process CPU time" if args.cpu_time else "wall",
            "matmul_gflops": mm,
            "kernels": rows,
            "video": video,
            "extra_object": extra_object_costs(video),
            "memory_step": steps,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
