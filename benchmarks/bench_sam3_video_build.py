"""What reading the checkpoint once saves `build_sam3_video_predictor`.

Before, it read the file twice: `build_sam3_image_model(checkpoint_path=...)` (the detector and
the interactive heads), then `build_sam3_tracker(read_state_dict(path))` (the video tracker). Now
it reads it once and builds both from the same tensors. Timed here, A B A B in one process:

- the whole build, before (emulated: the two calls above) and now, on a checkpoint in the
  official layout (default: the sam3_tiny fixture, 100 MB);
- one `read_state_dict` (the read saved) on that checkpoint and, with `--full`, on a file of the
  official sam3.pt's tensor count and shapes (the detector with its interactive heads and the
  video tracker at the official sizes, uninitialised values, about 3.4 GB, written to a
  temporary folder; read while the page cache holds it, as right after a first read).

    python -m benchmarks.bench_sam3_video_build                 # the fixture, 3 repeats
    python -m benchmarks.bench_sam3_video_build --full --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from samkit.build.sam3 import build_sam3_image_model, sam3_from_config
from samkit.build.sam3_video import build_sam3_tracker, sam3_tracker_from_sizes
from samkit.checkpoint import read_state_dict
from samkit.configs.sam3 import SAM3_OFFICIAL
from samkit.video.sam3.build import build_sam3_video_predictor

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/sam3_tiny/sam3_tiny.pt"


def build_twice_read(path: Path) -> None:
    """The build as it was: the image model reads the file, then the tracker reads it again."""
    build_sam3_image_model(checkpoint_path=path, enable_inst_interactivity=True)
    build_sam3_tracker(read_state_dict(path))


def build_once_read(path: Path) -> None:
    build_sam3_video_predictor(checkpoint_path=path)


def seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Each callable's wall seconds, `repeats` rounds of A B (C ...) in turn."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def official_sized_checkpoint(folder: Path) -> Path:
    """A file with the official sam3.pt's tensor count and shapes ({"model": {...}})."""
    cfg = dataclasses.replace(SAM3_OFFICIAL, inst_interactivity=True)
    with torch.device("meta"):
        image = sam3_from_config(cfg, "meta").state_dict()
        video = sam3_tracker_from_sizes().state_dict()
    state = {}
    for k, v in image.items():
        name = k if k.startswith("tracker.") else f"detector.{k}"
        state[name] = torch.empty(v.shape, dtype=v.dtype)
    for k, v in video.items():  # names need not be the official ones to time a read
        state[f"tracker.video.{k}"] = torch.empty(v.shape, dtype=v.dtype)
    path = folder / "sam3_official_sized.pt"
    torch.save({"model": state}, path)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=FIXTURE)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full", action="store_true", help="also a ~3.4 GB official-sized file")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    path = args.checkpoint
    build_once_read(path)  # warm: the page cache, the allocator, imported modules
    builds = seconds(
        {"read_twice": lambda: build_twice_read(path), "read_once": lambda: build_once_read(path)},
        args.repeats,
    )
    reads = {"fixture": seconds({"read": lambda: read_state_dict(path)}, args.repeats)["read"]}
    sizes = {"fixture": path.stat().st_size}
    keys = {"fixture": len(read_state_dict(path))}
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            big = official_sized_checkpoint(Path(tmp))
            sizes["official_sized"] = big.stat().st_size
            keys["official_sized"] = len(read_state_dict(big))
            reads["official_sized"] = seconds({"read": lambda: read_state_dict(big)}, args.repeats)[
                "read"
            ]
    med = {k: statistics.median(v) for k, v in builds.items()}
    write_json(
        "sam3_video_build",
        {
            "checkpoint": str(path),
            "build_s": builds,
            "build_median_s": med,
            "saved_s": med["read_twice"] - med["read_once"],
            "read_state_dict_s": reads,
            "read_state_dict_median_s": {k: statistics.median(v) for k, v in reads.items()},
            "file_bytes": sizes,
            "tensors": keys,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
