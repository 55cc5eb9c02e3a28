"""`samkit auto` on Ray (1 and N workers) against the single-process loop, on the same images.

    python benchmarks/bench_ray.py [--variant vit_b] [--points-per-side 16] [--images 4]
                                   [--workers 1 2] [--overhead-images 12]

Random weights (speed does not depend on the values). Both paths run the same per-image function
(`samkit.jobs.AutoJob.run`: decode, generate, overlay + COCO JSON written atomically). Reported:

- single process: the mean per-image time of the `samkit auto` loop (model already built);
- Ray, k workers: wall time of `label_images` (actor start-up included, the local Ray instance
  already up), the time to the first finished image (start-up), and the steady throughput, from
  the workers' finishing times (manifest column `finished`) after the first image;
- `overhead_per_image_s`: 1-worker Ray's steady time per image minus the single-process time per
  image. The same difference with the tiny `sam1_shapes` fixture and points_per_side 1
  (`--overhead-images` images, ~50 ms of model work each) measures Ray's own cost per image with
  little model time in it, so it is much less sensitive to the machine's load.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHAPES = SHARED / "fixtures" / "sam1_shapes"


def _make_images(folder: Path, n: int, long_side: int | None) -> list[Path]:
    """n images: the shared photos, then mirrored / rotated copies of them."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted((SHARED / "images").glob("*.jpg"))
    paths = []
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB")
        if long_side:
            s = long_side / max(im.size)
            im = im.resize((round(im.width * s), round(im.height * s)))
        im = [im, im.transpose(Image.FLIP_LEFT_RIGHT), im.transpose(Image.ROTATE_180)][
            (i // len(photos)) % 3
        ]
        paths.append(folder / f"img{i:03d}.png")
        im.save(paths[-1])
    return paths


def _single(model, name: str, files: list[Path], amg: dict, out: Path) -> dict:
    """The `samkit auto` loop (`cmd_auto`): one `AutoJob.run` per image."""
    from samkit.jobs import AutoJob, make_generator, settled_amg_kwargs

    gen = make_generator(model, "sam1", amg)
    job = AutoJob.create(out, name, True, settled_amg_kwargs(gen, amg))  # as `cmd_auto` does
    times = []
    for idx, f in enumerate(files):
        t = time.perf_counter()
        job.run(gen, f, f.name, idx)
        times.append(time.perf_counter() - t)
    return {"per_image_s": float(np.mean(times)), "images_per_s": len(times) / sum(times),
            "times_s": times}  # fmt: skip


def _ray(model, name: str, folder: Path, amg: dict, out: Path, workers: int) -> dict:
    from samkit.distributed import label_images

    t0, t0_unix = time.perf_counter(), time.time()
    summary = label_images(
        [str(folder)], out, model=model, model_name=name, random_weights=True,
        generator_kwargs=amg, num_workers=workers, resume=False,
        progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    assert summary.count("done") == len(summary.rows), summary.failed
    # the workers' own finishing times: Ray Data may deliver some results late, in pairs
    done = sorted(r["finished"] - t0_unix for r in summary.rows)
    per_worker: dict[str, list[float]] = {}
    for r in summary.rows:
        per_worker.setdefault(r["worker"], []).append(r["finished"])
    # each worker's time per image after its first one; the pool's rate is the sum of theirs
    rates = [(len(t) - 1) / (max(t) - min(t)) for t in per_worker.values() if len(t) > 1]
    steady = 1 / sum(rates) if rates else float("nan")
    busy = [r["seconds"] for r in summary.rows]
    # idle time of a worker between two of its images: Ray's own cost per image (the next
    # image's transfer from the object store, result reporting, task scheduling)
    gaps = []
    for w in per_worker:
        mine = sorted((r["finished"], r["seconds"]) for r in summary.rows if r["worker"] == w)
        gaps += [b[0] - b[1] - a[0] for a, b in itertools.pairwise(mine)]
    return {
        "workers": workers,
        "wall_s": wall,
        "first_image_s": done[0],
        "steady_s_per_image": steady,
        "steady_images_per_s": 1 / steady,
        "images_per_s_incl_startup": len(done) / wall,
        "worker_busy_per_image_s": float(np.mean(busy)),
        "worker_idle_between_images_s": float(np.mean(gaps)) if gaps else float("nan"),
        "manifest_workers": sorted({r["worker"] for r in summary.rows}),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="vit_b")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--long-side", type=int, default=None, help="resize the photos (default: no)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--overhead-images", type=int, default=12)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus)
    torch.manual_seed(0)
    import ray

    from samkit.build.sam import build_sam
    from samkit.runtime.accel import tune_malloc

    tune_malloc()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    result: dict = {"cpus": cpus, "variant": args.variant, "images": args.images,
                    "points_per_side": args.points_per_side}  # fmt: skip
    from samkit.distributed.run import _amg_kwargs

    def save() -> None:  # after every stage, so a long run keeps what it measured
        result["loadavg"] = [load_before, os.getloadavg()]
        write_json("ray", result, args.out)

    try:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
        # 1. Ray's own cost per image: a tiny model with little work per image
        small = _make_images(tmp / "small", args.overhead_images, 256)
        tiny = build_sam(SHAPES / "config.json", checkpoint=SHAPES / "sam1_shapes.pth")
        amg1 = _amg_kwargs({"points_per_side": 1})
        s = _single(tiny, "sam1_shapes", small, amg1, tmp / "s_single")
        r = _ray(tiny, "sam1_shapes", tmp / "small", amg1, tmp / "s_ray", 1)
        result["tiny_model"] = {"single_per_image_s": s["per_image_s"], "ray1": r,
                                "overhead_per_image_s": r["steady_s_per_image"] - s["per_image_s"]}  # fmt: skip
        save()
        # 2. the real model
        files = _make_images(tmp / "in", args.images, args.long_side)
        model = build_sam(args.variant)
        amg = _amg_kwargs({"points_per_side": args.points_per_side})
        result["single"] = _single(model, args.variant, files, amg, tmp / "single")
        save()
        result["ray"] = []
        for w in args.workers:
            result["ray"].append(_ray(model, args.variant, tmp / "in", amg, tmp / f"ray{w}", w))
            for f in (tmp / "single").iterdir():  # the same bytes as the single process
                assert f.read_bytes() == (tmp / f"ray{w}" / f.name).read_bytes(), f.name
            one = result["ray"][0]
            if one["workers"] == 1:
                single = result["single"]["per_image_s"]
                result["ray1_busy_vs_single"] = one["worker_busy_per_image_s"] / single
                result["ray1_steady_vs_single"] = one["steady_s_per_image"] / single
            save()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
