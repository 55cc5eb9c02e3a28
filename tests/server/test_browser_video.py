"""End to end, video mode: headless Debian Chromium (Playwright) against `samkit serve` (SAM 2)."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from samkit.video.formats import label_map
from tests.server.test_browser import ARTIFACTS, CHROMIUM, browser_page, running_server
from tests.video.clips import encode_video, moving_shapes
from tests.video.conftest import CKPT, CONFIG

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
    ),
]
N, H, W = 4, 96, 128
CLICK = (20.0, 40.0)  # inside the red square on frame 0


@pytest.fixture(scope="module")
def sam2_server():
    with running_server(CONFIG, CKPT) as url:
        yield url


@pytest.fixture(scope="module")
def vpage(sam2_server):
    with browser_page(sam2_server, 120_000) as pg:
        yield pg


def _shown(page) -> tuple[np.ndarray, np.ndarray]:
    """(drawn overlay pixels, the object ids drawn) of the displayed frame."""
    alpha = base64.b64decode(page.evaluate("window.samkitVideo.maskLayerBase64()"))
    ids = base64.b64decode(page.evaluate("window.samkitVideo.labelsBase64()"))
    return (
        np.frombuffer(alpha, np.uint8).reshape(H, W).astype(bool),
        np.frombuffer(ids, np.uint8).reshape(H, W),
    )


def _screen(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#v-prompts").bounding_box()
    return box["x"] + x * box["width"] / W, box["y"] + y * box["height"] / H


def test_click_track_scrub_download(vpage, tmp_path):
    from samkit import build_sam2
    from samkit.video import Sam2VideoPredictor

    page = vpage
    clip = encode_video(tmp_path / "shapes.mp4", moving_shapes(n=N, h=H, w=W))
    assert page.locator("#v-file").is_hidden() and page.locator("#stage").is_visible()
    # SAM 2 defaults of "segment everything" (samkit auto's), and an enabled Open video
    page.wait_for_function("window.samkit.state.settings.length > 0")
    assert page.input_value("#setting-pred_iou_thresh") == "0.8"
    assert page.input_value("#setting-points_per_side") == "32"
    page.locator("#mode-video").click()
    assert page.locator("#stage").is_hidden() and page.locator("#v-stage").is_visible()
    assert page.locator("#candidates-row").is_hidden()  # the image mode's row
    assert page.locator("#v-open").get_attribute("aria-disabled") is None
    assert page.locator("#v-file").is_enabled()
    page.set_input_files("#v-file", str(clip))
    page.wait_for_function(
        "window.samkitVideo.state.videoId !== null && window.samkitVideo.state.phase === 'ready'"
    )
    st = page.evaluate("[window.samkitVideo.state.numFrames, window.samkitVideo.state.width]")
    assert st == [N, W]
    assert page.locator("#v-find-box").is_hidden()  # SAM 2 tracks clicks; Find is SAM 3's

    # click the red square on frame 0 (object 1)
    page.mouse.click(*_screen(page, *CLICK))
    page.wait_for_function(
        "window.samkitVideo.state.pending === 0 && window.samkitVideo.state.phase === 'ready'"
        " && window.samkitVideo.state.results.has(0)"
    )
    (x, y, label) = page.evaluate("window.samkitVideo.state.prompts['0:1'].points")[0]
    assert label == 1 and abs(x - CLICK[0]) <= 1 and abs(y - CLICK[1]) <= 1

    pred = Sam2VideoPredictor(build_sam2(CONFIG, checkpoint=CKPT))
    state = pred.init_state(str(clip))
    _, _, logits = pred.add_new_points_or_box(
        state, 0, 1, points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32)
    )
    first = (logits[0, 0] > 0).numpy()
    expected = {t: (lg[0, 0] > 0).numpy() for t, _, lg in pred.propagate_in_video(state)}
    alpha, ids = _shown(page)
    assert first.any()
    np.testing.assert_array_equal(alpha, first)
    np.testing.assert_array_equal(ids == 1, first)

    # track, then scrub to the last frame with the keyboard
    page.locator("#v-track").click()
    page.wait_for_function(
        "window.samkitVideo.state.phase === 'ready' && window.samkitVideo.state.job"
        " && window.samkitVideo.state.job.status === 'done'"
    )
    assert page.evaluate("window.samkitVideo.state.results.size") == N
    page.locator("#v-scrub").focus()
    for _ in range(N - 1):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"window.samkitVideo.state.current === {N - 1}")
    assert page.locator("#v-frame-label").inner_text() == f"frame {N - 1} / {N - 1}"
    alpha, ids = _shown(page)
    assert expected[N - 1].any() and not np.array_equal(expected[N - 1], first)
    np.testing.assert_array_equal(alpha, expected[N - 1])
    np.testing.assert_array_equal(ids == 1, expected[N - 1])
    page.wait_for_function(
        "(() => { const c = document.getElementById('v-frame').getContext('2d');"
        " return c.getImageData(0, 0, c.canvas.width, c.canvas.height).data.some(v => v > 0); })()"
    )

    # downloads: the palette PNG zip and the JSON hold the same masks
    with page.expect_download() as dl:
        page.locator("#v-dl-zip").click()
    path = tmp_path / "masks.zip"
    dl.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == [f"masks/{t:05d}.png" for t in range(N)]
        got = np.array(Image.open(io.BytesIO(z.read(f"masks/{N - 1:05d}.png"))))
    np.testing.assert_array_equal(got == 1, expected[N - 1])
    with page.expect_download() as dl:
        page.locator("#v-dl-json").click()
    dl.value.save_as(tmp_path / "annotations.json")
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert [a["object_id"] for a in doc["annotations"]] == [1]

    # a second object on the last frame, by dragging a box: the frame's ids are the predictor's
    page.locator("#v-new-object").click()
    assert page.evaluate("window.samkitVideo.state.active") == 2
    x0, y0 = _screen(page, 84, 50)
    x1, y1 = _screen(page, 124, 92)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_function(
        "window.samkitVideo.state.pending === 0 && window.samkitVideo.state.phase === 'ready'"
        " && window.samkitVideo.state.lastResponse.objects.some(o => o.obj_id === 2)"
    )
    box = page.evaluate(f"window.samkitVideo.state.prompts['{N - 1}:2'].box")
    assert np.allclose(box, [84, 50, 124, 92], atol=1)
    _, ids, logits = pred.add_new_points_or_box(state, N - 1, 2, box=np.array(box, np.float32))
    want = label_map((logits > 0)[:, 0], ids)
    alpha, shown = _shown(page)
    np.testing.assert_array_equal(shown, want)
    np.testing.assert_array_equal(alpha, want > 0)
    assert page.locator("#v-objects button").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_video.png"))

    # play through, then the overlay MP4
    page.locator("#v-play").click()
    page.wait_for_function(
        "window.samkitVideo.state.phase === 'ready'"
        " && document.getElementById('v-status-text').textContent.startsWith('Played')"
    )
    assert page.evaluate("window.samkitVideo.state.current") == N - 1
    with page.expect_download() as dl:
        page.locator("#v-dl-mp4").click()
    dl.value.save_as(tmp_path / "overlay.mp4")
    import av

    with av.open(str(tmp_path / "overlay.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == N and (frames[0].width, frames[0].height) == (W, H)

    # back to the image mode
    page.locator("#mode-image").click()
    assert page.locator("#stage").is_visible() and page.locator("#v-stage").is_hidden()
