"""Web app details from a newcomer's first hour: prompt warnings, a busy port (issue 15)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from samkit.server.app import create_app
from samkit.server.listen import listen_socket
from tests.conftest import IMAGES, load_rgb
from tests.server.conftest import SHAPES, coco_decode

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def client(sam1_shapes):
    with TestClient(create_app(sam1_shapes, cache_bytes=64 * 2**20)) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "warnings"),
    [
        ({"points": [[400, 260]], "labels": [1]}, []),
        ({"points": [[800, 534]], "labels": [1]}, []),  # the far corner is inside
        ({"points": [[-10, -10]], "labels": [1]}, ["point 0 (-10, -10) is outside the 800x534"]),
        (
            {"points": [[400, 260], [900, 10]], "labels": [1, 0]},
            ["point 1 (900, 10) is outside the 800x534"],
        ),
        ({"box": [-5, 100, 810, 300]}, ["box 0 (-5, 100, 810, 300) reaches outside the 800x534"]),
    ],
)
def test_prompts_outside_the_image_are_answered_with_warnings(
    client, shapes_predictor, body, warnings
):
    r = client.post("/api/images", content=(IMAGES / "dog.jpg").read_bytes())
    image_id = r.json()["image_id"]
    r = client.post(f"/api/images/{image_id}/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["warnings"]) == len(warnings)
    for got, want in zip(out["warnings"], warnings):
        assert got.startswith(want) and got.endswith("it is used as given")
    shapes_predictor.set_image(load_rgb("dog.jpg"))
    pts = np.array(body["points"], float) if body.get("points") else None
    labels = np.array(body["labels"]) if body.get("points") else None
    box = np.array(body["box"], float) if body.get("box") else None
    masks, _, _ = shapes_predictor.predict(pts, labels, box, multimask_output=True)
    for rec, m in zip(out["masks"], masks):
        np.testing.assert_array_equal(coco_decode(rec["segmentation"]), m)


def test_serve_on_a_busy_port_fails_before_printing_its_url():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "samkit", "serve", "--port", str(port),
               "--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"samkit serve: error: port {port} on 127.0.0.1 is already in use" in r.stderr
    assert f"--port {port + 1}" in r.stderr
    assert "http://" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_listen_socket_errors():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} on 127.0.0.1 is already in use"):
            listen_socket("127.0.0.1", port)
    with pytest.raises(ValueError, match="0-65535"):
        listen_socket("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="not an address"):
        listen_socket("no-such-host.invalid", 8000)
    sock = listen_socket("127.0.0.1", 0)  # a free port works, and is what the URL shows
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
