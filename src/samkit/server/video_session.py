"""The model side of the web app's video mode: one `VideoSession` per uploaded clip.

A session holds the clip (its bytes, decoded lazily by `samkit.video.frames.pyav.FileFrames`, plus one
JPEG per frame for the page), the video predictor's `InferenceSession` with the user's prompts,
and the latest results in the `samkit track` formats: palette PNGs `masks/<frame>.png` in a
per-session temporary folder and a `VisRecorder` (YouTube-VIS JSON).
`samkit.server.video_manager` keeps the sessions and runs their torch jobs.

Tracking runs as a background job: `VideoSession.job` counts frames and lists them in the order
they were tracked, so that a client polling it receives the results while they arrive.
"""

from __future__ import annotations

import io
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samkit.server.sam3_find import video_find_message
from samkit.server.video_answers import (
    find_thresholds,
    hidden_object_message,
    not_video_message,
    refuse_still_image,
)
from samkit.server.video_progress import TrackJob
from samkit.video.formats import VisRecorder, label_map, read_label_png, write_palette_png
from samkit.video.frames.pyav import FileFrames
from samkit.video.session import InferenceSession
from samkit.video.track import (
    DIRECTIONS,
    frames_after_start,
    frames_to_track,
    object_scores,
    start_frame_for,
    vis_document,
    write_overlay,
)
from samkit.video.track_prompts import VideoPrompt


@dataclass(frozen=True)
class VideoLimits:
    """What the video mode accepts. Larger uploads get 413, longer / larger clips 400.

    At most `max_sessions` videos are open at once; when all are open, the least recently used
    one that has been idle for `idle_s` seconds (and is not tracking) is closed for a new one,
    else the new one is refused with 503 (`samkit.server.video_manager`).
    """

    max_bytes: int = 64 * 2**20
    max_frames: int = 600
    max_seconds: float = 60.0
    max_pixels: int = 1920 * 1080
    max_sessions: int = 4
    idle_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_frames", "max_seconds", "max_pixels", "max_sessions"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VideoLimits.{name} must be positive, got {getattr(self, name)}")
        if not self.idle_s >= 0:
            raise ValueError(f"VideoLimits.idle_s must be >= 0 seconds, got {self.idle_s}")


class VideoBusyError(RuntimeError):
    """The session is tracking: prompts, removals and another track must wait (HTTP 409)."""


