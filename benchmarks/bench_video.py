"""SAM 2 video tracking speed, time shares, memory-attention roofline, peak RSS, bf16 drift.

Speed: `propagate_in_video` of randomly initialised sam2.1_hiera_t / hiera_s models (built from
the variant configs) on synthetic 960x540 frames, 1 and 3 objects clicked on frame 0, float32
and bfloat16. Seconds per frame are timed on the frames after the memory bank is full
(frame >= num_maskmem), with the share of time in the image encoder, memory attention, mask
decoder (with prompt encoder) and memory encoder. Memory attention's achieved GFLOP/s (FLOPs
counted with torch's FlopCounterMode on one full-bank call) is compared with the matmul
GFLOP/s of the same dtype measured in the same run.

    python -m benchmarks.bench_video --frames 9                 # speed table
    python -m benchmarks.bench_video --rss 1000 --variants sam2.1_hiera_t --dtypes bfloat16
    python -m benchmarks.bench_video --drift                    # bf16 vs fp32, every fixture session
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import count_flops, matmul_gflops, write_json

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PARTS = ("image_encoder", "memory_attention", "decoder", "memory_encoder")


def synthetic_frames(n: int, h: int = 540, w: int = 960) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = np.stack([(xx + 5 * t) % 256, yy % 256, (xx + yy) % 256], -1).astype(np.float32)
        img[200:340, 300 + 4 * t : 460 + 4 * t] = (220, 40, 40)
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


class Timers:
    """Wall time per model part, by wrapping the parts' forward methods."""

    def __init__(self, model) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.last_mem_attn_args = None
        parts = {
            "image_encoder": model.image_encoder,
            "memory_attention": model.memory_attention,
            "decoder": model.sam_mask_decoder,
            "prompt": model.sam_prompt_encoder,
            "memory_encoder": model.memory_encoder,
        }
        for name, mod in parts.items():
            self._wrap(name, mod)

    def _wrap(self, name: str, mod) -> None:
        fwd = mod.forward

        def timed(*a, **k):
            if name == "memory_attention":
                self.last_mem_attn_args = (a, k)
            t0 = time.perf_counter()
            out = fwd(*a, **k)
            self.t["decoder" if name == "prompt" else name] += time.perf_counter() - t0
            return out

        mod.forward = timed

    def reset(self) -> None:
        self.t.clear()


