"""End to end: headless Debian Chromium (Playwright) against `samkit serve` in a subprocess."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_rgb
from tests.server.conftest import SHAPES

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def server_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "samkit", "serve", "--port", str(port),
        "--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "samkit serve did not come up within 90 s"
            try:
                if httpx.get(f"{url}/api/info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server_url):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    sync_playwright = sync_api.sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1100, "height": 900}, accept_downloads=True
        )
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        messages: list[str] = []
        pg.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        pg.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        pg.goto(server_url)
        yield pg
        # the 400 is the deliberate non-image upload of test_segment_everything_and_errors
        errors = [
            m for m in messages if m.startswith(("error", "pageerror")) and "status of 400" not in m
        ]
        browser.close()
        assert not errors, errors


def _wait_idle(page) -> None:
    page.wait_for_function(
        "window.samkit.state.pending === 0 && window.samkit.state.phase === 'ready'"
    )


def _overlay_mask(page) -> np.ndarray:
    st = page.evaluate("({w: window.samkit.state.width, h: window.samkit.state.height})")
    raw = base64.b64decode(page.evaluate("window.samkit.maskLayerBase64()"))
    return np.frombuffer(raw, np.uint8).reshape(st["h"], st["w"]).astype(bool)


def _screen(page, x: float, y: float) -> tuple[float, float]:
    """Screen position of image pixel (x, y)."""
    box = page.locator("#prompt-layer").bounding_box()
    st = page.evaluate("({w: window.samkit.state.width, h: window.samkit.state.height})")
    return box["x"] + x * box["width"] / st["w"], box["y"] + y * box["height"] / st["h"]


def _expected(predictor, prompt: dict) -> tuple[np.ndarray, np.ndarray]:
    pts = np.array(prompt["points"], float) if prompt["points"] else None
    labels = np.array(prompt["labels"]) if prompt["points"] else None
    box = None if prompt["box"] is None else np.array(prompt["box"], float)
    masks, scores, _ = predictor.predict(pts, labels, box, multimask_output=True)
    return masks, scores


def test_click_box_undo_download(page, shapes_predictor, tmp_path):
    image_path = SHAPES / "shapes_1.png"
    shapes_predictor.set_image(load_rgb(str(image_path)))
    assert page.locator("#everything").is_disabled()

    page.set_input_files("#file", str(image_path))
    page.wait_for_function(
        "window.samkit.state.imageId !== null && window.samkit.state.phase === 'ready'"
    )
    assert page.evaluate("[window.samkit.state.width, window.samkit.state.height]") == [640, 480]
    assert not _overlay_mask(page).any()

    # left click: a foreground point
    page.mouse.click(*_screen(page, 200, 150))
    _wait_idle(page)
    prompt = page.evaluate("window.samkit.state.lastResponse.prompt")
    assert prompt["labels"] == [1] and prompt["box"] is None
    assert np.allclose(prompt["points"][0], [200, 150], atol=2)
    masks, scores = _expected(shapes_predictor, prompt)
    assert page.evaluate("window.samkit.state.selected") == int(np.argmax(scores))
    shown = _overlay_mask(page)
    assert shown.any(), "a mask overlay should appear"
    np.testing.assert_array_equal(shown, masks[int(np.argmax(scores))])
    assert page.locator("#candidates button").count() == 3

    # drag: a box (the point stays)
    x0, y0 = _screen(page, 100, 100)
    x1, y1 = _screen(page, 400, 350)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    _wait_idle(page)
    prompt = page.evaluate("window.samkit.state.lastResponse.prompt")
    assert len(prompt["points"]) == 1 and np.allclose(prompt["box"], [100, 100, 400, 350], atol=2)
    masks, scores = _expected(shapes_predictor, prompt)
    np.testing.assert_array_equal(_overlay_mask(page), masks[int(np.argmax(scores))])

    # right click: a background point; then choose another candidate
    page.mouse.click(*_screen(page, 300, 300), button="right")
    _wait_idle(page)
    prompt = page.evaluate("window.samkit.state.lastResponse.prompt")
    assert prompt["labels"] == [1, 0]
    masks, scores = _expected(shapes_predictor, prompt)
    other = (int(np.argmax(scores)) + 1) % 3
    page.locator(f"#candidates button[data-index='{other}']").click()
    np.testing.assert_array_equal(_overlay_mask(page), masks[other])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_point_box.png"))

    # the downloaded mask PNG is the mask on screen
    with page.expect_download() as dl:
        page.locator("#download-png").click()
    png = tmp_path / "mask.png"
    dl.value.save_as(png)
    got = np.array(Image.open(png).convert("L")) > 127
    np.testing.assert_array_equal(got, masks[other])
    with page.expect_download() as dl:
        page.locator("#download-json").click()
    dl.value.save_as(tmp_path / "mask.json")
    import json

    from tests.server.conftest import coco_decode

    doc = json.loads((tmp_path / "mask.json").read_text())
    np.testing.assert_array_equal(coco_decode(doc["annotations"][0]["segmentation"]), masks[other])

    # undo removes the background point: back to the point + box answer
    page.locator("#undo").click()
    _wait_idle(page)
    prompt = page.evaluate("window.samkit.state.lastResponse.prompt")
    assert prompt["labels"] == [1] and prompt["box"] is not None
    masks, scores = _expected(shapes_predictor, prompt)
    np.testing.assert_array_equal(_overlay_mask(page), masks[int(np.argmax(scores))])

    # clear empties the overlay
    page.locator("#clear").click()
    assert not _overlay_mask(page).any()
    assert page.evaluate("window.samkit.state.actions.length") == 0


def test_segment_everything_and_errors(page, sam1_shapes):
    from samkit import SamAutomaticMaskGenerator

    page.locator("details.settings summary").click()
    page.fill("#pps", "4")
    page.fill("#iou", "0.2")
    page.fill("#stab", "0.5")
    page.locator("#everything").click()
    _wait_idle(page)
    n = page.evaluate("window.samkit.state.everything.length")
    expected = SamAutomaticMaskGenerator(
        sam1_shapes, points_per_side=4, pred_iou_thresh=0.2, stability_score_thresh=0.5
    ).generate(load_rgb(str(SHAPES / "shapes_1.png")))
    assert n == len(expected) > 0
    union = np.any([r["segmentation"] for r in expected], axis=0)
    np.testing.assert_array_equal(_overlay_mask(page), union)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_everything.png"))

    # a file that is not an image: the page says so
    page.set_input_files(
        "#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a png"}]
    )
    page.wait_for_function("window.samkit.state.phase === 'error'")
    assert "not an image" in page.locator("#status-text").inner_text()
