"""Track objects through a video with a video predictor and write the outputs.

`track_video` is what `samkit track` runs: prompts (and, for a concept tracker such as SAM 3's
`samkit.video.track_concepts.ConceptTracker`, finds: every instance of a phrase or exemplar)
-> `propagate_in_video` (forward, reverse or both) -> `masks/<frame>.png` (palette PNGs,
written as frames arrive), `annotations.json` (YouTube-VIS style; one category per concept)
and `overlay.mp4`. Every file is written atomically; the overlay is rendered
after tracking from the video and the PNGs, so memory does not grow with the video length.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samkit.io.atomic import remove_stale_temporaries
from samkit.io.progress import Progress
from samkit.video.formats import (
    VisRecorder,
    atomic_write_bytes,
    label_map,
    read_label_png,
    write_palette_png,
)
from samkit.video.track_prompts import ConceptPrompt, VideoPrompt

DIRECTIONS = ("forward", "reverse", "both")


def apply_prompts(predictor: Any, state: Any, prompts: Sequence[VideoPrompt]) -> None:
    """Add every prompt to the inference state (points + box in one call per frame and object)."""
    for p in prompts:
        if p.mask is not None:
            predictor.add_new_mask(state, p.frame, p.obj_id, p.mask)
            continue
        points = labels = None
        if p.points:
            points = np.array([[x, y] for x, y, _ in p.points], dtype=np.float32)
            labels = np.array([lab for _, _, lab in p.points], dtype=np.int32)
        box = None if p.box is None else np.array(p.box, dtype=np.float32)
        predictor.add_new_points_or_box(
            state, p.frame, p.obj_id, points=points, labels=labels, box=box
        )


def apply_finds(predictor: Any, state: Any, finds: Sequence[ConceptPrompt]) -> None:
    """Run every find (a concept on a frame) of a concept tracker.

    Raises:
        ValueError: finds for a predictor that tracks only the objects it is given.
    """
    if finds and not getattr(predictor, "finds_concepts", False):
        raise ValueError(
            f"{type(predictor).__name__} tracks the objects it is given: it cannot find "
            "concepts (text or exemplars); use a SAM 3 model"
        )
    for c in finds:
        predictor.find(state, c.frame, c.text, c.box, c.box_label)


def vis_document(rec: VisRecorder, state: Any, video_name: str) -> dict[str, Any]:
    """The YouTube-VIS document of `rec`; with a concept tracker's state (`category(id)`), one
    category per concept, each annotation in its concept's, with the concept name."""
    doc = rec.document(video_name)
    doc["info"]["description"] = "samkit track"
    category = getattr(state, "category", None)
    if not callable(category):
        return doc
    names: list[str] = []
    for ann in doc["annotations"]:
        name = category(ann["object_id"])
        if name not in names:
            names.append(name)
        ann["category_id"] = names.index(name) + 1
        ann["concept"] = name
    doc["categories"] = [
        {"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(names, start=1)
    ]
    return doc


def frames_to_track(
    num_frames: int,
    prompt_frames: Sequence[int],
    start_frame: int | None,
    max_frames: int | None,
    reverse: bool,
) -> int:
    """How many frames one `propagate_in_video` call yields (the official range rule: none in
    reverse from frame 0) from `start_frame_for(prompt_frames, start_frame, reverse)`."""
    start_frame = start_frame_for(prompt_frames, start_frame, reverse)
    if max_frames is None:
        max_frames = num_frames
    if reverse:
        return start_frame - max(start_frame - max_frames, 0) + 1 if start_frame > 0 else 0
    return min(start_frame + max_frames, num_frames - 1) - start_frame + 1


def frames_after_start(max_frames: int | None, name: str = "max_frames") -> int | None:
    """`propagate_in_video`'s `max_frame_num_to_track` (the frames after the start frame) for at
    most `max_frames` frames per direction, the start frame included: what `samkit track
    --max-frames` and the web app's `max_frames` mean. None (to the end of the video) stays None.

    Raises:
        ValueError: `max_frames` < 1 (the message calls it `name`).
    """
    if max_frames is None:
        return None
    if max_frames < 1:
        raise ValueError(
            f"{name} must be >= 1 (frames per direction, the start frame included), "
            f"got {max_frames}"
        )
    return max_frames - 1


def start_frame_for(prompt_frames: Sequence[int], start_frame: int | None, reverse: bool) -> int:
    """The frame a pass starts from: `start_frame`, else the first prompted frame (the last one
    in reverse; `propagate_in_video` alone would start every pass at the first)."""
    if start_frame is not None:
        return start_frame
    return max(prompt_frames) if reverse else min(prompt_frames)


def object_scores(predictor: Any, state: Any, frame_idx: int, obj_ids: Sequence[int]) -> list:
    """The object score logit of each object on a tracked frame, None where not available
    (from the predictor's `get_object_scores`; all None for a predictor without it)."""
    getter = getattr(predictor, "get_object_scores", None)
    if not callable(getter):
        return [None] * len(obj_ids)
    got = getter(state, frame_idx)
    return [None if got.get(o) is None else float(got[o]) for o in obj_ids]


def track_video(
    predictor: Any,
    src: Any,
    prompts: Sequence[VideoPrompt],
    out: str | Path,
    *,
    start_frame: int | None = None,
    max_frames: int | None = None,
    direction: str = "forward",
    overlay: bool = True,
    fps: float | None = None,
    video_name: str = "video",
    progress: bool = True,
    finds: Sequence[ConceptPrompt] = (),
) -> dict[str, Any]:
    """Prompt, propagate and write the outputs (see the module docstring).

    Args:
        predictor: a `Sam2VideoPredictor` (official API) or a `ConceptTracker`.
        src: the `VideoFrames` of the video (`samkit.video.open_video`).
        prompts: from `samkit.video.track_prompts.resolve_prompts`.
        out: output folder.
        start_frame, max_frames: `propagate_in_video`'s `start_frame_idx` (None: the first
            prompted frame forward, the last one in reverse) and `max_frame_num_to_track`.
        direction: "forward", "reverse" or "both" (forward, then reverse).
        overlay: also write overlay.mp4.
        fps: overlay frame rate (default: the video's, else 24).
        video_name: the name in annotations.json.
        progress: print the progress line on stderr.
        finds: concepts to find first (a concept tracker: `predictor.finds_concepts`).

    Returns:
        A summary: frames tracked, objects, output paths, seconds (all of the tracking) and
        frames/s (of the propagation); with `finds` on a concept tracker, `best_score` (the
        best detection score any concept's detector saw, kept or not: `ConceptTracker.best_score`).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    out = Path(out)
    masks_dir = out / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(masks_dir)  # left by a killed run
    remove_stale_temporaries(out)

    t0 = time.perf_counter()
    state = predictor.init_state(src)
    n = int(state.num_frames)
    h, w = int(state.video_height), int(state.video_width)
    apply_finds(predictor, state, finds)
    apply_prompts(predictor, state, prompts)
    t1 = time.perf_counter()
    passes = {"forward": [False], "reverse": [True], "both": [False, True]}[direction]
    pframes = [p.frame for p in prompts] + [c.frame for c in finds]
    total = sum(frames_to_track(n, pframes, start_frame, max_frames, r) for r in passes)
    bar = Progress(total, "tracking", "frames", enabled=progress)
    names = [src.frame_name(i) for i in range(n)] if not src.is_live else None
    rec = VisRecorder(n, h, w, [f"{x}.jpg" for x in names] if names else None)
    written: dict[int, Path] = {}
    for reverse in passes:
        start = start_frame_for(pframes, start_frame, reverse)
        frames = predictor.propagate_in_video(
            state, start_frame_idx=start, max_frame_num_to_track=max_frames, reverse=reverse
        )
        while True:
            try:
                frame_idx, obj_ids, logits = next(frames)
            except StopIteration:
                break
            except ValueError as e:  # a frame that cannot be read: say what was written
                raise ValueError(f"{e}; {written_so_far(written, masks_dir)}") from None
            masks = (logits > 0).reshape(len(obj_ids), h, w).cpu().numpy()
            ids = [int(o) for o in obj_ids]
            name = names[frame_idx] if names else f"{frame_idx:05d}"
            written[frame_idx] = write_palette_png(masks_dir / f"{name}.png", label_map(masks, ids))
            rec.add(frame_idx, ids, masks, object_scores(predictor, state, frame_idx, ids))
            bar.update()
    bar.close()
    end = time.perf_counter()
    doc = vis_document(rec, state, video_name)
    atomic_write_bytes(out / "annotations.json", (json.dumps(doc) + "\n").encode())
    result: dict[str, Any] = {
        "frames": len(written),
        "objects": sorted({p.obj_id for p in prompts} | set(rec.tracks)),
        "masks": str(masks_dir),
        "annotations": str(out / "annotations.json"),
        "seconds": end - t0,  # init_state, prompts and propagation
        "frames_per_s": total / (end - t1) if end > t1 else 0.0,  # propagation only
    }
    best_of = getattr(predictor, "best_score", None)  # a concept tracker's (SAM 3)
    if finds and best_of is not None:
        result["best_score"] = best_of(state)
    if overlay:
        result["overlay"] = str(write_overlay(out / "overlay.mp4", src, written, prompts, fps))
    return result


def written_so_far(written: dict[int, Path], masks_dir: Path) -> str:
    """What a stopped `track_video` left: the frames whose mask PNGs were written."""
    if not written:
        return "no mask was written"
    t = sorted(written)
    span = f"frame {t[0]}" if len(t) == 1 else f"{len(t)} frames ({t[0]}..{t[-1]})"
    return (
        f"tracking stopped there: the masks of {span} are in {masks_dir}; annotations.json "
        "and overlay.mp4 were not written"
    )


def write_overlay(
    path: Path,
    src: Any,
    label_pngs: dict[int, Path],
    prompts: Sequence[VideoPrompt] = (),
    fps: float | None = None,
    progress: bool = False,
) -> Path:
    """overlay.mp4 of the tracked frames, in frame order, from the frames and the palette PNGs."""
    from samkit.video.overlay import Mp4Writer, render_overlay

    fps = fps or getattr(src, "fps", None) or 24.0
    by_frame: dict[int, list[VideoPrompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame, []).append(p)
    bar = Progress(len(label_pngs), "overlay", "frames", enabled=progress)
    with Mp4Writer(path, src.video_width, src.video_height, fps=fps) as mp4:
        for t in sorted(label_pngs):
            ps = by_frame.get(t, [])
            points = [(p.obj_id, x, y, lab) for p in ps for x, y, lab in p.points]
            boxes = [(p.obj_id, *p.box) for p in ps if p.box is not None]
            mp4.write(render_overlay(src.rgb(t), read_label_png(label_pngs[t]), points, boxes))
            bar.update()
    bar.close()
    return path
