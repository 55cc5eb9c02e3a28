"""The web app under load: click latency, and the server's memory over rounds of video sessions.

Click latency (the default), vit_b architecture: the image is encoded once (as the app does); then
each "click" is one random foreground point answered with 3 candidate masks at the original
resolution, as `POST /api/images/{id}/predict` does. Measured per click:

* `engine`: `Engine.submit_predict` on the app's decoding thread = prompt encoder + mask decoder + upsampling to the image size +
  threshold + COCO RLE, bbox and area of the 3 masks (what the page asks for);
* `engine_png`: the same plus a 1-bit PNG of each of the 3 masks (`png: true`);
* `http`: the full request through the app (FastAPI TestClient: routing, validation, JSON).

Random weights (`build_sam("vit_b")`): the timing does not depend on the weights.

    python benchmarks/bench_server.py [--clicks 100] [--threads 2] [--out benchmarks/results/bench_server.json]

Memory over video sessions (`--video-rounds N`): a real `samkit serve` (SAM 2, random weights by
default) in a subprocess; each round opens `--sessions` videos at once from as many clients, clicks
an object on frame 0, tracks every frame, waits, and closes every session; the server's RSS
(VmRSS of its process) is printed after each round. Flat RSS after the first rounds means freed
memory is reused (issue 24: it grew by ~0.9 GB a round when every job ran on a fresh thread).
`--src` runs the server from another source tree (e.g. an older checkout) for an A/B comparison.

    python benchmarks/bench_server.py --video-rounds 10 [--sessions 4] [--frames 4] \
        [--model sam2.1_hiera_tiny] [--src DIR] [--out benchmarks/results/bench_server_rss.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB (10**6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024 / 1e6
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


def _session(url: str, clip: bytes, k: int) -> int:
    """One user: open the clip, click the red square on frame 0, track, close; frames tracked."""
    import httpx

    with httpx.Client(base_url=url, timeout=600) as c:
        r = c.post(f"/api/videos?name=clip{k}.mp4", content=clip)
        r.raise_for_status()
        vid = r.json()["video_id"]
        body = {"frame": 0, "obj_id": 1, "points": [[30.0, 60.0]], "labels": [1]}
        c.post(f"/api/videos/{vid}/prompts", json=body).raise_for_status()
        c.post(f"/api/videos/{vid}/track", json={}).raise_for_status()
        while (st := c.get(f"/api/videos/{vid}/track").json())["status"] == "running":
            time.sleep(0.2)
        c.delete(f"/api/videos/{vid}").raise_for_status()
        if st["status"] != "done":
            raise RuntimeError(f"tracking ended with {st}")
        return int(st["done"])


def run_video_rss(args: argparse.Namespace) -> None:
    import httpx

    sys.path.insert(0, str(ROOT))
    from tests.video.clips import encode_video, moving_shapes

    with tempfile.TemporaryDirectory() as tmp:
        clip = encode_video(
            Path(tmp) / "clip.mp4", moving_shapes(args.frames, 192, 256)
        ).read_bytes()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = ["--model", args.model]
    model += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights"]
    cmd = [sys.executable, "-m", "samkit", "serve", "--port", str(port), *model]
    env = {**os.environ, "PYTHONPATH": str(Path(args.src).resolve())}
    server = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rounds = []
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("samkit serve did not start")
            try:
                if httpx.get(f"{url}/api/videos", timeout=2).json()["available"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        rss0, _ = _rss_mb(server.pid)
        print(
            f"server pid {server.pid} ({' '.join(cmd[3:])}), RSS at start {rss0:.0f} MB", flush=True
        )
        for i in range(args.video_rounds):
            t = time.perf_counter()
            with ThreadPoolExecutor(args.sessions) as pool:
                frames = sum(pool.map(lambda k: _session(url, clip, k), range(args.sessions)))
            time.sleep(1.0)  # the session folders are removed after the answer
            rss, hwm = _rss_mb(server.pid)
            open_now = (httpx.get(f"{url}/api/videos").json().get("sessions") or {}).get("open")
            rounds.append({"round": i + 1, "rss_mb": rss, "peak_rss_mb": hwm, "frames": frames,
                           "seconds": round(time.perf_counter() - t, 1), "open_after": open_now})  # fmt: skip
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    rss = [r["rss_mb"] for r in rounds]
    results = {
        "benchmark": "server RSS over rounds of video sessions",
        "command": " ".join(cmd[3:]),
        "src": str(Path(args.src).resolve()),
        "sessions_per_round": args.sessions,
        "frames_per_video": args.frames,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "rss_at_start_mb": rss0,
        "rounds": rounds,
        "growth_after_round_2_mb": round(rss[-1] - rss[min(1, len(rss) - 1)], 1),
    }
    out = Path(args.out or ROOT / "benchmarks" / "results" / "bench_server_rss.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("RSS per round (MB):", " ".join(f"{v:.0f}" for v in rss))
    print("growth from round 2 to the last:", results["growth_after_round_2_mb"], "MB")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clicks", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", nargs="+", default=["truck.jpg", "dog.jpg"])
    ap.add_argument("--out", default=None, help="JSON output (default under benchmarks/results)")
    ap.add_argument("--video-rounds", type=int, default=0, help="measure RSS over N rounds")
    ap.add_argument("--sessions", type=int, default=4, help="video sessions per round")
    ap.add_argument("--frames", type=int, default=4, help="frames of each video")
    ap.add_argument("--model", default="sam2.1_hiera_tiny", help="the server's SAM 2 model")
    ap.add_argument("--checkpoint", default=None, help="its checkpoint (default random weights)")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the samkit sources to serve")
    args = ap.parse_args()
    if args.video_rounds:
        run_video_rss(args)
        return
    args.out = args.out or str(ROOT / "benchmarks" / "results" / "bench_server.json")
    torch.set_num_threads(args.threads)

    from fastapi.testclient import TestClient

    from samkit import build_sam
    from samkit.runtime.accel import tune_malloc
    from samkit.server.app import create_app
    from samkit.server.threads import run_in_fresh_thread

    # As `samkit serve` does: tuned malloc, no torch op on the main thread
    # (see samkit.runtime.accel.tune_malloc and samkit.server.threads).
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
