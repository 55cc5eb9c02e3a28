"""The JSON bodies of the video mode's routes (`samkit.server.video_routes`), with the shape each
error about a whole body quotes (`JSON_SHAPE`, `samkit.server.validation.body_shape`), and the
checks of a prompt against its video: every message names the request's JSON fields."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from samkit.server.validation import check_json_prompt
from samkit.server.video_session import VideoSession

MAX_POINTS = 64


class VideoPromptIn(BaseModel):
    """`POST /api/videos/{id}/prompts`: an object's clicks and box on one frame."""

    model_config = ConfigDict(extra="forbid")
    JSON_SHAPE: ClassVar[str] = (
        '{"frame": int, "obj_id": 1..255, "points": [[x, y], ...], "labels": [1 | 0, ...] '
        '(one per point), "box": [x0, y0, x1, y1] | null} (points + labels, a box, or both)'
    )
    frame: int
    obj_id: int
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=MAX_POINTS)
    labels: list[int] = Field(default_factory=list, max_length=MAX_POINTS)
    box: tuple[float, float, float, float] | None = None


class FindIn(BaseModel):
    """`POST /api/videos/{id}/find`: a phrase and / or an exemplar box to find on one frame
    (SAM 3: `samkit.video.track_concepts.ConceptTracker.find`, as `samkit track --exemplar`)."""

    model_config = ConfigDict(extra="forbid")
    JSON_SHAPE: ClassVar[str] = (
        '{"frame": int, "text": "a noun phrase", "box": [x0, y0, x1, y1] | null (optional: an '
        'exemplar of the concept, pixels), "threshold": number in (0, 1) exclusive (optional)} '
        "(a text, a box, or both)"
    )
    FIELD_SYNONYMS: ClassVar[dict[str, str]] = {
        "phrase": "text",
        "prompt": "text",
        "exemplar": "box",
    }
    frame: int
    text: str = ""
    box: tuple[float, float, float, float] | None = None
    threshold: Any = None  # checked by check_video_find_threshold (a reason, not pydantic's)


class TrackIn(BaseModel):
    """`POST /api/videos/{id}/track`: which way and how far to track (every field optional)."""

    model_config = ConfigDict(extra="forbid")
    JSON_SHAPE: ClassVar[str] = (
        '{"direction": "forward" | "reverse" | "both", "start_frame": int | null, '
        '"max_frames": int >= 1 | null} (every field optional: {} tracks forward from the first '
        "prompted frame)"
    )
    direction: str = "forward"
    start_frame: int | None = None
    max_frames: int | None = None  # >= 1, checked by VideoSession.start_track


def frame_or_422(s: VideoSession, t: int, name: str = "frame") -> int:
    """`t` when it is a frame of the video, else 422, in every video route: the body's `frame`
    (prompts, find), `start_frame` (track) and the `{t}` of a frame's address (frames, masks).

    The video exists (an unknown video id is a 404); an index outside it is a bad value of a
    request parameter, which FastAPI answers with 422 (a `{t}` that is not an int, a body
    field of the wrong type), as the image routes answer a point outside the image.

    Raises:
        HTTPException: 422 naming `name`, the value and the video's frames.
    """
    if not 0 <= t < s.num_frames:
        raise HTTPException(422, f"{name} {t} is outside the video (frames 0..{s.num_frames - 1})")
    return t


def check_video_prompt(p: VideoPromptIn, s: VideoSession) -> None:
    """422 naming the problem (and the JSON field) for prompts that parse but make no sense for
    this video: a frame outside it, an object id outside 1..255 or removed, points / box outside
    the frame, labels not one 1 / 0 per point (`check_json_prompt`)."""
    frame_or_422(s, p.frame)
    if not 1 <= p.obj_id <= 255:
        raise HTTPException(422, f"obj_id {p.obj_id}: object ids are 1..255")
    if p.obj_id in s.removed:
        raise HTTPException(422, f"obj_id {p.obj_id} was removed: use a new object id")
    check_json_prompt(p.points, p.labels, p.box, refuse_outside=(s.width, s.height))
