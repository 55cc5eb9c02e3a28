"""The FastAPI app of `samkit serve`: a static page and a small JSON API.

API (all JSON; coordinates in original-image pixels):
- `POST /api/images`, body = the image file's bytes (or a multipart form with one file field,
  `samkit.server.app_uploads`): encodes it (once per distinct file) and
  returns `{image_id, width, height, cached, encode_ms}`. 413 over the size limit, 400 for data
  that is not an image or has too many pixels.
- `GET /api/images/{image_id}`: the image's size, 404 if unknown (never uploaded, or evicted).
- `POST /api/images/{image_id}/predict`, body `{points: [[x, y], ...], labels: [1|0, ...],
  box: [x0, y0, x1, y1] | null, multimask: bool, png: bool}`: the candidate masks with `score`,
  `area`, `bbox` (XYWH), `segmentation` (COCO RLE) and optionally `png` (base64). 422 with the
  reason for malformed prompts, naming the JSON fields.
  Both POST routes answer 404 for an unknown id whatever the body, then 413 / 415 / 422 for a bad
  body (`samkit.server.validation`); no error answer echoes the input.
- `POST /api/images/{image_id}/everything`, body: generator settings
  (`samkit.server.everything.EverythingIn`; the defaults are `samkit auto`'s): COCO annotations,
  `filter_counts`, and when no mask was kept `message` (naming the page's fields) and
  `message_api` (naming the settings as sent).
- `POST /api/images/{image_id}/find`, body `{text, threshold}`: every instance of a phrase (SAM 3
  models; 409 on others), listed in `samkit.server.sam3_find`.
- `GET /api/info`: model, family, `video` (whether the video mode works here, and why not),
  `find` and `everything` (the same for the Find box and "segment everything"),
  limits, and the page's "segment everything" fields with their defaults (`everything_settings`).
- `GET /api/stats`: cache statistics.
- `GET /docs` (Swagger UI, its files served by the app: it works offline, `samkit.server.docs`)
  and `GET /openapi.json`: every route with its JSON body's schema.
- `/api/videos...`: the video mode (SAM 2 models), listed in `samkit.server.video_routes`.

Static files are read once from the package when the app is created; no path taken from a request
is ever opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from samkit.build.registry import FAMILY_NAMES, family_names, family_of, get_family
from samkit.io.masks import ImageDecodeError
from samkit.io.provenance import with_article
from samkit.predict.inputs import click_label
from samkit.predict.prompt_bounds import prompt_warnings
from samkit.server.app_uploads import read_upload
from samkit.server.docs import add_docs_route
from samkit.server.engine import Engine, Entry
from samkit.server.everything import EverythingIn, settings_for_page
from samkit.server.sam3_find import add_find_route
from samkit.server.validation import (
    check_json_prompt,
    install_error_handlers,
    json_body_doc,
    parse_json_body,
)
from samkit.server.video_routes import add_video_routes

_ID = re.compile(r"^[0-9a-f]{64}$")
MAX_POINTS = 64
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/find.js": ("find.js", "text/javascript; charset=utf-8"),
}


ClickLabel = Annotated[int, AfterValidator(click_label)]  # 1 / 0 (the predictors' message)


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=MAX_POINTS)
    labels: list[ClickLabel] = Field(default_factory=list, max_length=MAX_POINTS)
    box: tuple[float, float, float, float] | None = None
    multimask: bool = True
    png: bool = False


def _prompt_warnings(p: PromptIn, entry: Entry) -> list[str]:
    """Warnings for prompts outside the image (valid input for the model: used as given).

    Prompts that make no sense (no prompt, labels not one per point, x1 < x0, ...) get a 422
    from `samkit.server.validation.check_json_prompt` (the predictors' rules, named as the
    request's JSON fields) before the predictor runs.
    """
    h, w = entry.original_size
    return prompt_warnings(p.points, [p.box] if p.box is not None else None, h, w)


def _no_everything(family: str) -> str | None:
    """Why "segment everything" is not available for `family` (None when it is: the family has
    an automatic mask generator in `samkit.build.registry`)."""
    fam = get_family(family)
    if fam.has("amg_generator"):
        return None
    takers = " or ".join(FAMILY_NAMES[f] for f in family_names("amg_generator"))
    instead = (
        f"; with {fam.display}, name what to find (the Find box, POST /api/images/{{id}}/find)"
        if fam.has("concepts")
        else ""
    )
    return f"segment everything needs {with_article(takers)} model{instead}"


def create_app(
    loaded: Any,
    *,
    cache_bytes: int = 1 << 30,
    max_upload_bytes: int = 32 * 2**20,
    max_pixels: int = 40_000_000,
    stretch: Any = None,
    video_limits: Any = None,
    video_predictor: Any = None,
) -> FastAPI:
    """Build the app.

    Args:
        loaded: a `samkit.cli.LoadedModel` (or anything with `.model`, `.family`, `.name`,
            `.random_weights`), or a bare SAM 1, SAM 2 or SAM 3 model.
        cache_bytes: bound of the embedding cache, in bytes.
        max_upload_bytes: larger uploads get 413.
        max_pixels: images with more pixels get 400 (decompression-bomb protection).
        stretch: uploads' percentile stretch (`samkit.io.images.decode_image`); None: 16-bit
            images are reduced by `>> 8`, float ones must lie in [0, 1].
        video_limits: a `samkit.server.video_session.VideoLimits` for the video mode (default
            limits when None); `samkit.server.video_routes` lists its routes.
        video_predictor: the video mode's predictor (default: SAM 2's on the model; a SAM 3
            server passes its `ConceptTracker`, whose `model` is then `loaded`'s).
    """
    model = getattr(loaded, "model", loaded)
    family = getattr(loaded, "family", None) or family_of(model).name  # a bare model says it
    if max_upload_bytes <= 0 or max_pixels <= 0:
        raise ValueError("max_upload_bytes and max_pixels must be positive")
    engine = Engine(model, cache_bytes, max_pixels, max_upload_bytes, family, stretch=stretch)
    info = {
        "model": str(getattr(loaded, "name", type(model).__name__)),
        "family": family,
        "random_weights": bool(getattr(loaded, "random_weights", False)),
        "img_size": int(model.image_size),
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": engine.max_pixels,
        "cache_bytes": cache_bytes,
        "everything_settings": [] if _no_everything(family) else settings_for_page(family),
        "everything": {"available": not _no_everything(family), "reason": _no_everything(family)},
    }
    static = {
        route: ((resources.files("samkit.server") / "static" / name).read_bytes(), ctype)
        for route, (name, ctype) in _STATIC.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()
        if app.state.video is not None:
            app.state.video.close()

    # /docs (Swagger UI from the app's own routes: `add_docs_route`) and /openapi.json: every
    # route with its JSON body (`json_body_doc`)
    app = FastAPI(title="samkit", docs_url=None, redoc_url=None, lifespan=lifespan)
    add_docs_route(app)
    app.state.engine = engine
    install_error_handlers(app)
    app.state.video = add_video_routes(app, model, family, video_limits, video_predictor)
    info["video"] = app.state.video_available  # {available, reason}: the page's Video mode

    def static_route(route: str) -> Any:
        body, ctype = static[route]

        async def serve() -> Response:
            return Response(body, media_type=ctype, headers={"Cache-Control": "no-cache"})

        return serve

    for route in static:
        app.add_api_route(route, static_route(route), methods=["GET"], include_in_schema=False)

    def entry_or_404(image_id: str) -> Entry:
        entry = engine.get(image_id) if _ID.match(image_id) else None
        if entry is None:
            raise HTTPException(
                404,
                f"unknown image id {image_id[:80]!r}: upload the image (again; it may have been evicted)",
            )
        return entry

    info["find"] = add_find_route(app, engine, family, entry_or_404)  # the page's Find box

    @app.get("/api/info")
    async def api_info() -> dict[str, Any]:
        return info

    @app.get("/api/stats")
    async def api_stats() -> dict[str, Any]:
        return {"cache": engine.cache.stats()}

    @app.post("/api/images")
    async def upload(request: Request) -> dict[str, Any]:
        body = (await read_upload(request, max_upload_bytes, "image", "photo.jpg")).data
        image_id, fut = engine.submit_image(bytes(body))
        try:
            entry, cached = await asyncio.wrap_future(fut)
        except ImageDecodeError as e:
            raise HTTPException(400, str(e)) from None
        h, w = entry.original_size
        return {
            "image_id": image_id,
            "width": w,
            "height": h,
            "cached": cached,
            "encode_ms": entry.encode_ms,
        }

    @app.get("/api/images/{image_id}")
    async def image_info(image_id: str) -> dict[str, Any]:
        entry = entry_or_404(image_id)
        return {
            "image_id": image_id,
            "width": entry.original_size[1],
            "height": entry.original_size[0],
        }

    @app.post("/api/images/{image_id}/predict", openapi_extra=json_body_doc(PromptIn))
    async def predict(image_id: str, request: Request) -> dict[str, Any]:
        entry = entry_or_404(image_id)  # 404 first, whatever the body
        prompt = await parse_json_body(request, PromptIn)
        check_json_prompt(prompt.points, prompt.labels, prompt.box)  # 422 naming JSON fields
        warnings = _prompt_warnings(prompt, entry)
        try:
            out = await asyncio.wrap_future(
                engine.submit_predict(
                    entry,
                    list(prompt.points),
                    list(prompt.labels),
                    prompt.box,
                    prompt.multimask,
                    prompt.png,
                )
            )
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        h, w = entry.original_size
        return {
            "image_id": image_id,
            "width": w,
            "height": h,
            "prompt": prompt.model_dump(exclude={"png"}),
            **out,
            "warnings": warnings,
        }

    @app.post("/api/images/{image_id}/everything", openapi_extra=json_body_doc(EverythingIn))
    async def everything(image_id: str, request: Request) -> dict[str, Any]:
        entry = entry_or_404(image_id)  # 404 first, whatever the body
        if not info["everything"]["available"]:
            raise HTTPException(409, info["everything"]["reason"])
        params = await parse_json_body(request, EverythingIn)
        try:
            result = await asyncio.wrap_future(engine.everything(entry, params.model_dump()))
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        h, w = entry.original_size
        return {"image": {"image_id": image_id, "height": h, "width": w}, **result}

    return app
