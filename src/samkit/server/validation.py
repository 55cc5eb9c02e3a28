"""Request-body parsing and validation errors of the web app: every bad request gets a 4xx with a
short reason, and no error answer echoes the client's input (which may be huge or hold values JSON
cannot carry, such as NaN).

Order of checks for a JSON route (after the route's own 404 for an unknown image id):
413 over `MAX_JSON_BYTES`; 415 for a Content-Type other than JSON; 422 for an empty body, bytes
that are not UTF-8 JSON, NaN / Infinity / overflowing numbers, nesting too deep, a non-object, or
fields the route's pydantic model refuses (each error summarised as `location: message`, an
unknown field with the closest field name the route takes, `difflib`). Every 422 about the body
says what the route takes (`body_shape`: its JSON fields).

Prompt errors name the request's JSON fields (`points`, `labels`, `box`), never the predictors'
Python arguments (`check_json_prompt`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from samkit.predict.inputs import CLICK_LABELS, check_click_prompt

MAX_JSON_BYTES = 1 << 20  # prompts and generator settings are a few hundred bytes
MAX_ERRORS = 5
M = TypeVar("M", bound=BaseModel)


def summarize_errors(errors: Any, fields: Any = (), synonyms: dict[str, str] | None = None) -> str:
    """`loc: msg; ...` for at most `MAX_ERRORS` pydantic / FastAPI errors, without their inputs;
    an unknown top-level field gets its name in `synonyms` or the closest name in `fields`
    (`did you mean 'points'?`)."""
    parts = []
    for err in list(errors)[:MAX_ERRORS]:
        path = [p for p in err.get("loc", ()) if p != "body"]
        loc = ".".join(str(p) for p in path)[:100]
        msg = str(err.get("msg", "invalid"))[:200]
        if err.get("type") == "extra_forbidden" and len(path) == 1:
            close = [synonyms[path[0]]] if path[0] in (synonyms or {}) else []
            close = close or difflib.get_close_matches(str(path[0]), list(fields), n=1, cutoff=0.6)
            msg = f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"
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


def _type_text(annotation: Any) -> str:
    """A JSON reader's name for a field type: `int`, `[number, ...]`, `[number, number]`, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin in (list, tuple) and args:
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"[{_type_text(args[0])}, ...]"
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    names = {int: "int", float: "number", str: "string", bool: "true | false", type(None): "null"}
    return names.get(annotation, "any")


def body_shape(model: type[BaseModel]) -> str:
    """The JSON object `model` reads, for error messages: its `JSON_SHAPE` class attribute when it
    has one, else its fields with their JSON types (optional ones marked), e.g.
    `{"frame": int, "text": string, "threshold": any (optional)}`."""
    shape = getattr(model, "JSON_SHAPE", None)
    if isinstance(shape, str):
        return shape
    parts = [
        f'"{name}": {_type_text(f.annotation)}' + ("" if f.is_required() else " (optional)")
        for name, f in model.model_fields.items()
    ]
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= 600 else text[:590] + ", ...}"


async def parse_json_body(request: Request, model: type[M]) -> M:
    """Read, bound, parse and validate a JSON request body as `model` (HTTP 4xx if it is bad;
    answers about the body as a whole say what it must be: `body_shape(model)`)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_JSON_BYTES:
        raise HTTPException(413, f"the JSON body is over the limit of {MAX_JSON_BYTES:,} bytes")
    shape = body_shape(model)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise HTTPException(
            415,
            f"the body must be JSON (Content-Type: application/json), got Content-Type "
            f"{ctype[:60]!r}; expected a JSON object {shape}",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise HTTPException(413, f"the JSON body is over the limit of {MAX_JSON_BYTES:,} bytes")
    if not body.strip():
        raise HTTPException(422, f"empty body: the body must be a JSON object {shape}")
    try:
        data = json.loads(bytes(body), parse_float=_finite_float, parse_constant=_no_constants)
    except RecursionError:
        raise HTTPException(422, "the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise HTTPException(422, f"the body must be JSON (UTF-8 text): {shape}") from None
    except json.JSONDecodeError as e:
        raise HTTPException(
            422, f"the body must be JSON: {shape} (it is not valid JSON: {e.msg[:80]} at {e.pos})"
        ) from None
    except ValueError as e:  # the number checks above
        raise HTTPException(422, f"the body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise HTTPException(
            422, f"the body must be a JSON object {shape}, got a JSON {_json_kind(data)}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        synonyms = getattr(model, "FIELD_SYNONYMS", None)  # e.g. {"phrase": "text"}
        why = summarize_errors(e.errors(), model.model_fields, synonyms)
        raise HTTPException(422, f"{why}; expected a JSON object {shape}") from None


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body with `parse_json_body`: the body's JSON
    schema in /openapi.json and /docs (FastAPI cannot see a body read from the request)."""
    schema = model.model_json_schema()
    schema["description"] = body_shape(model)
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def _json_kind(data: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if data is None else kinds.get(type(data), type(data).__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Answer FastAPI's own validation errors with a summary instead of echoing the input."""

    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": summarize_errors(exc.errors())}, status_code=422)

    app.add_exception_handler(RequestValidationError, on_validation_error)


# the predictors' argument names (in `samkit.predict.inputs` messages) -> the JSON fields
_JSON_NAMES = (
    (re.compile(r"\bpoint_coords\b"), "points"),
    (re.compile(r"\bpoint_labels\b"), "labels"),
    (re.compile(r"\bboxes must be \(x0, y0, x1, y1\)"), "box must be [x0, y0, x1, y1]"),
    (re.compile(r"\bboxes\b"), "box"),
)


def json_field_names(message: str) -> str:
    """A predictor's prompt message with its Python argument names as the JSON fields."""
    for pattern, name in _JSON_NAMES:
        message = pattern.sub(name, message)
    return message


def check_json_prompt(
    points: Any, labels: Any, box: Any, refuse_outside: tuple[int, int] | None = None
) -> None:
    """422 naming the request's JSON fields for click / box prompts the predictors would refuse.

    The JSON body's own rules first (`labels`: one 1 / 0 per point; `points` or a `box`), then
    `samkit.predict.inputs.check_click_prompt` (the predictors' `validate_prompts`, and with
    `refuse_outside` = (width, height) the frame bounds), whose messages get the JSON names.

    Raises:
        HTTPException(422).
    """
    n, m = len(points), len(labels)
    if m and not n:
        raise HTTPException(
            422, f"labels were given without points: send one [x, y] in points per label ({m})"
        )
    if n != m:
        raise HTTPException(
            422,
            f"labels must have one label per point (1 foreground, 0 background): got {n} "
            f"point{'s' * (n != 1)} and {m} label{'s' * (m != 1)}",
        )
    if not n and box is None:
        raise HTTPException(
            422,
            "no prompt: send points [[x, y], ...] with one label each, or a box [x0, y0, x1, y1]",
        )
    for i, lab in enumerate(labels):
        if lab not in CLICK_LABELS:
            raise HTTPException(422, f"labels[{i}] is {lab}: 1 = foreground, 0 = background")
    try:
        check_click_prompt(points, labels, box, refuse_outside)
    except ValueError as e:
        raise HTTPException(422, json_field_names(str(e))) from None
