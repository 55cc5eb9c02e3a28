"""File uploads of the web app (`POST /api/images`, `POST /api/videos`): the file's bytes sent as
the request body (`curl --data-binary @FILE`, the page's own upload) or as the one file field of
a multipart/form-data form (`curl -F file=@FILE`, an HTML form), read with a bound on the bytes.

Both ways answer the same: 413 over the limit (from Content-Length before reading, else while
reading), 400 for an empty upload or a form that cannot be parsed, 422 for a form with more than
one file field; every message says what the route takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser


class Upload(NamedTuple):
    """An uploaded file: its bytes and, from a multipart form, the file name the client gave."""

    data: bytes
    filename: str | None


def how_to_send(what: str, example: str) -> str:
    """The two ways to send a file, e.g. for `what` = "video", `example` = "clip.mp4"."""
    return (
        f"send the {what} file's bytes as the request body (curl --data-binary @{example}) or "
        f"one file field of a multipart/form-data form (curl -F file=@{example})"
    )


async def read_upload(request: Request, max_bytes: int, what: str, example: str) -> Upload:
    """The uploaded file of `request`, at most `max_bytes` bytes.

    Args:
        request: the POST request (raw body, or a multipart form with one file field).
        max_bytes: larger uploads get 413.
        what: the kind of file, for messages ("image", "video").
        example: a file name for the messages' curl examples ("photo.jpg").

    Raises:
        HTTPException: 413 over the limit; 400 empty (or a form without a file field, or an
            empty one), or not a readable multipart form; 422 a form with several file fields.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise HTTPException(
            413, f"the {what} upload is {int(length):,} bytes; the limit is {max_bytes:,}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPException(413, f"the {what} upload is over the limit of {max_bytes:,} bytes")
    if not body:
        raise HTTPException(400, f"empty upload: {how_to_send(what, example)}")
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return Upload(bytes(body), None)
    return await _form_file(request, bytes(body), what, example)


async def _form_file(request: Request, body: bytes, what: str, example: str) -> Upload:
    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=8, max_fields=64).parse()
    except (MultiPartException, ValueError, KeyError) as e:
        raise HTTPException(
            400,
            f"the upload is not a readable multipart form ({str(e)[:120]}): "
            f"{how_to_send(what, example)}",
        ) from None
    try:
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if len(files) > 1:
            raise HTTPException(
                422,
                f"a multipart upload needs exactly one file field, got {len(files)}: "
                f"{how_to_send(what, example)}",
            )
        data = await files[0].read() if files else b""
        if not data:
            where = "the form's file field is empty" if files else "the form has no file field"
            raise HTTPException(400, f"empty upload: {where}: {how_to_send(what, example)}")
        return Upload(data, files[0].filename)
    finally:
        await form.close()
