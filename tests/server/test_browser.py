"""End to end: headless Debian Chromium (Playwright) against `samkit serve` in a subprocess."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import IMAGES, load_rgb
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


@contextlib.contextmanager
def running_server(model: Path, checkpoint: Path, *options: str) -> Iterator[str]:
    """`samkit serve` (with more `options`) on a free port in a subprocess; yields its URL once
    /api/info answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "samkit", "serve", "--port", str(port),
        "--model", str(model), "--checkpoint", str(checkpoint), *options,
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
def server_url(sam1_shapes_served):
    return sam1_shapes_served  # `samkit serve` with sam1_shapes (tests/server/conftest.py)


@contextlib.contextmanager
def browser_page(url: str, timeout_ms: int, ignore: tuple[str, ...] = ()) -> Iterator[Any]:
    """A headless Chromium page (Playwright) on `url`. On exit the browser is closed and
    console / page errors fail the test, except messages containing one of `ignore`."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    messages: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1100, "height": 900}, accept_downloads=True
            )
            pg = context.new_page()
            pg.set_default_timeout(timeout_ms)
            pg.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            pg.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            pg.goto(url)
            yield pg
        finally:
            browser.close()
    errors = [
        m
        for m in messages
        if m.startswith(("error", "pageerror")) and not any(i in m for i in ignore)
    ]
    assert not errors, errors


@pytest.fixture(scope="module")
def page(server_url):
    # the 400 is the deliberate non-image upload of test_segment_everything_and_errors
    with browser_page(server_url, 60_000, ignore=("status of 400",)) as pg:
        yield pg


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
    with Image.open(png) as im:
        assert im.mode == "1"  # samkit's one mask PNG format (samkit.io.atomic.mask_png_bytes)
        np.testing.assert_array_equal(np.array(im), masks[other])
    with page.expect_download() as dl:
        page.locator("#download-json").click()
    dl.value.save_as(tmp_path / "mask.json")
    import json

    from tests.server.conftest import coco_decode

    doc = json.loads((tmp_path / "mask.json").read_text())
    np.testing.assert_array_equal(coco_decode(doc["annotations"][0]["segmentation"]), masks[other])
    from pycocotools.coco import COCO  # a real COCO file, as `samkit auto` writes

    coco = COCO(str(tmp_path / "mask.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=coco.getImgIds()))
    np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[other])

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
    page.fill("#setting-points_per_side", "4")
    page.fill("#setting-pred_iou_thresh", "0.2")
    page.fill("#setting-stability_score_thresh", "0.5")
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

    # a file that is not an image: the page says so, and keeps the image it had, usable
    shown = page.evaluate("window.samkit.state.imageId")
    page.set_input_files(
        "#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a png"}]
    )
    page.wait_for_function("window.samkit.state.phase === 'error'")
    status = page.locator("#status-text").inner_text()
    assert "not an image" in status and "Still showing shapes_1.png" in status
    assert page.evaluate("window.samkit.state.imageId") == shown
    assert page.locator("#everything").is_enabled()
    assert not page.locator("#layers").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "browser_rejected_upload.png"))


# ---------------------------------------------------------------- a newcomer's first hour (issue 15)


def _open(page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "window.samkit.state.imageId !== null && window.samkit.state.phase === 'ready'"
    )


def _fully_visible(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    inner = page.evaluate("[window.innerWidth, window.innerHeight]")
    return (
        box["y"] >= 0
        and box["y"] + box["height"] <= inner[1]
        and box["x"] + box["width"] <= inner[0]
    )


def test_layout_does_not_move_and_settings_float(page):
    page.evaluate("document.querySelector('details.settings').open = false")
    page.set_viewport_size({"width": 1100, "height": 700})
    _open(page, SHAPES / "shapes_1.png")
    assert "click the image" in page.locator("#candidates").inner_text()
    before = page.locator("#layers").bounding_box()
    assert _fully_visible(page, "#layers")
    page.mouse.click(*_screen(page, 200, 150))
    _wait_idle(page)
    assert page.locator("#candidates button").count() == 3
    assert page.locator("#layers").bounding_box() == before  # the candidate row was reserved
    assert "Candidate masks (predicted IoU)" in page.locator(".candidates").inner_text()
    for text in page.locator("#candidates button").all_inner_texts():
        assert re.fullmatch(r"Mask \d IoU \d\.\d{3}", " ".join(text.split())), text

    toolbar = page.locator("body > nav.toolbar").bounding_box()
    page.locator("details.settings summary").click()
    assert page.locator("#setting-points_per_side").is_visible()
    assert page.locator("#setting-stability_score_offset").is_visible()
    assert page.locator("body > nav.toolbar").bounding_box() == toolbar  # no wrapping
    assert page.locator("#layers").bounding_box() == before and _fully_visible(page, "#layers")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_settings_open.png"))
    page.locator("details.settings summary").click()

    # a narrow window wraps the toolbar: the image shrinks to stay whole
    page.set_viewport_size({"width": 640, "height": 600})
    page.wait_for_function(  # after the resize handler ran (slow on a loaded machine)
        "(() => { const r = document.getElementById('layers').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; })()",
        timeout=20_000,
    )
    assert _fully_visible(page, "#layers")
    page.screenshot(path=str(ARTIFACTS / "browser_narrow.png"))
    page.set_viewport_size({"width": 1100, "height": 900})


def test_prompts_outside_the_image_show_a_warning(page):
    page.evaluate("window.samkit.state.actions = []")
    page.evaluate(
        "window.samkit.state.actions.push({type: 'point', x: -10, y: -10, label: 1});"
        "window.samkit.predict()"
    )
    _wait_idle(page)
    assert page.evaluate("window.samkit.state.lastResponse.warnings") == [
        "point 0 (-10, -10) is outside the 640x480 image (x in [0, 640], y in [0, 480]); "
        "it is used as given"
    ]
    warning = page.locator("#warning-text")
    assert warning.is_visible() and "outside the 640x480 image" in warning.inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser_warning.png"))
    page.locator("#clear").click()
    assert warning.is_hidden()


def test_the_photo_is_shown_while_its_embedding_is_computed(page):
    held = []
    page.route("**/api/images", lambda route: held.append(route))
    try:
        page.set_input_files("#file", str(IMAGES / "dog.jpg"))
        page.wait_for_function(
            "!document.getElementById('layers').hidden && window.samkit.state.width === 800"
        )
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert held, "the upload request was not sent"
        # the server has not answered: no embedding yet, but the photo is on screen
        assert page.evaluate("window.samkit.state.imageId") is None
        assert page.evaluate("window.samkit.state.phase") in ("uploading", "encoding")
        assert page.locator("#everything").is_disabled()
        sample = page.evaluate(
            """() => {
              const c = document.getElementById('image-layer');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const out = [];
              for (let y = 0; y < c.height; y += 16)
                for (let x = 0; x < c.width; x += 16)
                  for (let k = 0; k < 3; k++) out.push(d[4 * (y * c.width + x) + k]);
              return out;
            }"""
        )
        expected = load_rgb("dog.jpg")[::16, ::16].astype(float).ravel()
        assert (
            np.abs(np.array(sample, float) - expected).mean() < 4
        )  # JPEG decoders differ a little
        page.screenshot(path=str(ARTIFACTS / "browser_encoding.png"))
    finally:
        for route in held:
            route.continue_()
        page.unroute("**/api/images")
    page.wait_for_function(
        "window.samkit.state.imageId !== null && window.samkit.state.phase === 'ready'"
    )
    assert page.locator("#everything").is_enabled()
