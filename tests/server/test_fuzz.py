"""Fuzz of the web app: every route x bad bodies x content types, with a real image id and unknown
ids. Every answer is a 4xx with a short reason (never a 5xx), an unknown image id is a 404
whatever the body, no error answer echoes the input, and the server still answers normally
afterwards. In process (TestClient with `raise_server_exceptions=False`, so a crash is seen as the
500 a user would get) and once over HTTP against a real uvicorn server."""

from __future__ import annotations

import http.client
import io
import json
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit.server.app import create_app
from tests.server.conftest import live_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MAX_UPLOAD = 256 * 1024
MARKER = "Zq" * 40  # a distinctive string inside bad bodies: it must never come back whole
LONG = MARKER * 50  # a 4000-character key: an error may name it, cut short

UNKNOWN_IDS = [
    "0" * 64,
    "not-a-hash",
    "f" * 63 + "g",
    "x" * 3000,
    "%F0%9F%98%80",
    "..%2F..%2Fapp.py",
]

BAD_BODIES: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"  \n ",
    "binary": bytes(np.random.default_rng(0).integers(0, 256, 1024, dtype=np.uint8)),
    "not utf-8": b'\xff\xfe{"points": [[1, 1]], "labels": [1]}',
    "oversized": b'{"points": "' + b"a" * (1 << 21) + b'"}',
    "truncated json": b'{"points": [[1, ',
    "malformed json": b"{points: [[1, 1]], labels: [1], " + MARKER.encode() + b"}",
    "NaN": b'{"points": [[NaN, 1]], "labels": [1], "m": "' + MARKER.encode() + b'"}',
    "Infinity": b'{"points": [[1, Infinity]], "labels": [1]}',
    "-Infinity": b'{"box": [-Infinity, 0, 1, 1], "points_per_side": -Infinity}',
    "float overflow": b'{"points": [[1e999, 1]], "labels": [1], "pred_iou_thresh": 1e999}',
    "NaN setting": b'{"pred_iou_thresh": NaN, "points_per_side": NaN}',
    "huge int": b'{"points": [[1, 1]], "labels": ['
    + b"9" * 5000
    + b'], "crop_n_layers": '
    + b"9" * 5000
    + b"}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "top-level list": b"[1, 2, 3]",
    "top-level string": json.dumps(MARKER * 100).encode(),
    "null": b"null",
    "wrong types": json.dumps(
        {"points": MARKER, "labels": {"a": 1}, "box": "x", "points_per_side": [MARKER]}
    ).encode(),
    "wrong nested types": json.dumps(
        {"points": [[MARKER, None]], "labels": [True, 1.5], "crop_n_layers": {"x": 1}}
    ).encode(),
    "huge arrays": json.dumps(
        {"points": [[1.5, 2.5]] * 20_000, "labels": [1] * 20_000, "box": [1] * 20_000}
    ).encode(),
    "extra fields": json.dumps({LONG: 1, "points_per_side": 0, "png": "maybe"}).encode(),
}

CONTENT_TYPES = [
    "application/json",
    "application/octet-stream",
    "multipart/form-data; boundary=----samkit",
    "text/plain; charset=utf-8",
    None,
]


def _png() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def app(sam1_shapes):
    return create_app(sam1_shapes, cache_bytes=64 * 2**20, max_upload_bytes=MAX_UPLOAD)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def image_id(client):
    r = client.post("/api/images", content=_png())
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


def check_error(r, what: str, status: int | tuple[int, ...] | None = None) -> None:
    """A 4xx (or exactly `status`) with a short, non-echoing JSON reason."""
    assert 400 <= r.status_code < 500, f"{what}: HTTP {r.status_code} {r.text[:300]}"
    if status is not None:
        allowed = (status,) if isinstance(status, int) else status
        assert r.status_code in allowed, f"{what}: HTTP {r.status_code}, expected {allowed}"
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.strip(), f"{what}: no reason: {r.text[:300]}"
    assert len(r.content) < 1500, f"{what}: a {len(r.content)}-byte error answer"
    text = r.text.replace(LONG[:100], "")  # a field name, cut to 100 characters, may be named
    assert MARKER not in text and "a" * 100 not in text, f"{what}: echoes the input"


def _headers(ctype: str | None) -> dict[str, str]:
    return {} if ctype is None else {"content-type": ctype}


