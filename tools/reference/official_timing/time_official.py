"""samkit vs the official `sam2` 1.1.0 SAM2VideoPredictor per tracked frame, in one process (#21).

Runs in a venv that holds the official package (see README.md; never samkit's environment).
Builds the official sam2.1_hiera_t video predictor with seeded random weights, saves them in the
official checkpoint layout (`{"model": state_dict}`), builds samkit's predictor from that file,
writes synthetic 960x540 JPEG frames, clicks the same objects on frame 0 in both, and then
tracks frame by frame, official and samkit alternating (A B A B), after the memory bank is full
(frame > num_maskmem). Prints seconds per tracked frame of each, their ratio, and how far
samkit's masks are from the official ones on the timed frames (same weights, same frames: the
two must compute the same thing for the timing to mean anything).

    PYTHONPATH=<sam2 sources> <venv>/bin/python tools/reference/official_timing/time_official.py \
        --objects 1 3 --frames 2 --cpu-time --samkit-dtypes float32 bfloat16

`--parts` also prints where each frame's time goes in both (forward hooks on the submodules
both models name alike: image_encoder, memory_attention, memory_encoder, sam_mask_decoder, ...;
the rest of the frame is "other").

With `--cpu-time` every time is process CPU time on one thread (a loaded machine: wall time
counts waiting for a core). `--official-autocast` also times the official predictor under
`torch.autocast("cpu", torch.bfloat16)`, the official way to run it in bfloat16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def synthetic_frames(folder: Path, n: int, h: int = 540, w: int = 960) -> None:
    """n JPEG frames `<index>.jpg` (both loaders' folder format): a moving box on a gradient."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n):
        img = np.stack([(xx + 5 * t) % 256, yy % 256, (xx + yy) % 256], -1).astype(np.float32)
        img[200:340, 300 + 4 * t : 460 + 4 * t] = (220, 40, 40)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)


def build_pair(workdir: Path, samkit_dtype: torch.dtype):
    """(official predictor, samkit predictor) with the same random weights."""
    from sam2.build_sam import build_sam2_video_predictor as official_build

    from samkit import build_sam2_video_predictor

    ckpt = workdir / "sam2.1_hiera_t_random.pt"
    torch.manual_seed(0)
    official = official_build(CONFIG, None, device="cpu")
    # apply_postprocessing sets fill_hole_area=8 after any override; the CUDA kernel it needs
    # is not there on a CPU (the official skips it with a warning), so 0 is what it computes
    official.fill_hole_area = 0
    if not ckpt.exists():
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": official.state_dict()}, tmp)
        os.replace(tmp, ckpt)
    else:
        sd = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
        official.load_state_dict(sd)
    ours = build_sam2_video_predictor(
        "sam2.1_hiera_t",
        ckpt,
        dtype=samkit_dtype,
        fill_hole_area=0,
        add_all_frames_to_correct_as_cond=False,
    )
    return official, ours


PARTS = (
    "image_encoder",
    "memory_attention",
    "memory_encoder",
    "sam_prompt_encoder",
    "sam_mask_decoder",
    "obj_ptr_proj",
    "mask_downsample",
)


class PartClock:
    """Time spent inside each named submodule (outermost calls only), on the frames it is on."""

    def __init__(self, model: torch.nn.Module, clock) -> None:
        self.clock, self.on, self.totals = clock, False, dict.fromkeys(PARTS, 0.0)
        self._start: dict[str, float] = {}
        for name in PARTS:
            mod = getattr(model, name, None)
            if mod is not None:
                mod.register_forward_pre_hook(self._pre(name))
                mod.register_forward_hook(self._post(name))

    def _pre(self, name: str):
        def hook(*_):
            self._start[name] = self.clock()

        return hook

    def _post(self, name: str):
        def hook(*_):
            if self.on:
                self.totals[name] += self.clock() - self._start[name]

        return hook


def clicks(n_obj: int) -> list[tuple[int, list[list[float]]]]:
    return [(k + 1, [[380.0 + 150 * k, 270.0]]) for k in range(n_obj)]


def run(args, frames: Path, n_frames: int, n_obj: int, dtype: str, clock) -> dict:
    official, ours = build_pair(Path(args.workdir), DTYPES[dtype])
    official_ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if args.official_autocast and dtype == "bfloat16"
        else contextlib.nullcontext
    )
    gens = {}
    for name, pred in (("official", official), ("samkit", ours)):
        ctx = official_ctx() if name == "official" else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            state = pred.init_state(str(frames))
            for obj_id, pts in clicks(n_obj):
                pred.add_new_points_or_box(state, 0, obj_id, points=pts, labels=[1])
        gens[name] = pred.propagate_in_video(state)
    parts = {
        "official": PartClock(official, clock),
        "samkit": PartClock(ours.model, clock),
    }
    warm = ours.model.num_maskmem
    times: dict[str, list[float]] = {"official": [], "samkit": []}
    masks: dict[str, dict[int, torch.Tensor]] = {"official": {}, "samkit": {}}
    for i in range(n_frames):
        order = ("official", "samkit") if i % 2 == 0 else ("samkit", "official")
        for name in order:
            ctx = official_ctx() if name == "official" else contextlib.nullcontext()
            parts[name].on = i > warm
            t0 = clock()
            with torch.inference_mode(), ctx:
                f, _, m = next(gens[name])
            if i > warm:
                times[name].append(clock() - t0)
                masks[name][f] = m.float()
    off, sk = float(np.median(times["official"])), float(np.median(times["samkit"]))
    agree = []
    for f, mo in masks["official"].items():
        a, b = mo > 0, masks["samkit"][f] > 0
        union = (a | b).sum().item()
        agree.append(1.0 if union == 0 else (a & b).sum().item() / union)
    row = {
        "objects": n_obj,
        "samkit_dtype": dtype,
        "official": "autocast bfloat16"
        if args.official_autocast and dtype == "bfloat16"
        else "float32",
        "official_s": off,
        "samkit_s": sk,
        "samkit_over_official": sk / off,
        "mask_iou_min": min(agree),
        "timed_frames": len(times["samkit"]),
    }
    if args.parts:
        n = len(times["samkit"])
        for name in ("official", "samkit"):
            per = {k: v / n for k, v in parts[name].totals.items() if v > 0}
            per["other"] = float(np.mean(times[name])) - sum(per.values())
            row[f"{name}_parts_s"] = {k: round(v, 4) for k, v in per.items()}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--frames", type=int, default=2, help="timed frames per implementation")
    ap.add_argument("--samkit-dtypes", nargs="+", default=["float32"], choices=list(DTYPES))
    ap.add_argument("--official-autocast", action="store_true")
    ap.add_argument("--parts", action="store_true", help="per-submodule seconds per frame")
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, process CPU time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/samkit_official_timing")
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args()
    clock = time.perf_counter
    if args.cpu_time:
        args.threads, clock = 1, time.process_time
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    n_frames = 7 + 1 + args.frames  # num_maskmem warm-up frames, then the timed ones
    frames = workdir / f"frames_{n_frames}"
    if not frames.exists():
        synthetic_frames(frames, n_frames)
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    print(f"CPU {cpu}, torch {torch.__version__}, threads {args.threads}", flush=True)
    rows = [
        run(args, frames, n_frames, n_obj, dtype, clock)
        for dtype in args.samkit_dtypes
        for n_obj in args.objects
    ]
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=1))
        os.replace(tmp, args.out)


if __name__ == "__main__":
    sys.exit(main())
