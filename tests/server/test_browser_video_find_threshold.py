"""The video Find box's score field in headless Debian Chromium (Playwright), on a real uvicorn
server with the sam3_tiny checkpoint's `ConceptTracker`: a value outside (0, 1) is refused on the
page with the reason and nothing is sent; a valid one is sent as the request's `threshold`, an
empty one not at all (the server's). The sent requests are stopped in the browser, so no
detector pass runs (tests/server/test_video_find_threshold.py tests the route itself)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.server.app import create_app
from samkit.server.video_session import VideoLimits
from tests.conftest import FIXTURES
from tests.server.conftest import live_server
from tests.server.test_browser import CHROMIUM, browser_page
from tests.video.clips import encode_video

CKPT = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
    pytest.mark.skipif(not CKPT.is_file(), reason="no ../shared/fixtures/sam3_tiny"),
]


@pytest.fixture(scope="module")
def url():
    from samkit.video.track_concepts import build_concept_tracker

    tracker = build_concept_tracker(checkpoint=CKPT, keep_outputs=True)
    limits = VideoLimits(max_bytes=2**20, max_frames=4, max_pixels=96 * 64)
    app = create_app(tracker.model, video_limits=limits, video_predictor=tracker)
    with live_server(app) as u:
        yield u


def test_score_field(url, tmp_path) -> None:
    d = FIXTURES / "sam2_video" / "frames"
    frames = [
        np.asarray(Image.open(d / f"{i:05d}.jpg").convert("RGB").resize((96, 64))) for i in range(2)
    ]
    clip = encode_video(tmp_path / "street.mp4", frames)
    # the stopped requests log "Failed to load resource" errors
    with browser_page(url, 120_000, ignore=("Failed to load resource",)) as page:
        sent: list[dict] = []

        def stop(route) -> None:
            sent.append(json.loads(route.request.post_data or "{}"))
            route.abort()

        page.route("**/find", stop)
        page.locator("#mode-video").click()
        page.set_input_files("#v-file", str(clip))
        page.wait_for_function(
            "window.samkitVideo.state.videoId !== null && window.samkitVideo.state.phase === 'ready'"
        )
        assert page.locator("#v-find-threshold").is_visible()
        page.fill("#v-find-text", "person")

        page.fill("#v-find-threshold", "1.5")
        page.locator("#v-find").click()
        status = page.locator("#v-status-text").inner_text()
        assert "between 0 and 1" in status and "1.5" in status, status
        assert sent == []

        def find_and_wait() -> None:
            page.locator("#v-find").click()
            page.wait_for_function(
                "window.samkitVideo.state.pending === 0 && "
                "document.getElementById('v-status-text').textContent.startsWith('Find failed')"
            )

        page.fill("#v-find-threshold", "0.3")
        find_and_wait()
        page.fill("#v-find-threshold", "")
        find_and_wait()
    assert sent == [
        {"frame": 0, "text": "person", "threshold": 0.3},
        {"frame": 0, "text": "person"},
    ]
