"""What the video mode's answers say beyond masks (`samkit.server.video_session`): why a click left
no visible mask, which detection thresholds a find used, and why an upload is not a video."""

from __future__ import annotations

import io
import re
from typing import Any

from PIL import Image


def hidden_object_message(
    obj_id: int, frame: int, score: float | None, takes_boxes: bool = True
) -> str:
    """What to do when object `obj_id` has no visible mask on `frame` after a click.

    Args:
        score: the object score logit on that frame (the model shows the object when >= 0);
            None when the predictor does not report it.
        takes_boxes: whether the model takes a box for one object (SAM 2; not SAM 3, whose boxes
            are concept exemplars for Find).
    """
    fix = "add a positive click inside it" + (" or a box" if takes_boxes else "")
    if score is not None and score < 0:
        return (
            f"object {obj_id} is not visible on frame {frame} (object score {score:.3f} < 0): {fix}"
        )
    return f"object {obj_id} has an empty mask on frame {frame}: {fix}"


def find_thresholds(predictor: Any, threshold: float | None) -> dict[str, float | None]:
    """The detection thresholds a find runs at: `detection` (a detection's score to count) and
    `new_object` (to start a track), both `threshold` when given, else the predictor's settings
    (a `ConceptTracker` on a `Sam3VideoPredictor`: `score_threshold_detection`, official 0.5,
    and `new_det_thresh`, official 0.7); None for a predictor that does not say."""
    if threshold is not None:
        return {"detection": threshold, "new_object": threshold}
    settings = getattr(getattr(predictor, "predictor", None), "settings", None)
    det = getattr(settings, "score_threshold_detection", None)
    new = getattr(settings, "new_det_thresh", None)
    return {
        "detection": None if det is None else float(det),
        "new_object": None if new is None else float(new),
    }


def not_video_message(detail: str) -> str:
    """The refusal of an upload FFmpeg cannot read as a video (a zip, a JSON body, text, ...)
    from `samkit.video.frames.pyav.FileFrames`' ValueError text `detail`: PyAV's own words kept
    short; other refusals (a truncated file, ...) are returned as they are."""
    for mark in (": not a decodable video file", ": the file has no video stream"):
        if mark in detail:
            short = detail.split(mark, 1)[1].strip(" ()").replace(": '<none>'", "")
            short = re.sub(r"\[Errno -?\d+\]\s*", "", short)[:60] or mark[2:]
            return (
                f"not a decodable video file ({short}): send the video file's bytes (.mp4, "
                ".mov, .webm, an animated GIF, ...) as the body, or a multipart form with one "
                "file field (curl -F file=@clip.mp4)"
            )
    return detail


def refuse_still_image(data: bytes) -> None:
    """ValueError for a still image uploaded as a video: FFmpeg would decode a JPEG / PNG as a
    clip of one frame, which cannot be tracked (the image mode segments single images, and
    `samkit track` refuses image files the same way). Animated GIF / WebP / PNG stay videos."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            kind, frames = f"{im.format} " if im.format else "", int(getattr(im, "n_frames", 1))
    except Exception:  # not an image Pillow reads: a video file, or data FileFrames refuses
        return
    if frames <= 1:
        raise ValueError(
            f"a single {kind}image, not a video: the video mode takes a video file (.mp4, .mov, "
            ".webm, an animated GIF, ...); segment one image in the image mode (POST "
            "/api/images), or track a folder of frames with `samkit track FOLDER`"
        )
