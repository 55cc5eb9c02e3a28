"""The semi-supervised VOS protocol on a DAVIS-layout folder (what `samkit eval-video` runs).

For each video, every object is prompted with its ground-truth mask (`add_new_mask`) on the first
annotated frame where it appears, and `propagate_in_video` tracks it forward from there. A model
whose video API takes no mask prompt (SAM 3: `takes_mask_prompts = False` on the predictor, the
official `add_prompt` takes text, exemplar boxes and clicks) gets one positive click on the mask's
innermost pixel instead (`innermost_pixel`: the largest Euclidean distance to the background, the
first click of the interactive-segmentation protocols), recorded in `metrics.json`.

- All objects on frame 0 (DAVIS, MOSE): one pass over the whole video, as the official `sam2`
  `tools/vos_inference.py` does; predicted masks are merged into a palette PNG per frame
  (`OUT/<video>/<frame>.png`, the DAVIS results layout; the smaller id wins where objects overlap,
  as the official script writes them).
- Some object appears later (YouTube-VOS, LVOS): the official script's
  `--track_object_appearing_later_in_video` protocol (`vos_separate_inference_per_object`): each
  object is tracked from its first annotated frame only (never before it), and where objects
  overlap the highest logit wins (the official `_apply_non_overlapping_constraints`). Objects that
  appear on the same frame are tracked in one pass: SAM 2 tracks objects independently, so this
  gives the same masks as one pass per object.

Scores come from `samkit.video.eval.metrics` on every annotated frame except the first and the last (the
DAVIS 2017 rule); an object is scored only on those after the frame it was prompted on. An object
that first appears on the last frame is never prompted or scored, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from samkit.io.masks import atomic_write_bytes, label_map, png_bytes, write_palette_png
from samkit.io.progress import Progress
from samkit.video.eval.davis import DavisVideo, read_davis
from samkit.video.eval.metrics import boundary_f, object_result, region_similarity, summarize

PROTOCOL = {
    "prompts": "each object's ground-truth mask (add_new_mask) on the first annotated frame where "
    "it appears (frame 0 for DAVIS)",
    "objects_appearing_later": "tracked forward from their first annotated frame only, in a pass "
    "of their own; overlaps go to the highest logit (the official sam2 vos_inference.py "
    "--track_object_appearing_later_in_video protocol); scored only after that frame",
    "evaluated_frames": "annotated frames except the first and the last (DAVIS 2017)",
    "boundary_tolerance": "ceil(0.008 * image diagonal) pixels",
    "void_label_255": "treated as background",
}
CLICK_PROMPTS = (
    "one positive click on each object's innermost ground-truth pixel (largest distance to its "
    "background; the model takes no mask prompt) on the first annotated frame where it appears"
)


def innermost_pixel(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel of a non-empty HxW bool mask farthest from its background (Euclidean
    distance transform, the image border counting as background; ties: the first in row order).

    Raises:
        ValueError: an empty mask.
    """
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        raise ValueError("an empty mask has no pixel to click")
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def prompt_object(predictor: Any, state: Any, frame: int, obj_id: int, mask: np.ndarray) -> None:
    """Prompt one object with its ground-truth mask, or a click (see the module docstring)."""
    if getattr(predictor, "takes_mask_prompts", True):
        predictor.add_new_mask(state, frame, obj_id, mask)
        return
    point = np.array([innermost_pixel(mask)], np.float32)
    predictor.add_new_points_or_box(state, frame, obj_id, points=point, labels=np.array([1]))


def tracked_objects(video: DavisVideo) -> dict[int, int]:
    """`{object id: prompt frame}` for the objects that can be tracked (not first seen last)."""
    last = len(video.frame_names) - 1
    return {o: f for o, f in video.first_frames.items() if f < last or last == 0}


def frames_to_track(video: DavisVideo) -> int:
    """How many frames `evaluate_video` tracks (for a progress total)."""
    n = len(video.frame_names)
    starts = set(tracked_objects(video).values())
    return n if not video.objects_appear_later else sum(n - f for f in starts)


