"""Request-body parsing and validation errors of the web app: every bad request gets a 4xx with a
short reason, and no error answer echoes the client's input (which may be huge or hold values JSON
cannot carry, such as NaN).

Order of checks for a JSON route (after the route's own 404 for an unknown image id):
413 over `MAX_JSON_BYTES`; 415 for a Content-Type other than JSON; 422 for an empty body, bytes
that are not UTF-8 JSON, NaN / Infinity / overflowing numbers, nesting too deep, a non-object, or
fields the route's pydantic model refuses (each error summarised as `location: message`).
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from samkit.predict.inputs import check_click_prompt

MAX_JSON_BYTES = 1 << 20  # prompts and generator settings are a few hundred bytes
MAX_ERRORS = 5
M = TypeVar("M", bound=BaseModel)


def summarize_errors(errors: Any) -> str:
    """`loc: msg; ...` for at most `MAX_ERRORS` pydantic / FastAPI errors, without their inputs."""
    parts = []
    for err in list(errors)[:MAX_ERRORS]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")[:100]
        msg = str(err.get("msg", "invalid"))[:200]
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(list(errors)) - MAX_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows a float: JSON numbers must be finite")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON: numbers must be finite")


async def parse_json_body(request: Request, model: type[M]) -> M:
    """Read, bound, parse and validate a JSON request body as `model` (HTTP 4xx if it is bad)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_JSON_BYTES:
        raise HTTPException(413, f"the JSON body is over the limit of {MAX_JSON_BYTES:,} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise HTTPException(
            415, f"expected Content-Type: application/json, got {ctype[:60]!r} (send a JSON object)"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise HTTPException(413, f"the JSON body is over the limit of {MAX_JSON_BYTES:,} bytes")
    if not body.strip():
        raise HTTPException(422, "empty body: send a JSON object (it may be {})")
    try:
        data = json.loads(bytes(body), parse_float=_finite_float, parse_constant=_no_constants)
    except RecursionError:
        raise HTTPException(422, "the JSON body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the checks above
        raise HTTPException(422, f"the body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise HTTPException(422, f"expected a JSON object, got a JSON {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise HTTPException(422, summarize_errors(e.errors())) from None


def install_error_handlers(app: FastAPI) -> None:
    """Answer FastAPI's own validation errors with a summary instead of echoing the input."""

    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": summarize_errors(exc.errors())}, status_code=422)

    app.add_exception_handler(RequestValidationError, on_validation_error)


def check_prompt_fields(
    points: Any, labels: Any, box: Any, refuse_outside: tuple[int, int] | None = None
) -> None:
    """422 with the predictors' own message for click / box prompts they would refuse.

    The rules are `samkit.predict.inputs.check_click_prompt` (the predictors' `validate_prompts`,
    labels 1 / 0, and with `refuse_outside` = (width, height) the frame bounds); this only maps
    its ValueError to HTTP 422. For prompts checked before a predictor runs (the video mode
    queues them); the image mode lets the predictor check (`samkit.server.app`).

    Raises:
        HTTPException(422).
    """
    try:
        check_click_prompt(points, labels, box, refuse_outside)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