def sdpa_counted(mod, a, k) -> bool:
    """Whether torch's FlopCounterMode counts the attention kernels this build dispatches to."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        mod.layers[0].self_attn(a[0][:, :64], a[0][:, :64], a[0][:, :64])
    ops = {str(op) for per in counter.get_flop_counts().values() for op in per}
    return any("scaled_dot_product" in op for op in ops)


def run_speed(variant: str, dtype: str, n_obj: int, frames: list[np.ndarray]) -> dict:
    from samkit import build_sam2_video_predictor

    torch.manual_seed(0)
    pred = build_sam2_video_predictor(variant, dtype=DTYPES[dtype], fill_hole_area=0)
    timers = Timers(pred.model)
    state = pred.init_state(frames)
    for k in range(n_obj):
        pred.add_new_points_or_box(state, 0, k + 1, points=[[380 + 150 * k, 270]], labels=[1])
    warm = pred.model.num_maskmem
    times = []
    t_prev = time.perf_counter()
    for f, _, _ in pred.propagate_in_video(state):
        now = time.perf_counter()
        if f == warm:
            timers.reset()
        if f > warm:
            times.append(now - t_prev)
        t_prev = now
        if f == warm:
            t_prev = time.perf_counter()
    per_frame = float(np.mean(times))
    shares = {p: timers.t.get(p, 0.0) / sum(times) for p in PARTS}
    a, k = timers.last_mem_attn_args
    mod = pred.model.memory_attention
    with torch.inference_mode():
        flops = count_flops(lambda: mod(*a, **k))
    if not sdpa_counted(mod, a, k):  # CPU SDPA kernels have no FLOP formula: add QK^T and AV
        b, n, _ = a[0].shape
        m = a[1].shape[1]
        d = mod.layers[0].self_attn.internal_dim
        flops += len(mod.layers) * 4 * b * n * d * (n + m)
    mem_attn_s = timers.t["memory_attention"] / len(times) / n_obj
    return {
        "variant": variant,
        "dtype": dtype,
        "objects": n_obj,
        "timed_frames": len(times),
        "s_per_frame": per_frame,
        "frames_per_s": 1 / per_frame,
        "shares": shares,
        "memory_attention_gflop_per_call": flops / 1e9,
        "memory_attention_gflops_per_s": flops / mem_attn_s / 1e9,
    }


def run_rss(variant: str, n: int, dtype: str = "float32") -> dict:
    """Peak RSS and state bytes after 10, 100, 200, ... n live frames of one run.

    `ru_maxrss` read after frame k is the peak over the first k frames, so one 1,000-frame run
    gives the 100-frame peak too.
    """
    from samkit import build_sam2_video_predictor

    frames = synthetic_frames(8)
    pred = build_sam2_video_predictor(variant, dtype=DTYPES[dtype], fill_hole_area=0)
    state = pred.init_state(frames[i % 8] for i in range(n))  # a live iterator source
    pred.add_new_points_or_box(state, 0, 1, points=[[380, 270]], labels=[1])
    marks = sorted({k for k in (10, 50, *range(100, n + 1, 100), n) if k <= n})
    trace = []
    t0 = time.perf_counter()
    for t in range(n):
        pred.track_frame(state, t)
        if t + 1 in marks:
            trace.append(
                {
                    "frames": t + 1,
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "state_mib": state.nbytes() / 2**20,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
            print(trace[-1], flush=True)
    return {
        "variant": variant,
        "dtype": dtype,
        "frames": n,
        "peak_rss_mib": trace[-1]["peak_rss_mib"],
        "state_mib": trace[-1]["state_mib"],
        "s_per_frame": (time.perf_counter() - t0) / n,
        "trace": trace,
    }


def _frame_scores(pred, state, frame_idx: int) -> torch.Tensor:
    """The N object-score logits (one per object, in `obj_ids` order) stored for a frame."""
    return torch.tensor(list(pred.get_object_scores(state, frame_idx).values()))


def replay_session(pred, session: dict, frames_dir: str) -> dict:
    """Replay one fixture session: {(call key, frame): (NxHxW video-res logits, N scores)}."""
    res = {}
    state = pred.init_state(frames_dir)
    for call in session["calls"]:
        op = call["op"]
        if op == "add_new_points_or_box":
            keys = ("points", "labels", "box", "clear_old_points")
            kw = {k: call[k] for k in keys if k in call}
            pred.add_new_points_or_box(state, call["frame_idx"], call["obj_id"], **kw)
        elif op == "add_new_mask":
            x0, y0, x1, y1 = call["rect"]
            m = np.zeros((state["video_height"], state["video_width"]), bool)
            m[y0:y1, x0:x1] = True
            pred.add_new_mask(state, call["frame_idx"], call["obj_id"], m)
        elif op == "propagate_in_video":
            keys = ("start_frame_idx", "max_frame_num_to_track", "reverse")
            kw = {k: call[k] for k in keys if k in call}
            for f, _, masks in pred.propagate_in_video(state, **kw):
                res[(call["key"], f)] = (masks[:, 0].float().clone(), _frame_scores(pred, state, f))
        elif op == "remove_object":
            pred.remove_object(state, call["obj_id"])
        elif op == "reset_state":
            pred.reset_state(state)
        else:
            raise ValueError(f"unknown op {op!r} in session {session['name']!r}")
    return res


def drift_summary(ref: dict, got: dict) -> dict:
    """bf16 (`got`) against fp32 (`ref`) over the same replayed propagations.

    Per frame and object: the presence decision is the object score's sign (> 0: present);
    on frames where both find the object, the largest |logit difference|, the logit scale
    max |fp32 logit|, and the IoU of the two masks on the pixels where |fp32 logit| > 0.05.
    """
    err, scale, ious = [], [], []
    n_obj = flips = absent = 0
    for key, (r_masks, r_scores) in ref.items():
        g_masks, g_scores = got[key]
        for r, g, rs, gs in zip(r_masks, g_masks, r_scores, g_scores, strict=True):
            n_obj += 1
            present_r, present_g = bool(rs > 0), bool(gs > 0)
            flips += present_r != present_g
            if not (present_r and present_g):
                absent += present_r == present_g
                continue
            err.append(float((g - r).abs().max()))
            scale.append(float(r.abs().max()))
            sure = r.abs() > 0.05
            a, b = (r > 0) & sure, (g > 0) & sure
            union = int((a | b).sum())
            ious.append(1.0 if union == 0 else int((a & b).sum()) / union)
    return {
        "frames": len(ref),
        "frames_objects": n_obj,
        "presence_flips": flips,
        "both_absent": absent,
        "max_abs_logit_error": max(err) if err else None,
        "median_abs_logit_error": float(np.median(err)) if err else None,
        "median_logit_scale": float(np.median(scale)) if scale else None,
        "mask_iou_sure_pixels_min": min(ious) if ious else None,
        "mask_iou_sure_pixels_mean": float(np.mean(ious)) if ious else None,
    }


def run_drift(sessions: list[str] | None = None) -> dict:
    """bf16 vs fp32 tracking of the fixture model over the fixture sessions' propagations
    (every session of the fixture manifest unless `sessions` names some), per session and
    over all of them."""
    from tests.video.conftest import CKPT, CONFIG, VIDEO, manifest

    from samkit import build_sam2_video_predictor

    available = [s["name"] for s in manifest()["sessions"]]
    unknown = sorted(set(sessions or ()) - set(available))
    if unknown:
        raise ValueError(f"unknown fixture sessions {unknown}; expected some of {available}")
    chosen = [s for s in manifest()["sessions"] if not sessions or s["name"] in sessions]
    load_before = os.getloadavg()
    outs: dict[str, dict] = {}
    # the sessions were recorded with the official predictor settings (corrections not kept)
    settings = manifest()["predictor_settings"]
    for name, dt in DTYPES.items():
        pred = build_sam2_video_predictor(
            CONFIG,
            CKPT,
            dtype=dt,
            fill_hole_area=0,
            add_all_frames_to_correct_as_cond=settings["add_all_frames_to_correct_as_cond"],
        )
        for session in chosen:
            res = replay_session(pred, session, str(VIDEO / "frames"))
            outs.setdefault(name, {}).update({(session["name"], *k): v for k, v in res.items()})
    ref, got = outs["float32"], outs["bfloat16"]
    per_session = {}
    for session in chosen:
        keys = [k for k in ref if k[0] == session["name"]]
        per_session[session["name"]] = drift_summary(
            {k: ref[k] for k in keys}, {k: got[k] for k in keys}
        )
    return {
        "sessions": per_session,
        "overall": drift_summary(ref, got),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def print_drift(r: dict) -> None:
    """One line per session and one for all of them."""
    for name, d in [*r["sessions"].items(), ("overall", r["overall"])]:
        if d["max_abs_logit_error"] is None:
            print(f"{name}: {d['frames_objects']} frame-objects, none present in both", flush=True)
            continue
        print(
            f"{name}: {d['frames_objects']} frame-objects ({d['frames']} frames), "
            f"presence flips {d['presence_flips']}, logit |diff| max "
            f"{d['max_abs_logit_error']:.4f} median {d['median_abs_logit_error']:.4f} vs "
            f"median scale {d['median_logit_scale']:.3f}, sure-pixel IoU min "
            f"{d['mask_iou_sure_pixels_min']:.4f} mean {d['mask_iou_sure_pixels_mean']:.4f}",
            flush=True,
        )
    print(f"load average before {r['loadavg_before']}, after {r['loadavg_after']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_s"])
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--objects", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--frames", type=int, default=9, help="frames tracked per speed run")
    ap.add_argument("--rss", type=int, default=0, help="peak-RSS run over this many frames")
    ap.add_argument("--drift", action="store_true")
    ap.add_argument("--sessions", nargs="+", default=None, help="fixture sessions for --drift")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.rss:
        r = run_rss(args.variants[0], args.rss, args.dtypes[-1])
        print(r)
        write_json(f"video_rss_{args.rss}", r, args.out)
        return
    if args.drift:
        r = run_drift(args.sessions)
        write_json("video_drift", r, args.out)
        print_drift(r)
        return
    frames = synthetic_frames(args.frames)
    peaks = {d: matmul_gflops(DTYPES[d]) for d in args.dtypes}
    rows = []
    for v in args.variants:
        for n_obj in args.objects:
            for d in args.dtypes:
                r = run_speed(v, d, n_obj, frames)
                r["matmul_gflops_per_s"] = peaks[d]
                rows.append(r)
                sh = " ".join(f"{p} {r['shares'][p]:.0%}" for p in PARTS)
                print(
                    f"{v} {d} {n_obj} obj: {r['s_per_frame']:.2f} s/frame "
                    f"({r['frames_per_s']:.2f} fps); {sh}; memory attention "
                    f"{r['memory_attention_gflops_per_s']:.1f} GFLOP/s ({r['memory_attention_gflop_per_call']:.0f} GFLOP/call) of {peaks[d]:.0f} matmul",
                    flush=True,
                )
    write_json("video", {"rows": rows, "matmul_gflops_per_s": peaks}, args.out)


if __name__ == "__main__":
    main()
