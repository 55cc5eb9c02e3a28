"""SAM 2's sine position encodings per frame: kept (`PositionEmbeddingSine`'s cache) or recomputed.

`Sam2.forward_image` (the video predictor's image encoder call, once per frame) asks the FPN
neck for the position encoding of each kept level (3 for SAM 2: 256x256, 128x128 and 64x64 at
1024 px, 256 channels). samkit computes each grid's encoding once and returns an expanded view
(`samkit.layers.sine_position`); "recomputed" clears that cache before every frame, which is
what a per-frame computation costs (the official `PositionEmbeddingSine` caches the grid too but
`repeat`s it over the batch every call: the same bytes). Per frame: wall seconds of
`forward_image` and of the position-encoding calls alone (forward hooks), and bytes of the new
tensors allocated by them (a dispatch-mode count of every op's fresh outputs, in a separate
untimed pass). One thread; the two alternate A B A B in one process, so their ratio holds on a
loaded machine.

    python -m benchmarks.bench_position_cache                     # sam2_tiny fixture + hiera_t
    python -m benchmarks.bench_position_cache --models sam2_tiny --frames 2 --rounds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sam2_tiny"


class AllocatedBytes(TorchDispatchMode):
    """Bytes of the storages every op returns that none of its inputs holds (new tensors);
    `inside` counts only while `active` (set by the position encodings' hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.inside = 0
        self.active = False

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        held = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs or {}))
            if isinstance(t, Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in held:
                n = t.untyped_storage().nbytes()
                self.total += n
                if self.active:
                    self.inside += n
        return out


def build(name: str) -> Any:
    from samkit.video.build import build_sam2_video_predictor

    if name == "sam2_tiny":
        pred = build_sam2_video_predictor(FIXTURE / "config.json", FIXTURE / "sam2_tiny.pt")
    else:
        torch.manual_seed(0)
        pred = build_sam2_video_predictor(name)
    return pred.model.eval()


def encodings(model: Any) -> list[Any]:
    from samkit.layers.sine_position import PositionEmbeddingSine

    return [m for m in model.image_encoder.modules() if isinstance(m, PositionEmbeddingSine)]


def frame(model: Any, image: Tensor, recompute: bool, counter: AllocatedBytes | None) -> dict:
    """One `forward_image`: seconds, position-encoding seconds (and bytes with a counter)."""
    pes = encodings(model)
    if recompute:
        for pe in pes:
            pe._cache.clear()
            pe._cast.clear()
    spent = [0.0]
    start = [0.0]

    def pre(*_: Any) -> None:
        start[0] = time.perf_counter()
        if counter is not None:
            counter.active = True

    def post(*_: Any) -> None:
        spent[0] += time.perf_counter() - start[0]
        if counter is not None:
            counter.active = False

    handles = [
        h for pe in pes for h in (pe.register_forward_pre_hook(pre), pe.register_forward_hook(post))
    ]
    try:
        t0 = time.perf_counter()
        if counter is None:
            model.forward_image(image)
        else:
            with counter:
                model.forward_image(image)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return {"frame_s": total, "position_s": spent[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["sam2_tiny", "sam2.1_hiera_t"])
    ap.add_argument("--frames", type=int, default=3, help="timed frames per variant and round")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        model = build(name)
        s = model.image_size
        image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
        res: dict[str, dict[str, list[float]]] = {}
        with torch.inference_mode():
            frame(model, image, False, None)  # warm-up (and the cache's first entries)
            for variant, recompute in (("recomputed", True), ("cached", False)):
                counter = AllocatedBytes()
                frame(model, image, recompute, counter)
                res[variant] = {"frame_s": [], "position_s": []}
                res[variant]["position_bytes"] = [counter.inside]
                res[variant]["frame_bytes"] = [counter.total]
            for _ in range(args.rounds):
                for variant, recompute in (("recomputed", True), ("cached", False)):
                    for _ in range(args.frames):
                        t = frame(model, image, recompute, None)
                        res[variant]["frame_s"].append(t["frame_s"])
                        res[variant]["position_s"].append(t["position_s"])
        row: dict[str, Any] = {"model": name, "threads": args.threads}
        for variant, r in res.items():
            row[variant] = {
                "frame_s_min": min(r["frame_s"]),
                "frame_s_mean": sum(r["frame_s"]) / len(r["frame_s"]),
                "position_s_mean": sum(r["position_s"]) / len(r["position_s"]),
                "position_mb_per_frame": r["position_bytes"][0] / 2**20,
                "frame_mb_allocated": r["frame_bytes"][0] / 2**20,
            }
        rows.append(row)
        a, b = row["recomputed"], row["cached"]
        print(
            f"{name}: per frame, recomputed / cached: position encodings "
            f"{a['position_s_mean'] * 1e3:.2f} / {b['position_s_mean'] * 1e3:.3f} ms, "
            f"{a['position_mb_per_frame']:.1f} / {b['position_mb_per_frame']:.1f} MB allocated; "
            f"forward_image {a['frame_s_mean']:.3f} / {b['frame_s_mean']:.3f} s (min "
            f"{a['frame_s_min']:.3f} / {b['frame_s_min']:.3f}), "
            f"{a['frame_mb_allocated']:.0f} / {b['frame_mb_allocated']:.0f} MB allocated",
            file=sys.stderr,
        )
    write_json("position_cache", {"rows": rows}, args.out)


if __name__ == "__main__":
    main()
