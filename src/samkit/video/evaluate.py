"""The semi-supervised VOS protocol on a DAVIS-layout folder (what `samkit eval-video` runs).

For each video: the first frame's ground-truth objects are given to the predictor with
`add_new_mask`, `propagate_in_video` tracks the whole video, the predicted masks are merged into
a palette PNG per frame (`OUT/<video>/<frame>.png`, the DAVIS results layout; the smaller id
wins where objects overlap, as the official `sam2` VOS script writes them) and scored against the
annotations with `samkit.video.metrics`: every annotated frame except the first and the last, as
the DAVIS 2017 evaluation does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from samkit.server.encoding import atomic_write_bytes, png_bytes
from samkit.video.davis import DavisVideo, read_davis
from samkit.video.formats import label_map, write_palette_png
from samkit.video.metrics import boundary_f, object_result, region_similarity, summarize
from samkit.video.track import FrameProgress


def evaluate_video(
    predictor: Any, video: DavisVideo, out: Path | None, bar: FrameProgress | None = None
) -> dict[int, dict[str, Any]]:
    """Track one video from its first-frame annotation; per-object J / F results."""
    from samkit.video.sources import open_video

    n = len(video.frame_names)
    evaluated = sorted(t for t in video.annotations if 0 < t < n - 1)
    if not evaluated:
        raise ValueError(
            f"video {video.name}: no annotated frame to evaluate besides the first and the last "
            "(the DAVIS protocol skips both)"
        )
    src = open_video(video.frames_dir, int(getattr(predictor, "image_size", 1024)))
    state = predictor.init_state(src)
    first = video.labels(0)
    for oid in video.object_ids:
        predictor.add_new_mask(state, 0, oid, first == oid)
    scores: dict[int, dict[str, list[float]]] = {o: {"J": [], "F": []} for o in video.object_ids}
    seen = set()
    for t, obj_ids, logits in predictor.propagate_in_video(state):
        ids = [int(o) for o in obj_ids]
        masks = (logits > 0).reshape(len(ids), video.height, video.width).cpu().numpy()
        pred = label_map(masks, ids)
        if out is not None:
            write_palette_png(out / video.name / f"{video.frame_names[t]}.png", pred)
        if t in video.annotations and t in evaluated:
            gt = video.labels(t)
            for oid in video.object_ids:
                scores[oid]["J"].append(region_similarity(gt == oid, pred == oid))
                scores[oid]["F"].append(boundary_f(gt == oid, pred == oid))
        seen.add(t)
        if bar is not None:
            bar.update(video.name)
    missing = [t for t in evaluated if t not in seen]
    if missing:
        raise ValueError(f"video {video.name}: the predictor yielded no masks for frames {missing}")
    return {oid: object_result(s["J"], s["F"]) for oid, s in scores.items()}


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
    total = sum(len(v.frame_names) for v in davis)
    bar = FrameProgress(total, "eval-video", enabled=progress)
    per_video = {v.name: evaluate_video(predictor, v, out, bar) for v in davis}
    doc = summarize(per_video)
    doc["protocol"] = {
        "data": str(root),
        "prompts": "first-frame ground-truth masks (add_new_mask)",
        "evaluated_frames": "annotated frames except the first and the last (DAVIS 2017)",
        "boundary_tolerance": "ceil(0.008 * image diagonal) pixels",
        "void_label_255": "treated as background",
    }
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