def _passes(
    predictor: Any, state: Any, video: DavisVideo, starts: dict[int, list[int]]
) -> Iterator[tuple[int, list[int], Any]]:
    """Yields (frame, obj_ids, Ox1xHxW logits) of one pass per prompt frame, in frame order."""
    for k, (f, objs) in enumerate(sorted(starts.items())):
        if k:
            predictor.reset_state(state)
        labels = video.labels(f)
        for oid in objs:
            prompt_object(predictor, state, f, oid, labels == oid)
        for t, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=f):
            yield t, [int(o) for o in obj_ids], logits


def _positive(logits: Any, ids: list[int], hw: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per object: the flat indices and float32 values of its positive logits (all that the
    highest-logit merge needs: a pixel is an object's only where its logit is > 0)."""
    flat = logits.reshape(len(ids), hw).float().cpu().numpy()
    out = {}
    for i, oid in enumerate(ids):
        idx = np.flatnonzero(flat[i] > 0).astype(np.int32)
        out[oid] = (idx, flat[i][idx])
    return out


def _merge_highest(
    per_obj: dict[int, tuple[np.ndarray, np.ndarray]], obj_ids: list[int], h: int, w: int
) -> np.ndarray:
    """HxW id map: each pixel goes to the object with the highest positive logit (ties: smaller id)."""
    best = np.full(h * w, -np.inf, np.float32)
    lab = np.zeros(h * w, np.uint8)
    for oid in sorted(obj_ids):
        if oid not in per_obj:
            continue
        idx, val = per_obj[oid]
        win = val > best[idx]
        best[idx[win]] = val[win]
        lab[idx[win]] = oid
    return lab.reshape(h, w)


def evaluate_video(
    predictor: Any, video: DavisVideo, out: Path | None, bar: Progress | None = None
) -> dict[int, dict[str, Any]]:
    """Track one video from its annotations (see the module docstring); per-object J / F results.

    Raises:
        ValueError: no object has an annotated frame to be scored on, or the predictor yielded
            no masks for a frame that is scored.
    """
    from samkit.video.frames.sources import open_video

    n, h, w = len(video.frame_names), video.height, video.width
    prompts = tracked_objects(video)
    for oid in sorted(set(video.object_ids) - set(prompts)):
        warnings.warn(
            f"video {video.name}: object {oid} first appears on the last frame "
            f"({video.frame_names[-1]}); it is not prompted, tracked or scored",
            stacklevel=2,
        )
    scored = {
        o: [t for t in sorted(video.annotations) if f < t < n - 1] for o, f in prompts.items()
    }
    for oid in [o for o, ts in scored.items() if not ts]:
        warnings.warn(
            f"video {video.name}: object {oid} (prompted on frame {prompts[oid]}) has no annotated "
            "frame after its prompt frame to be scored on (the last frame is never scored)",
            stacklevel=2,
        )
        del scored[oid]
    if not scored:
        raise ValueError(
            f"video {video.name}: no annotated frame to evaluate besides each object's prompt frame "
            "and the last frame (the DAVIS protocol skips both)"
        )
    starts: dict[int, list[int]] = {}
    for oid, f in sorted(prompts.items()):
        starts.setdefault(f, []).append(oid)
    later = video.objects_appear_later
    src = open_video(video.frames_dir, int(getattr(predictor, "image_size", 1024)))
    state = predictor.init_state(src)
    kept: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    preds: dict[int, np.ndarray] = {}
    for t, ids, logits in _passes(predictor, state, video, starts):
        if later:
            kept.setdefault(t, {}).update(_positive(logits, ids, h * w))
        else:
            lab = label_map((logits > 0).reshape(len(ids), h, w).cpu().numpy(), ids)
            if out is not None:
                write_palette_png(out / video.name / f"{video.frame_names[t]}.png", lab)
            if t in video.annotations:
                preds[t] = lab
        if bar is not None:
            bar.update(1, video.name)
    if later:
        for t in range(n):
            lab = _merge_highest(kept.pop(t, {}), list(prompts), h, w)
            if out is not None:
                write_palette_png(out / video.name / f"{video.frame_names[t]}.png", lab)
            if t in video.annotations:
                preds[t] = lab
    results: dict[int, dict[str, Any]] = {}
    for oid, frames in scored.items():
        missing = [t for t in frames if t not in preds]
        if missing:
            raise ValueError(
                f"video {video.name}: the predictor yielded no masks for frames {missing}"
            )
        gts = [(video.labels(t) == oid, preds[t] == oid) for t in frames]
        results[oid] = object_result(
            [region_similarity(g, p) for g, p in gts], [boundary_f(g, p) for g, p in gts]
        )
        results[oid]["prompt_frame"] = prompts[oid]
    return results


def evaluate_davis(
    predictor: Any,
    root: str | os.PathLike,
    out: str | os.PathLike,
    videos: list[str] | None = None,
    resolution: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every video of a DAVIS-layout folder; writes OUT/metrics.json and OUT/metrics.png.

    Returns:
        The `metrics.json` document: `summarize`'s per-video and overall results plus the
        protocol settings.
    """
    out = Path(out)
    davis = read_davis(root, videos, resolution)  # checks every video before any tracking
    total = sum(frames_to_track(v) for v in davis)
    bar = Progress(total, "eval-video", "frames", enabled=progress)
    with bar:
        per_video = {v.name: evaluate_video(predictor, v, out, bar) for v in davis}
    doc = summarize(per_video)
    doc["protocol"] = {"data": str(root), **PROTOCOL}
    if not getattr(predictor, "takes_mask_prompts", True):
        doc["protocol"]["prompts"] = CLICK_PROMPTS
    never = {v.name: sorted(set(v.object_ids) - set(tracked_objects(v))) for v in davis}
    doc["protocol"]["objects_never_prompted"] = {k: v for k, v in never.items() if v}
    atomic_write_bytes(out / "metrics.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(out / "metrics.png", png_bytes(plot_metrics(doc)))
    return doc


def plot_metrics(doc: dict[str, Any]) -> Image.Image:
    """A bar chart of J, F and J&F per video plus the overall means (PIL, no matplotlib)."""
    rows = [(name, v["J"], v["F"], v["J&F"]) for name, v in doc["videos"].items()]
    o = doc["overall"]
    rows.append(("overall", o["J-Mean"], o["F-Mean"], o["J&F-Mean"]))
    colours = [(66, 133, 244), (251, 140, 0), (67, 160, 71)]
    left, bar_w, row_h, pad = 150, 360, 54, 14
    im = Image.new("RGB", (left + bar_w + 90, pad * 2 + 24 + row_h * len(rows)), "white")
    d = ImageDraw.Draw(im)
    for k, name in enumerate(("J", "F", "J&F")):
        d.rectangle([left + 110 * k, pad, left + 110 * k + 12, pad + 12], fill=colours[k])
        d.text((left + 110 * k + 18, pad), name, fill="black")
    for i, (name, *vals) in enumerate(rows):
        y = pad + 24 + i * row_h
        d.text((pad, y + 18), name[:22], fill="black")
        for k, v in enumerate(vals):
            y0 = y + 4 + k * 15
            d.rectangle(
                [left, y0, left + round(bar_w * float(np.clip(v, 0, 1))), y0 + 11], fill=colours[k]
            )
            d.text((left + bar_w + 8, y0), f"{v:.3f}", fill="black")
        d.line([left, y, left, y + row_h - 6], fill="gray")
    return im


def format_table(doc: dict[str, Any]) -> str:
    """A plain-text table of the results (per object, per video, overall)."""
    lines = [f"{'video':<24} {'object':>6} {'J':>7} {'F':>7} {'J&F':>7}"]
    for name, v in doc["videos"].items():
        for oid, o in v["objects"].items():
            lines.append(
                f"{name:<24} {oid:>6} {o['J']['mean']:7.3f} {o['F']['mean']:7.3f} {o['J&F']:7.3f}"
            )
        lines.append(f"{name:<24} {'all':>6} {v['J']:7.3f} {v['F']:7.3f} {v['J&F']:7.3f}")
    o = doc["overall"]
    lines.append(
        f"{'overall':<24} {o['objects']:>6} {o['J-Mean']:7.3f} {o['F-Mean']:7.3f} "
        f"{o['J&F-Mean']:7.3f}"
    )
    return "\n".join(lines)
