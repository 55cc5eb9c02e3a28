"""SAM 3 video (concept tracking) next to SAM 2.1 hiera_t: time per frame with 1, 3 and 10
objects in float32 and bfloat16, and peak RSS against the clip length, in one run.

SAM 3: `Sam3VideoPredictor` through its requests only (`handle_request` /
`handle_stream_request`). Exactly N objects: a text prompt on frame 0 with the detection and
new-object thresholds set between the N-th and the (N+1)-th query score of that frame (a first
prompt with threshold 0 reads them), mask NMS off (`det_nms_thresh` 1.0), association IoU 0 (every
later detection matches a track, so no new object starts), `hotstart_delay` 1 (frames yielded as
they are tracked) and no hotstart removal (`hotstart_unmatch_thresh` / `hotstart_dup_thresh`
10**6: with IoU 0 every detection matches every track, and the official duplicate rule, one
count per detection and frame, removed 9 of 10 objects on the first tracked frame). A tracked
frame then costs one detector pass plus N tracker steps, as in a real clip with N instances.
Models: `tiny` (the sam3_tiny fixture checkpoint: small heads, but the full 1008 px ViT input)
and `full` (the official architecture, random weights; `--full`). SAM 2.1 hiera_t: random
weights, N clicks on frame 0,
`propagate_in_video`. Seconds per frame: mean wall and CPU seconds (all threads of the process)
over the frames after the prompt frame; on a loaded machine compare CPU seconds and ratios.
Frames: synthetic 960x540 (a gradient, noise and a moving square).

Peak RSS: one subprocess per (model, length): open the clip (SAM 3: `start_session`, which holds
every frame as a float16 1008x1008 tensor; SAM 2: `init_state`, frames decoded lazily) and track
`--rss-track` frames from frame 0.

    python benchmarks/bench_sam3_video.py --quick              # tiny, 1/3/10 objects, fp32 + bf16
    python benchmarks/bench_sam3_video.py --rss 100 1000       # peak RSS per clip length
    python benchmarks/bench_sam3_video.py --long 400 --at 25 50 100 200 400   # RSS along a clip
    python benchmarks/bench_sam3_video.py --long 100 --unbounded              # ... as the official

Long clip (`--long N`): the `sam3_tiny` predictor (detector at 1008 px) tracks `--long-objects`
objects of a text prompt through N synthetic frames pulled one at a time from a generator (a live
source: `start_session` on an iterator, one forward `propagate_in_video`), printing at each `--at`
frame the process's current and peak RSS and what the session holds (tracked outputs, decoded
frames, cached output masks). `--unbounded` keeps what the official session keeps: every tracked
output (samkit's `tracking.prune_memory` off) and every decoded 1008 px float16 frame (the frame
cache unlimited); its output masks stay run-length encoded (the official keeps them as bool
arrays, 0.5 MB per object and frame at 960x540, not emulated).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_json  # noqa: E402
from samkit.build.sam3_video import tracker_to_dtype  # noqa: E402
from samkit.runtime.precision import autocast_decoder  # noqa: E402

CKPT = ROOT.parent / "shared" / "fixtures" / "sam3_tiny" / "sam3_tiny.pt"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def synthetic_frames(
    n: int, h: int = 540, w: int = 960, seed: int = 0, shift: int = 0
) -> list[np.ndarray]:
    """n frames: a gradient, noise and a red square moving 4 px per frame (from `shift`)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.float32)
    out = []
    for t in range(shift, shift + n):
        img = base + rng.normal(0, 6, base.shape)
        x = 300 + 4 * (t % 100)
        img[200:340, x : x + 160] = (220, 40, 40)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


