"""The video mode's routes (`add_video_routes`), registered on the app by `create_app`.

API (JSON unless said; coordinates in video pixels; frames numbered from 0):
- `GET /api/videos`: whether video works with this model (`available`, `reason`) and the limits.
- `POST /api/videos?name=NAME`, body = the video file's bytes, or a multipart/form-data form
  with one file field (`curl -F file=@clip.mp4`; NAME defaults to its file name;
  `samkit.server.app_uploads`): decodes and checks it and returns `{video_id, num_frames, width,
  height, fps, ..., closed_sessions}`. 413 over the size limit; 400 for data that is not a
  decodable video, a single image (a still JPEG / PNG / ...: the image mode takes those; a clip
  of one frame cannot be tracked), or too many frames, seconds or pixels per frame. At most
  `max_sessions` videos are open (`samkit serve --max-video-sessions`): when all are, the least
  recently used one idle for `idle_s` seconds is closed for the new one and named in
  `closed_sessions` (`[{video_id, name, idle_s}]`; later requests for it get a 404 saying so), else
  503 with a Retry-After header and what to do (`samkit.server.video_manager`).
- `GET /api/videos/{id}`: the session (objects, prompts, tracked frames, tracking job); 404 if
  unknown. `DELETE` closes it.
- `GET /api/videos/{id}/frames/{t}`: frame t as JPEG (422 outside the video: a frame index
  outside the video is a 422 in every route, in the address or the body, `frame_or_422`; 404
  is for an unknown video or object id).
- `POST /api/videos/{id}/prompts`, body `{frame, obj_id, points, labels, box}`: sets that
  object's prompts on that frame (new object ids create objects); answers the frame's objects
  (`obj_id`, COCO RLE `segmentation`, `area`, `bbox`) and `message` (None, or why the object
  has no visible mask there: its object score < 0, and what to add). 422 for prompts that make
  no sense, 409 while tracking.
- `POST /api/videos/{id}/find`, body `{frame, text, box, threshold}` (a SAM 3 model:
  `finds_concepts` in the session): every instance of the phrase (and / or like the optional
  exemplar `box` [x0, y0, x1, y1], pixels, as `samkit track --exemplar`) found on that frame
  starts a track (a concept: its own category in annotations.json); answers `found` (the new
  object ids), the frame's objects, `threshold` (the detection threshold used) and `thresholds`
  (`detection`, `new_object`), `best_score` (the best detection score the concept's detector
  saw, kept or not; None when unknown) and, when nothing was found, `message` (what to try and
  how close the best candidate came). `threshold` (optional, a number in (0, 1), the image
  Find's range; default the server's, 0.5 / 0.7 official) is the concept's detection score
  threshold on every frame, as `samkit track --threshold`. Tracking then finds new instances on
  later frames too. 422 for an empty phrase (or one over `MAX_PHRASE_CHARS`), a frame outside
  the video or a threshold that is not a number in (0, 1), 409 on a model that cannot find
  phrases and while tracking. Clicks (`prompts`) refine found objects or start new ones as for SAM 2.
- `DELETE /api/videos/{id}/objects/{obj_id}`: removes an object (404 if unknown, 409 while
  tracking, as the other edits).
- `POST /api/videos/{id}/track`, body `{direction: forward|reverse|both, start_frame, max_frames}`:
  starts tracking in the background (202) from `start_frame` (default: the first prompted frame,
  the last one in reverse, as `samkit track`), at most `max_frames` frames per direction, the
  start frame included (as `samkit track --max-frames`; default: to the end; 422 below 1).
  `GET .../track?since=N`: progress (`status`, `done`, `total`, `frames_per_s`, `eta_s`) and the
  frames tracked after the first N (poll it to receive results as they come). `DELETE .../track`
  cancels.
- The JSON bodies (`samkit.server.video_bodies`) are read by `samkit.server.validation`: 415 for
  another Content-Type, 422 for a body that is not a JSON object (saying the object the route
  takes) or fields it refuses; prompt errors name the JSON fields (`points`, `labels`, `box`).
- `GET /api/videos/{id}/masks/{t}`: the objects on frame t in the latest results (422 outside
  the video).
- `GET /api/videos/{id}/download/masks.zip | annotations.json | overlay.mp4`: the `samkit track`
  outputs (palette PNGs, YouTube-VIS JSON, overlay video); 409 before any result.

A SAM 1 server (or a SAM 2 checkpoint without the memory modules, or a SAM 3 server started
without its video predictor) answers every route but the first with 400.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from samkit.build.registry import FAMILY_NAMES, family_names, get_family
from samkit.io.provenance import with_article
from samkit.modeling.sam2_video import Sam2Video
from samkit.server.app_uploads import read_upload
from samkit.server.sam3_find import MAX_PHRASE_CHARS, check_video_find_threshold
from samkit.server.validation import json_body_doc, parse_json_body
from samkit.server.video_bodies import (
    FindIn,
    TrackIn,
    VideoPromptIn,
    check_video_prompt,
    frame_or_422,
)
from samkit.server.video_manager import VideoManager, VideoSlotsFull
from samkit.server.video_session import VideoBusyError, VideoLimits, VideoSession
from samkit.video.predictor import Sam2VideoPredictor

_VID = re.compile(r"^[0-9a-f]{32}$")


def video_manager(
    model: Any, family: str, limits: VideoLimits, predictor: Any = None
) -> tuple[VideoManager | None, str]:
    """A manager on `predictor` (the server's video predictor, e.g. SAM 3's
    `samkit.video.track_concepts.ConceptTracker`) or on SAM 2's predictor of the server's model,
    or (None, why video is not available)."""
    if predictor is not None:
        return VideoManager(predictor, limits), ""
    if not get_family(family).has("video_predictor"):
        trackers = " or ".join(FAMILY_NAMES[f] for f in family_names("video_predictor"))
        return None, (
            f"video tracking needs {with_article(trackers)} model; this server runs "
            f"{with_article(FAMILY_NAMES.get(family, family))} model"
        )
    if get_family(family).has("concepts"):
        return None, (
            f"video tracking with {with_article(FAMILY_NAMES.get(family, family))} model needs its video "
            "predictor (the checkpoint's tracker): start samkit serve with the model's checkpoint"
        )
    if not isinstance(model, Sam2Video):
        return None, (
            "video tracking needs a SAM 2 checkpoint with the memory modules; this server's "
            "checkpoint has only the image model"
        )
    return VideoManager(Sam2VideoPredictor(model), limits), ""


def add_video_routes(
    app: FastAPI,
    model: Any,
    family: str,
    limits: VideoLimits | None = None,
    predictor: Any = None,
) -> VideoManager | None:
    """Register the video routes and `/static/video.js` on `app`; returns the manager (None
    without video support). The caller closes the manager at shutdown. `predictor`: the video
    predictor to use (default: SAM 2's on `model`)."""
    limits = limits or VideoLimits()
    manager, reason = video_manager(model, family, limits, predictor)
    app.state.video_available = {"available": manager is not None, "reason": reason or None}
    script = (resources.files("samkit.server") / "static" / "video.js").read_bytes()

    @app.get("/static/video.js", include_in_schema=False)
    async def video_js() -> Response:
        return Response(
            script,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    def need_manager() -> VideoManager:
        if manager is None:
            raise HTTPException(400, reason)
        return manager

    def session_or_404(video_id: str) -> VideoSession:
        m = need_manager()
        s = m.get(video_id) if _VID.match(video_id) else None
        if s is None:
            why = m.why_closed(video_id) or "it may have been closed"
            raise HTTPException(
                404, f"unknown video id {video_id[:80]!r}: open the video again ({why})"
            )
        return s

    async def job(fn: Any, *args: Any) -> Any:
        m = need_manager()
        try:
            return await asyncio.wrap_future(m.submit(fn, *args))
        except VideoBusyError as e:
            raise HTTPException(409, str(e)) from None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/api/videos")
    async def video_info() -> dict[str, Any]:
        return {
            "available": manager is not None,
            "reason": reason or None,
            "limits": {
                "max_bytes": limits.max_bytes,
                "max_frames": limits.max_frames,
                "max_seconds": limits.max_seconds,
                "max_pixels": limits.max_pixels,
                "max_sessions": limits.max_sessions,
                "idle_s": limits.idle_s,
            },
            "sessions": None if manager is None else manager.stats(),
        }

    @app.post("/api/videos")
    async def open_video(request: Request, name: str = Query("", max_length=200)) -> Any:
        m = need_manager()
        upload = await read_upload(request, limits.max_bytes, "video", "clip.mp4")
        name = name or (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1][:200]
        try:
            closed = m.reserve()
        except VideoSlotsFull as e:
            retry = {"Retry-After": str(round(e.retry_after_s))}
            raise HTTPException(503, str(e), headers=retry) from None
        try:
            s = await asyncio.wrap_future(m.submit(m.open, upload.data, name))
        except ValueError as e:
            why = str(e).replace("<video bytes>: ", "")
            raise HTTPException(400, f"{name}: {why}" if name else why) from None
        finally:
            m.release()
        return {**s.info(), "closed_sessions": closed}

    @app.get("/api/videos/{video_id}")
    async def session_info(video_id: str) -> dict[str, Any]:
        return session_or_404(video_id).info()

    @app.delete("/api/videos/{video_id}")
    async def close_session(video_id: str) -> dict[str, Any]:
        session_or_404(video_id)
        need_manager().remove(video_id)
        return {"closed": video_id}

    @app.get("/api/videos/{video_id}/frames/{t}")
    async def frame_jpeg(video_id: str, t: int) -> Response:
        s = session_or_404(video_id)
        return Response(s.jpegs[frame_or_422(s, t)], media_type="image/jpeg")

    @app.post("/api/videos/{video_id}/prompts", openapi_extra=json_body_doc(VideoPromptIn))
    async def add_prompt(video_id: str, request: Request) -> dict[str, Any]:
        s = session_or_404(video_id)
        p = await parse_json_body(request, VideoPromptIn)
        check_video_prompt(p, s)
        if s.tracking:
            raise HTTPException(409, "the video is being tracked: wait for it or cancel it")
        out = await job(s.add_prompt, p.frame, p.obj_id, list(p.points), list(p.labels), p.box)
        return {**out, "objects_in_video": s.obj_ids}

    @app.post("/api/videos/{video_id}/find", openapi_extra=json_body_doc(FindIn))
    async def find(video_id: str, request: Request) -> dict[str, Any]:
        s = session_or_404(video_id)
        if not s.finds_concepts:
            raise HTTPException(
                409, "this model tracks the objects you click: finding a phrase needs a SAM 3 model"
            )
        body = await parse_json_body(request, FindIn)
        text = body.text.strip()
        if not text and body.box is None:
            raise HTTPException(
                422,
                "empty text: give a noun phrase to find, e.g. 'person', and / or an exemplar "
                "box [x0, y0, x1, y1]",
            )
        if len(text) > MAX_PHRASE_CHARS:
            raise HTTPException(
                422, f"the phrase has {len(text)} characters; the limit is {MAX_PHRASE_CHARS}"
            )
        frame_or_422(s, body.frame)
        try:  # the image Find's rule and words (a field, its value, the range and why)
            threshold = check_video_find_threshold(body.threshold)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if s.tracking:
            raise HTTPException(409, "the video is being tracked: wait for it or cancel it")
        out = await job(s.find, body.frame, text, threshold, body.box)
        return {**out, "objects_in_video": s.obj_ids}

    @app.delete("/api/videos/{video_id}/objects/{obj_id}")
    async def remove_object(video_id: str, obj_id: int) -> dict[str, Any]:
        s = session_or_404(video_id)
        if obj_id not in s.obj_ids:
            raise HTTPException(404, f"unknown object {obj_id}: the video has objects {s.obj_ids}")
        if s.tracking:  # now, not when the queued job starts
            raise HTTPException(409, "the video is being tracked: wait for it or cancel it")
        await job(s.remove_object, obj_id)
        return {"objects": s.obj_ids}

    @app.post("/api/videos/{video_id}/track", status_code=202, openapi_extra=json_body_doc(TrackIn))
    async def track(video_id: str, request: Request) -> dict[str, Any]:
        s = session_or_404(video_id)
        body = await parse_json_body(request, TrackIn)
        try:
            s.start_track(body.start_frame, body.max_frames, body.direction)
        except VideoBusyError as e:
            raise HTTPException(409, str(e)) from None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        need_manager().submit(s.track)
        return s.job.summary()

    @app.get("/api/videos/{video_id}/track")
    async def track_status(video_id: str, since: int = Query(0, ge=0)) -> dict[str, Any]:
        s = session_or_404(video_id)
        if s.job is None:
            raise HTTPException(404, "no tracking run yet: POST to this address to start one")
        return s.job.summary(since)

    @app.delete("/api/videos/{video_id}/track")
    async def cancel_track(video_id: str) -> dict[str, Any]:
        s = session_or_404(video_id)
        if s.tracking:
            s.job.cancel = True
        return {"status": None if s.job is None else s.job.status}

    @app.get("/api/videos/{video_id}/masks/{t}")
    async def frame_masks(video_id: str, t: int) -> dict[str, Any]:
        s = session_or_404(video_id)
        frame_or_422(s, t)
        return {"frame": t, "has_result": t in s.results, "objects": s.frame_result(t)}

    def need_results(s: VideoSession) -> None:
        if not s.results:
            raise HTTPException(409, "no results yet: add a prompt and track first")
        if s.tracking:
            raise HTTPException(409, "the video is being tracked: download when it is done")

    def attachment(data: bytes, media: str, s: VideoSession, suffix: str) -> Response:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", s.name.rsplit(".", 1)[0]) or "video"
        return Response(
            data,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{stem}{suffix}"'},
        )

    @app.get("/api/videos/{video_id}/download/masks.zip")
    async def download_zip(video_id: str) -> Response:
        s = session_or_404(video_id)
        need_results(s)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for t in sorted(s.results):
                z.write(s.results[t], f"masks/{t:05d}.png")
        return attachment(buf.getvalue(), "application/zip", s, "_masks.zip")

    @app.get("/api/videos/{video_id}/download/annotations.json")
    async def download_json(video_id: str) -> Response:
        s = session_or_404(video_id)
        need_results(s)
        doc = s.document()
        return attachment(json.dumps(doc).encode(), "application/json", s, "_annotations.json")

    @app.get("/api/videos/{video_id}/download/overlay.mp4")
    async def download_mp4(video_id: str) -> Response:
        s = session_or_404(video_id)
        need_results(s)
        path = await job(s.overlay_mp4)
        return attachment(path.read_bytes(), "video/mp4", s, "_overlay.mp4")

    return manager