def test_json_routes_answer_every_bad_request_with_a_4xx(client, image_id):
    n = 0
    for route in ("predict", "everything"):
        for name, body in BAD_BODIES.items():
            for ctype in CONTENT_TYPES:
                what = f"{route} {name} {ctype}"
                r = client.post(
                    f"/api/images/{image_id}/{route}", content=body, headers=_headers(ctype)
                )
                check_error(r, what)
                for unknown in UNKNOWN_IDS[:2]:
                    r = client.post(
                        f"/api/images/{unknown}/{route}", content=body, headers=_headers(ctype)
                    )
                    check_error(r, f"{what} (unknown id)", 404)
                n += 3
            # multipart as browsers send it (a real form), JSON inside or not
            r = client.post(
                f"/api/images/{image_id}/{route}",
                files={"file": ("prompt.json", body[:4096], "application/json")},
            )
            check_error(r, f"{route} {name} real multipart", 415)
            n += 1
        for unknown in UNKNOWN_IDS:
            r = client.post(
                f"/api/images/{unknown}/{route}", json={"points": [[1, 1]], "labels": [1]}
            )
            check_error(r, f"{route} unknown id {unknown[:20]}", 404)
            n += 1
    assert n > 400


def test_upload_and_other_routes_answer_bad_requests_with_a_4xx(client, image_id):
    for name, body in BAD_BODIES.items():
        for ctype in CONTENT_TYPES:
            r = client.post("/api/images", content=body, headers=_headers(ctype))
            check_error(r, f"upload {name} {ctype}", (400, 413))
    r = client.post("/api/images", files={"file": ("x.png", _png(), "image/png")})
    assert r.status_code == 200, r.text  # a form's one file field is the image (curl -F)
    assert r.json()["image_id"] == client.post("/api/images", content=_png()).json()["image_id"]
    for unknown in UNKNOWN_IDS:
        check_error(client.get(f"/api/images/{unknown}"), f"info {unknown[:20]}", 404)
    for method, path in (
        ("PUT", f"/api/images/{image_id}/predict"),
        ("DELETE", f"/api/images/{image_id}"),
        ("GET", f"/api/images/{image_id}/everything"),
        ("POST", "/api/info"),
        ("PATCH", "/api/images"),
    ):
        check_error(client.request(method, path, content=b"\x00" * 10), f"{method} {path}", 405)
    check_error(client.get("/api/nothing"), "unknown route", 404)
    check_error(client.post("/api/nothing", content=BAD_BODIES["binary"]), "unknown route", 404)


def test_the_server_answers_normally_after_the_fuzz(client, image_id):
    # (runs after the two fuzz tests above on the same app; this burst keeps it meaningful alone)
    for name, body in BAD_BODIES.items():
        for route in ("predict", "everything"):
            r = client.post(f"/api/images/{image_id}/{route}", content=body)
            check_error(r, f"{route} {name}")
    r = client.post(
        f"/api/images/{image_id}/predict",
        json={"points": [[30, 20]], "labels": [1], "multimask": False},
    )
    assert r.status_code == 200 and len(r.json()["masks"]) == 1, r.text[:300]
    r = client.post("/api/images", content=_png())
    assert r.status_code == 200 and r.json()["cached"] and r.json()["image_id"] == image_id
    assert client.get("/api/info").status_code == 200
    assert client.get(f"/api/images/{image_id}").json()["width"] == 64


def _raw(base: str, method: str, path: str, body: bytes, ctype: str | None) -> tuple[int, bytes]:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=_headers(ctype))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_fuzz_over_http_against_uvicorn(app, image_id):
    with live_server(app) as base:
        for name, body in BAD_BODIES.items():
            for ctype in ("application/json", "application/octet-stream", "multipart/form-data"):
                for path, expected in (
                    (f"/api/images/{image_id}/predict", None),
                    (f"/api/images/{image_id}/everything", None),
                    (f"/api/images/{'0' * 64}/predict", 404),
                    ("/api/images", None),
                ):
                    status, data = _raw(base, "POST", path, body, ctype)
                    what = f"HTTP {path[:30]} {name} {ctype}"
                    assert 400 <= status < 500, f"{what}: {status} {data[:200]!r}"
                    assert expected is None or status == expected, f"{what}: {status}"
                    assert len(data) < 1500 and (MARKER * 2).encode() not in data, what
        status, data = _raw(
            base,
            "POST",
            f"/api/images/{image_id}/predict",
            json.dumps({"points": [[30, 20]], "labels": [1]}).encode(),
            "application/json",
        )
        assert status == 200 and len(json.loads(data)["masks"]) == 3
