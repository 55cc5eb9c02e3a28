"""Full-size SAM 3 video, cost of one frame by part (random weights, one thread, CPU seconds of
the process), float32 and bfloat16; and whether batching the objects of a frame saves time.

The gated `sam3.pt` is not needed: every part is built at the official sizes
(`samkit.configs.sam3.SAM3_OFFICIAL`, `samkit.build.sam3_video.sam3_tracker_from_sizes`), with
two exceptions that do not change a frame's cost:
- the ViT trunk is built 2 blocks deep (one windowed, one global) instead of 32 (28 windowed, 4
  global); each block is timed alone on a 72x72x1024 input and the trunk's time is
  `forward_image(depth 2) + 27 x windowed + 3 x global` (the blocks of one kind are the same
  computation);
- the text encoder is 1 layer deep (the text is encoded once per concept and cached, never per
  frame).

Parts of a tracked frame (official `Sam3VideoBase`): the detector's backbone (trunk + necks) and
its heads (fusion encoder, decoder, segmentation head, the tracker's feature levels) once per
frame; the tracker per tracker state of B objects: `tracking.propagate` (memory attention over a
full bank: 1 conditioning + 6 tracked memories and their pointers, mask decoder) and
`tracking.update_memories` (memory encoder). Objects detected on the same frame share a state
and run batched (the official grouping); `--objects N` also times N objects one by one (N states)
against one batched state of N.

    python benchmarks/bench_sam3_full_parts.py                     # float32 + bfloat16, N = 3
    python benchmarks/bench_sam3_full_parts.py --parts tracker --dtypes bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_json  # noqa: E402
from samkit.build.sam3 import sam3_from_config  # noqa: E402
from samkit.build.sam3_video import sam3_tracker_from_sizes, tracker_to_dtype  # noqa: E402
from samkit.configs.sam3 import SAM3_OFFICIAL  # noqa: E402
from samkit.modeling.sam3.tracker import TrackerFrameOutput  # noqa: E402
from samkit.modeling.video_memory import FrameFeatures  # noqa: E402
from samkit.video.sam3 import tracking  # noqa: E402
from samkit.video.sam3.detect import FrameDetector  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
N_WINDOWED, N_GLOBAL = 28, 4  # of the official 32 blocks (global: 7, 15, 23, 31)


def cpu_s(fn: Callable[[], object]) -> float:
    """CPU seconds of this process for one call (inference mode)."""
    with torch.inference_mode():
        t = time.process_time()
        fn()
        return time.process_time() - t


def detector_parts(dtype: torch.dtype) -> dict[str, float]:
    """Seconds of the full-size detector's per-frame parts (see the module doc)."""
    cfg = dataclasses.replace(SAM3_OFFICIAL, vit_depth=2, vit_global_att_blocks=(1,), text_layers=1)
    torch.manual_seed(0)
    model = sam3_from_config(cfg).eval().to(dtype)
    det = FrameDetector(model, 0.5, 0.1)
    x = torch.randn(1, 3, cfg.img_size, cfg.img_size, dtype=dtype)
    with torch.inference_mode():
        feats, mask = det.text_features("person")
    vis: dict = {}
    out = {"backbone_depth2_s": cpu_s(lambda: vis.update(model.backbone.forward_image(x)))}
    grid = cfg.img_size // cfg.patch_size
    tokens = torch.randn(1, grid, grid, cfg.vit_embed_dim, dtype=dtype)
    blocks = model.backbone.vision_backbone.trunk.blocks
    out["vit_windowed_block_s"] = cpu_s(lambda: blocks[0](tokens))
    out["vit_global_block_s"] = cpu_s(lambda: blocks[1](tokens))
    out["backbone_s"] = (
        out["backbone_depth2_s"]
        + (N_WINDOWED - 1) * out["vit_windowed_block_s"]
        + (N_GLOBAL - 1) * out["vit_global_block_s"]
    )

    def heads() -> None:
        model.forward_grounding(vis["backbone_fpn"], vis["vision_pos_enc"][-1], feats, mask)
        det._tracker_levels(vis)

    out["heads_s"] = cpu_s(heads)
    return out


