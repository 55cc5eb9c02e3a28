"""Helpers for the web-app tests: a real uvicorn server on a loopback port, mask decoding."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"


def coco_decode(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a free 127.0.0.1 port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def sam1_shapes_served() -> Iterator[str]:
    """The URL of `samkit serve` with the sam1_shapes model, in a subprocess
    (tests/server/test_browser.py's `running_server`): one server for test_browser.py and
    test_browser_says.py (one xdist group, tests/conftest.py), whose pages each upload their own
    images."""
    from tests.server.test_browser import running_server

    with running_server(SHAPES / "config.json", SHAPES / "sam1_shapes.pth") as url:
        yield url


@pytest.fixture(scope="module")
def shapes_predictor(sam1_shapes):
    from samkit import SamPredictor

    return SamPredictor(sam1_shapes)


@pytest.fixture(scope="module")
def sam3_served(sam3_small, tmp_path_factory):
    """(client, image id, video id) on a uvicorn SAM 3 server (the 336 px `sam3_small` model, the
    official thresholds) with truck.jpg and a 2-frame 960 x 540 clip (the SAM 2 video fixture's
    frames) uploaded."""
    import httpx

    from samkit.server.app import create_app
    from samkit.server.video_session import VideoLimits
    from samkit.video.track_concepts import build_concept_tracker
    from tests.conftest import IMAGES
    from tests.video.clips import encode_video
    from tests.video.conftest import fixture_arrays

    tracker = build_concept_tracker(checkpoint=sam3_small, keep_outputs=True)
    clip = encode_video(tmp_path_factory.mktemp("clip") / "street.mp4", fixture_arrays()[:2])
    limits = VideoLimits(max_bytes=64 * 2**20, max_frames=4, max_pixels=960 * 540)
    app = create_app(tracker.model, video_limits=limits, video_predictor=tracker)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=600) as c:
        r = c.post("/api/videos?name=street.mp4", content=clip.read_bytes())
        assert r.status_code == 200, r.text
        image = c.post("/api/images", content=(IMAGES / "truck.jpg").read_bytes())
        assert image.status_code == 200, image.text
        yield c, image.json()["image_id"], r.json()["video_id"]