class Clock:
    """Wall seconds and this process's CPU seconds (all threads) since the last lap: on a
    loaded machine the CPU seconds are the steadier measure."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def mean_after_first(times: list[tuple[float, float]]) -> dict[str, float]:
    """Mean wall / CPU seconds per frame over the frames after the prompt frame."""
    rest = np.asarray(times[1:], np.float64)
    return {"wall_s": float(rest[:, 0].mean()), "cpu_s": float(rest[:, 1].mean())}


# ---------------------------------------------------------------------------------- SAM 3
def sam3_parts(size: str) -> tuple:
    """(detector model, tracker) of the tiny fixture checkpoint or the full random one."""
    from samkit.build.sam3 import build_sam3_image_model
    from samkit.build.sam3_video import build_sam3_tracker, sam3_tracker_from_sizes
    from samkit.checkpoint import read_state_dict

    if size == "tiny":
        model = build_sam3_image_model(checkpoint_path=CKPT, enable_inst_interactivity=True)
        return model, build_sam3_tracker(read_state_dict(CKPT))
    from samkit.build.sam3_models import build_sam3

    model = build_sam3("sam3", None, random_weights=True)
    return model, sam3_tracker_from_sizes().eval()


def sam3_predictor(model, tracker, threshold: float):
    from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings

    settings = Sam3VideoSettings(
        score_threshold_detection=threshold,
        new_det_thresh=threshold,
        det_nms_thresh=1.0,
        assoc_iou_thresh=0.0,
        hotstart_delay=1,
        hotstart_unmatch_thresh=10**6,
        hotstart_dup_thresh=10**6,
    )
    return Sam3VideoPredictor(model, tracker, settings)


def sam3_thresholds(model, tracker, frames, counts) -> dict[int, float]:
    """Per N, a threshold that keeps exactly N objects on frame 0 (between query scores)."""
    p = sam3_predictor(model, tracker, 0.0)
    sid = p.handle_request({"type": "start_session", "resource_path": frames[:1]})["session_id"]
    out = p.handle_request(
        {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "object"}
    )
    probs = np.sort(np.asarray(out["outputs"]["out_probs"], np.float64))[::-1]
    p.handle_request({"type": "close_session", "session_id": sid})
    if len(probs) < max(counts) + 1:
        raise SystemExit(f"only {len(probs)} queries on frame 0; need {max(counts) + 1}")
    return {n: float((probs[n - 1] + probs[n]) / 2) for n in counts}


def time_sam3(model, tracker, frames, threshold: float) -> tuple[dict, int, list, list]:
    """(wall / CPU seconds per tracked frame, objects started on frame 0, per-frame (wall, CPU)
    seconds, objects in each yielded frame's outputs: suppressed ones are tracked but hidden)."""
    p = sam3_predictor(model, tracker, threshold)
    sid = p.handle_request({"type": "start_session", "resource_path": frames})["session_id"]
    with torch.inference_mode():
        out = p.handle_request(
            {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "object"}
        )
        n = len(out["outputs"]["out_obj_ids"])
        stream = p.handle_stream_request(
            {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
        )
        times, counts, clock = [], [], Clock()
        for r in stream:
            times.append(clock.lap())
            counts.append(len(r["outputs"]["out_obj_ids"]))
    p.handle_request({"type": "close_session", "session_id": sid})
    return mean_after_first(times), n, times, counts


# ---------------------------------------------------------------------------------- SAM 2
def sam2_predictor(dtype):
    from samkit.video.build import build_sam2_video_predictor

    return build_sam2_video_predictor("sam2.1_hiera_t", None, dtype=dtype)


def time_sam2(pred, frames, n_obj: int) -> tuple[dict, int, list]:
    state = pred.init_state(frames)
    rng = np.random.default_rng(1)
    for k in range(n_obj):
        x, y = rng.uniform(50, 910), rng.uniform(50, 490)
        pred.add_new_points_or_box(
            state, 0, k + 1, points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32)
        )
    times, clock = [], Clock()
    for _ in pred.propagate_in_video(state):
        times.append(clock.lap())
    return mean_after_first(times), n_obj, times


# ---------------------------------------------------------------------------------- RSS
def rss_mib() -> tuple[float, float]:
    """(current, peak since the last `reset_peak`) resident set size in MiB (Linux)."""
    status = Path("/proc/self/status").read_text()
    return tuple(int(status.split(k)[1].split()[0]) / 1024 for k in ("VmRSS:", "VmHWM:"))


def reset_peak() -> None:
    """Restart the peak RSS count (VmHWM) here, so loading the checkpoint is left out."""
    Path("/proc/self/clear_refs").write_text("5")


def long_run(n: int, at: list[int], dtype: str, objects: int, unbounded: bool) -> list[dict]:
    """Track `objects` objects through `n` frames of a live source; a row per frame in `at`."""
    from samkit.video.sam3 import tracking

    if unbounded:  # what the official session keeps: every tracked output
        tracking.prune_memory = lambda *a, **k: None
    model, tracker = sam3_parts("tiny")
    model, tracker = model.to(DTYPES[dtype]), tracker_to_dtype(tracker, DTYPES[dtype])
    frame0 = synthetic_frames(1)
    threshold = sam3_thresholds(model, tracker, frame0, [objects])[objects]
    p = sam3_predictor(model, tracker, threshold)
    src = (synthetic_frames(1, seed=t, shift=t)[0] for t in range(n))
    sid = p.handle_request({"type": "start_session", "resource_path": src})["session_id"]
    s = p._sessions[sid]
    if unbounded:  # and every decoded frame, as the official loader holds the whole clip
        s.frames.cache_frames = 10**9
    rows, clock = [], Clock()
    reset_peak()
    print(json.dumps({"frame": 0, "rss_mib": round(rss_mib()[0], 1)}), flush=True)
    with torch.inference_mode():
        out = p.handle_request(
            {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "object"}
        )
        got = len(out["outputs"]["out_obj_ids"])
        req = {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
        for k, r in enumerate(p.handle_stream_request(req), start=1):
            if k not in at:
                continue
            cur, peak = rss_mib()
            held = [len(st.memory.non_cond_frame_outputs) for st in s.states]
            row = {"frame": k, "rss_mib": round(cur, 1), "peak_rss_mib": round(peak, 1),
                   "cpu_s": round(clock.lap()[1], 1), "objects": got,
                   "objects_shown": len(r["outputs"]["out_obj_ids"]),
                   "tracked_outputs_held": held, "decoded_frames_held": len(s.frames._cache),
                   "features_held": len(s.features), "output_frames": len(s.cached_masks),
                   "output_mask_bytes": s.cached_masks.nbytes()}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def rss_child(model: str, n: int, track: int) -> None:
    """Runs in a subprocess: open an n-frame clip, track `track` frames, print peak RSS."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        for t, f in enumerate(synthetic_frames(n, 270, 480)):
            Image.fromarray(f).resize((960, 540)).save(Path(d) / f"{t:05d}.jpg", quality=90)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        if model == "sam3":
            m, trk = sam3_parts("tiny")
            p = sam3_predictor(m, trk, 0.2)
            built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            sid = p.handle_request({"type": "start_session", "resource_path": d})["session_id"]
            p.handle_request(
                {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "object"}
            )
            req = {"type": "propagate_in_video", "session_id": sid}
            req |= {"propagation_direction": "forward", "max_frame_num_to_track": track - 1}
            for _ in p.handle_stream_request(req):
                pass
        else:
            p = sam2_predictor(None)
            built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            state = p.init_state(d)
            pts = np.array([[380.0, 270.0]], np.float32)
            p.add_new_points_or_box(state, 0, 1, points=pts, labels=np.array([1], np.int32))
            for _ in p.propagate_in_video(state, max_frame_num_to_track=track - 1):
                pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"model": model, "frames": n, "tracked": track, "peak_rss_mib": peak / 1024,
                      "model_rss_mib": built / 1024, "python_rss_mib": base / 1024,
                      "seconds": time.perf_counter() - t0}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny SAM 3 only (the default size)")
    ap.add_argument("--full", action="store_true", help="also the full-size SAM 3 (slow)")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=DTYPES)
    ap.add_argument(
        "--frames", type=int, default=4, help="clip length (the prompt frame + tracked)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rss", type=int, nargs="*", default=[], metavar="FRAMES")
    ap.add_argument("--rss-track", type=int, default=3, help="frames tracked in the RSS runs")
    ap.add_argument("--rss-models", nargs="+", default=["sam3", "sam2"], choices=["sam3", "sam2"])
    ap.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--long", type=int, default=0, metavar="FRAMES", help="long live clip")
    ap.add_argument("--at", type=int, nargs="+", default=[25, 50, 100, 200, 400, 1000])
    ap.add_argument("--long-objects", type=int, default=3)
    ap.add_argument("--long-dtype", default="float32", choices=DTYPES)
    ap.add_argument("--unbounded", action="store_true", help="keep what the official keeps")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return
    torch.set_num_threads(args.threads)
    if args.long:
        at = sorted({a for a in args.at if a <= args.long} | {args.long})
        rows = long_run(args.long, at, args.long_dtype, args.long_objects, args.unbounded)
        doc = {"machine": f"{os.cpu_count()} CPUs (shared)", "threads": args.threads,
               "dtype": args.long_dtype, "unbounded": args.unbounded, "long": rows}  # fmt: skip
        write_json("sam3_video_long" + ("_unbounded" if args.unbounded else ""), doc, args.out)
        return
    doc: dict = {
        "machine": f"{os.cpu_count()} CPUs (shared with other jobs: loaded; compare ratios)",
        "threads": args.threads,
        "frames": args.frames,
        "speed": [],
        "rss": [],
    }
    frames = synthetic_frames(args.frames)
    if args.rss == [] or args.quick or args.full:
        sizes = ["tiny"] + (["full"] if args.full else [])
        for size in sizes:
            model, tracker = sam3_parts(size)
            thresholds = sam3_thresholds(model, tracker, frames, args.objects)
            for dname in args.dtypes:
                dt = DTYPES[dname]
                m, trk = model.to(dt), tracker_to_dtype(tracker, dt)  # as the predictor's dtype=
                s2 = sam2_predictor(dt if dname != "float32" else None)
                for n in args.objects:  # A B A B: SAM 3, SAM 2 with the same object count
                    row = {"dtype": dname, "objects": n}
                    try:
                        spf, got, times, counts = time_sam3(m, trk, frames, thresholds[n])
                        row[f"sam3_{size}_s_per_frame"], row[f"sam3_{size}_objects"] = spf, got
                        row[f"sam3_{size}_frame_s"] = times
                        row[f"sam3_{size}_objects_shown_per_frame"] = counts
                    except Exception as e:  # reported, not hidden
                        row[f"sam3_{size}_error"] = f"{type(e).__name__}: {e}"[:300]
                    spf2, _, _ = time_sam2(s2, frames, n)
                    row["sam2.1_hiera_t_s_per_frame"] = spf2
                    print(json.dumps(row), flush=True)
                    doc["speed"].append(row)
                autocast_decoder(tracker, None)
                model, tracker = model.float(), tracker.float()
    for n in args.rss:
        for model_name in args.rss_models:
            cmd = [sys.executable, __file__, "--rss-child", model_name, str(n), str(args.rss_track)]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                row = {"model": model_name, "frames": n, "error": res.stderr[-400:]}
            else:
                row = json.loads(res.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            doc["rss"].append(row)
    write_json("sam3_video", doc, args.out)


if __name__ == "__main__":
    main()