def full_bank(tracker, feats: FrameFeatures, obj_ids: list[int]) -> tracking.TrackerState:
    """A state of B objects whose memory holds frame 0 (conditioning) and frames 1..6 (tracked),
    one real memory encoding reused (the cost does not depend on the values)."""
    b = len(obj_ids)
    s = tracker.input_mask_size
    scores = torch.full((b, 1), 5.0)
    mem, pos = tracker.encode_new_memory(
        feats.expand(b).image_embed, torch.randn(b, 1, s, s), scores, True
    )
    out = TrackerFrameOutput(
        pred_masks=torch.zeros(b, 1, tracker.low_res_mask_size, tracker.low_res_mask_size),
        obj_ptr=torch.randn(b, tracker.hidden_dim),
        object_score_logits=scores,
        maskmem_features=mem.to(torch.bfloat16),
        maskmem_pos_enc=pos,
        iou_score=torch.ones(b),
        eff_iou_score=torch.tensor(1.0),
    )
    state = tracking.TrackerState(list(obj_ids))
    state.memory.cond_frame_outputs[0] = out
    for t in range(1, 7):
        state.memory.non_cond_frame_outputs[t] = out
    return state


def tracker_parts(dtype: torch.dtype, n: int) -> dict[str, float]:
    """Seconds of one tracked frame for 1 object, N objects batched and N one by one."""
    torch.manual_seed(0)
    tracker = tracker_to_dtype(sam3_tracker_from_sizes().eval(), dtype)
    g = tracker.image_size // tracker.backbone_stride
    d = tracker.hidden_dim
    feats = FrameFeatures(
        torch.randn(1, d, g, g), torch.randn(1, d, g, g),
        [torch.randn(1, d // 8, 4 * g, 4 * g), torch.randn(1, d // 4, 2 * g, 2 * g)],
    )  # fmt: skip
    with torch.inference_mode():
        states = {k: full_bank(tracker, feats, list(range(k))) for k in (1, n)}

    def step(state: tracking.TrackerState) -> Callable[[], None]:
        def run() -> None:
            low, _ = tracking.propagate(tracker, state, feats, 7, 100, False)
            tracking.update_memories(tracker, [state], feats, 7, low)

        return run

    cpu_s(step(states[1]))  # warm-up
    one = cpu_s(step(states[1]))
    batched = cpu_s(step(states[n]))
    one_again = cpu_s(step(states[1]))
    by_one = n * (one + one_again) / 2
    return {
        "tracker_1_object_s": (one + one_again) / 2,
        f"tracker_{n}_batched_s": batched,
        f"tracker_{n}_one_by_one_s": by_one,
        "batched_over_one_by_one": batched / by_one,
        "tracker_1_object_runs_s": [one, one_again],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=DTYPES)
    ap.add_argument("--parts", nargs="+", default=["detector", "tracker"])
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    doc: dict = {"machine": f"{os.cpu_count()} CPUs (shared: loaded)", "threads": 1, "rows": []}
    for name in args.dtypes:
        row: dict = {"dtype": name}
        if "tracker" in args.parts:
            row |= tracker_parts(DTYPES[name], args.objects)
            print(json.dumps(row), flush=True)
        if "detector" in args.parts:
            row |= detector_parts(DTYPES[name])
        if "tracker" in args.parts and "detector" in args.parts:
            per_frame = row["backbone_s"] + row["heads_s"]
            row["frame_1_object_s"] = per_frame + row["tracker_1_object_s"]
            row[f"frame_{args.objects}_objects_s"] = (
                per_frame + row[f"tracker_{args.objects}_batched_s"]
            )
        print(json.dumps(row), flush=True)
        doc["rows"].append(row)
    write_json("sam3_full_parts", doc, args.out)


if __name__ == "__main__":
    main()