class VideoSession:
    """One clip: frames, predictor state, prompts and results (see the module docstring)."""

    def __init__(self, predictor: Any, data: bytes, name: str, limits: VideoLimits, root: Path):
        self.id = secrets.token_hex(16)
        self.name = name or f"upload-{self.id[:8]}"  # names the downloads
        self.predictor = predictor
        refuse_still_image(data)
        try:
            frames = FileFrames(data, predictor.image_size, cache_frames=4)
        except ValueError as e:  # a zip, a JSON body, text, ...: not PyAV's text alone
            raise ValueError(not_video_message(str(e))) from None
        try:
            n, h, w = len(frames), int(frames.video_height), int(frames.video_width)
            fps = frames.fps
            if w * h > limits.max_pixels:
                raise ValueError(
                    f"the video is {w}x{h} = {w * h:,} pixels per frame, over the limit of "
                    f"{limits.max_pixels:,}: scale it down first"
                )
            if n > limits.max_frames:
                raise ValueError(
                    f"the video has {n} frames, over the limit of {limits.max_frames}: cut it"
                )
            if fps and n / fps > limits.max_seconds:
                raise ValueError(
                    f"the video lasts {n / fps:.1f} s, over the limit of {limits.max_seconds:g} s"
                )
            self.jpegs = [_jpeg(frames.rgb(t)) for t in range(n)]  # every frame must decode
        except BaseException:
            frames.close()
            raise
        self.frames = frames
        self.num_frames, self.height, self.width, self.fps = n, h, w, fps
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.id[:8]}-", dir=root))
        self.masks_dir = self.dir / "masks"
        self.state: InferenceSession = predictor.init_state(frames)
        self.prompts: dict[tuple[int, int], VideoPrompt] = {}
        self.finds: list[dict[str, Any]] = []  # concepts found (SAM 3): frame, text, objects
        self.found: set[int] = set()  # objects a find or tracking started (not clicked)
        self.removed: set[int] = set()
        self.recorder = VisRecorder(n, h, w)
        self.results: dict[int, Path] = {}
        self.version = 0  # bumped whenever results change (the overlay MP4 is rebuilt then)
        self.overlay: tuple[int, Path] | None = None
        self.job: TrackJob | None = None
        self.last_used = time.monotonic()
        self._rlock = threading.Lock()  # results: written by the job thread, read by routes
        self._close_after = False

    # ------------------------------------------------------------------ info
    @property
    def tracking(self) -> bool:
        return self.job is not None and self.job.status == "running"

    @property
    def finds_concepts(self) -> bool:
        """Whether the model finds every instance of a phrase (the Find box; SAM 3)."""
        return bool(getattr(self.predictor, "finds_concepts", False))

    @property
    def obj_ids(self) -> list[int]:
        clicked = {o for _, o in list(self.prompts)}  # list(): the job thread may add one
        return sorted((clicked | set(self.found)) - self.removed)

    def info(self) -> dict[str, Any]:
        used = set(self.obj_ids) | self.removed
        return {
            "video_id": self.id,
            "name": self.name,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "objects": self.obj_ids,
            "next_obj_id": max(used, default=0) + 1,
            "finds_concepts": self.finds_concepts,
            "concepts": list(self.finds),
            "prompts": [
                {"frame": p.frame, "obj_id": p.obj_id, "points": p.points, "box": p.box}
                for p in sorted(list(self.prompts.values()), key=lambda p: (p.frame, p.obj_id))
            ],
            "tracked_frames": sorted(self.results),
            "track": None if self.job is None else self.job.summary(len(self.job.order)),
        }

    def frame_result(self, t: int) -> list[dict[str, Any]]:
        """The objects on frame t of the latest results: COCO RLE, area, XYWH box, score."""
        out = []
        with self._rlock:
            for oid in sorted(self.recorder.tracks):
                rec = self.recorder.tracks[oid].get(t)
                if rec is None:
                    continue
                score = self.recorder.scores.get(oid, {}).get(t)
                out.append(
                    {
                        "obj_id": oid,
                        "segmentation": rec[0],
                        "area": rec[1],
                        "bbox": rec[2],
                        "score": score,
                    }
                )
        return out

    def document(self) -> dict[str, Any]:
        """The YouTube-VIS style document of the latest results."""
        with self._rlock:
            return vis_document(self.recorder, self.state, self.name)

    # ------------------------------------------------------------------ jobs (job thread)
    def _store(self, t: int, obj_ids: list, logits: torch.Tensor) -> None:
        ids = [int(o) for o in obj_ids]
        masks = (logits > 0).reshape(len(ids), self.height, self.width).cpu().numpy()
        scores = object_scores(self.predictor, self.state, t, ids)
        path = write_palette_png(self.masks_dir / f"{t:05d}.png", label_map(masks, ids))
        if self.finds_concepts:
            self.found.update(ids)
        with self._rlock:
            self.results[t] = path
            for oid in list(self.recorder.tracks):  # objects no longer in the state
                if oid not in ids:
                    self.recorder.tracks[oid].pop(t, None)
            self.recorder.add(t, ids, masks, scores)
            self.version += 1

    def add_prompt(
        self,
        frame: int,
        obj_id: int,
        points: list[tuple[float, float]],
        labels: list[int],
        box: tuple[float, float, float, float] | None,
    ) -> dict[str, Any]:
        """Set an object's prompts on a frame (replacing earlier ones there); that frame's result.

        Raises:
            ValueError: from the predictor (frame outside the video, a removed object id, ...).
        """
        if self.tracking:
            raise VideoBusyError("the video is being tracked: wait for it or cancel it")
        _, ids, logits = self.predictor.add_new_points_or_box(
            self.state,
            frame,
            obj_id,
            points=np.asarray(points, np.float32) if points else None,
            labels=np.asarray(labels, np.int32) if points else None,
            box=None if box is None else np.asarray(box, np.float32),
        )
        pts = [(float(x), float(y), int(lab)) for (x, y), lab in zip(points, labels)]
        self.prompts[(frame, obj_id)] = VideoPrompt(frame, obj_id, pts, box)
        self._store(frame, ids, logits)
        objects = self.frame_result(frame)
        message = None
        if all(o["obj_id"] != obj_id for o in objects):  # hidden: the click shows nothing
            score = self.recorder.scores.get(obj_id, {}).get(frame)
            message = hidden_object_message(obj_id, frame, score, not self.finds_concepts)
        return {"frame": frame, "objects": objects, "message": message}

    def find(
        self,
        frame: int,
        text: str,
        threshold: float | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> dict[str, Any]:
        """Start a track for every instance of the phrase (and / or like the exemplar `box`,
        XYXY pixels; `text` "" for a box alone) on the frame (a concept tracker's `find`, at
        detection score `threshold`; None: the predictor's); that frame's objects, the ids the
        find started, the `thresholds` used (`threshold`: the detection one), `best_score`
        (the best detection score of the find, kept or not; None when unknown) and, when it
        started none, a `message` saying what to try and how close the best candidate came.

        Raises:
            ValueError: a model that cannot find phrases, an empty phrase, a frame outside the
                video, a threshold not in (0, 1).  VideoBusyError: while tracking.
        """
        if self.tracking:
            raise VideoBusyError("the video is being tracked: wait for it or cancel it")
        if not self.finds_concepts:
            raise ValueError(
                "this model tracks the objects you click; finding a phrase needs SAM 3"
            )
        _, ids, masks = self.predictor.find(
            self.state, frame, text or None, box=box, threshold=threshold
        )
        before = set(self.found)
        self._store(frame, ids, masks)
        new = sorted(set(self.found) - before)
        self.finds.append({"frame": frame, "text": text, "objects": new})
        if box is not None:  # an exemplar box (kept out of text-only finds' records)
            self.finds[-1]["box"] = list(box)
        used = find_thresholds(self.predictor, threshold)
        best_of = getattr(self.predictor, "best_score", None)  # a ConceptTracker's
        best = None if best_of is None else best_of(self.state, -1)
        message = (
            None if new else video_find_message(text or "the box", frame, threshold, used, best)
        )
        return {
            "frame": frame,
            "text": text,
            "box": box,
            "found": new,
            "threshold": used["detection"],
            "thresholds": used,
            "best_score": best,
            "message": message,
            "objects": self.frame_result(frame),
        }

    def remove_object(self, obj_id: int) -> None:
        """Drop an object: its prompts, its results on every frame."""
        if self.tracking:
            raise VideoBusyError("the video is being tracked: wait for it or cancel it")
        self.predictor.remove_object(self.state, obj_id, strict=True, need_output=False)
        self.prompts = {k: p for k, p in self.prompts.items() if k[1] != obj_id}
        self.found.discard(obj_id)
        self.removed.add(obj_id)
        with self._rlock:
            self.recorder.tracks.pop(obj_id, None)
            self.recorder.scores.pop(obj_id, None)
            for path in self.results.values():
                labels = read_label_png(path)
                labels[labels == obj_id] = 0
                write_palette_png(path, labels)
            self.version += 1

    def start_track(self, start_frame: int | None, max_frames: int | None, direction: str) -> None:
        """Check the request and create the job (run it with `track`), as `samkit track`: every
        pass starts at `start_frame` (None: the first prompted frame, the last one in reverse)
        and tracks at most `max_frames` >= 1 frames, the start frame included (None: to the end).
        `direction`: "forward", "reverse" or "both". Raises VideoBusyError or ValueError."""
        if self.tracking:
            raise VideoBusyError("the video is already being tracked")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
        if not self.prompts and not self.finds:
            raise ValueError("no prompts yet: click an object on some frame first")
        if start_frame is not None and not 0 <= start_frame < self.num_frames:
            raise ValueError(
                f"start_frame {start_frame} is outside the video (frames 0..{self.num_frames - 1})"
            )
        count = frames_after_start(max_frames)
        pframes = [t for t, _ in self.prompts] + [f["frame"] for f in self.finds]
        passes = {"forward": [False], "reverse": [True], "both": [False, True]}[direction]
        # (reverse, start frame) of each pass: as `samkit track`, reverse from the last prompt
        self._passes = [(r, start_frame_for(pframes, start_frame, r)) for r in passes]
        self._count = count
        expected = [
            ("reverse" if r else "forward", frames_to_track(self.num_frames, pframes, s, count, r))
            for r, s in self._passes
        ]
        self.job = TrackJob(expected, direction)

    def track(self) -> None:
        """Run the job made by `start_track`: propagate and store every frame as it comes."""
        job = self.job
        assert job is not None
        try:
            with self._rlock:  # the results are those of this run
                for t in list(self.results):
                    self.results.pop(t).unlink(missing_ok=True)
                self.recorder = VisRecorder(self.num_frames, self.height, self.width)
            for i, (reverse, start) in enumerate(self._passes):
                job.start_pass(i)
                for t, ids, logits in self.predictor.propagate_in_video(
                    self.state,
                    start_frame_idx=start,
                    max_frame_num_to_track=self._count,
                    reverse=reverse,
                ):
                    self._store(t, ids, logits)
                    job.add(t)
                    if job.cancel:
                        job.finish("cancelled")
                        return
            job.finish("done")
        except Exception as e:  # reported to the client through the job
            job.finish("error", f"{type(e).__name__}: {e}")
        finally:
            self.version += 1
            if self._close_after:
                self._release()

    def overlay_mp4(self) -> Path:
        """overlay.mp4 of the current results (rebuilt only when they changed)."""
        if self.overlay is not None and self.overlay[0] == self.version:
            return self.overlay[1]
        version = self.version
        path = write_overlay(
            self.dir / "overlay.mp4",
            self.frames,
            dict(self.results),
            list(self.prompts.values()),
            self.fps,
        )
        self.overlay = (version, path)
        return path

    def close(self) -> None:
        """Free the session (after its tracking job stopped, when one runs)."""
        if self.tracking:
            self._close_after = True
            self.job.cancel = True
            if self.tracking:  # else the job ended meanwhile and may have missed the flag
                return
        self._release()

    def _release(self) -> None:
        close_state = getattr(self.predictor, "close_state", None)
        if callable(close_state):  # a concept tracker's sessions hold the frames
            close_state(self.state)
        self.frames.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()
