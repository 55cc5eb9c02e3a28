"""End to end with a SAM 3 model: `samkit serve --model sam3` in a subprocess, headless Debian
Chromium types a phrase, sees the instances, toggles one, clicks, downloads the COCO JSON. The
checkpoint is the 336 px one of the product tests (the `sam3_small` fixture,
tests/fixtures/sam3_small.py: the sam3_tiny random weights at 24x24 tokens instead of 72x72,
scoring as the fixture does): the claim is the page and the server, not parity."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import IMAGES
from tests.server.test_browser import ARTIFACTS, CHROMIUM, browser_page, running_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
]

_FIND_LAYER = """() => {
  const c = document.getElementById("find-layer");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const bytes = new Uint8Array(d.length / 4);
  for (let j = 0; j < bytes.length; j++) bytes[j] = d[4 * j + 3] > 0 ? 1 : 0;
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}"""


def _find_layer(page) -> np.ndarray:
    st = page.evaluate("({w: window.samkit.state.width, h: window.samkit.state.height})")
    raw = base64.b64decode(page.evaluate(_FIND_LAYER))
    return np.frombuffer(raw, np.uint8).reshape(st["h"], st["w"]).astype(bool)


def _union(instances: list[dict]) -> np.ndarray:
    rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            for a in instances]  # fmt: skip
    return mask_utils.decode(rles).any(axis=2)


def test_find_toggle_click_download(tmp_path, sam3_small):
    with (
        running_server("sam3", sam3_small) as url,
        browser_page(url, 120_000) as page,
    ):
        page.wait_for_selector("#find-row:not([hidden])")
        assert "SAM 3" in page.text_content("#model")
        # a sam3.pt with the tracker's tensors: the page's video mode is on (with its Find box)
        info = page.evaluate("fetch('/api/videos').then((r) => r.json())")
        assert info["available"], info
        page.set_input_files("#file", str(IMAGES / "truck.jpg"))
        page.wait_for_function(
            "window.samkit.state.imageId !== null && window.samkit.state.phase === 'ready'"
        )
        assert page.locator("#everything").is_disabled()  # SAM 3: the Find box instead

        page.fill("#find-threshold", "0.1")  # the tiny fixture's scores are about 0.2
        page.fill("#find-text", "truck")
        page.press("#find-text", "Enter")
        page.wait_for_function(
            "!window.samkitFind.find.pending && window.samkitFind.find.instances.length > 0"
        )
        instances = page.evaluate("window.samkitFind.find.instances.map(({mask, ...a}) => a)")
        n = len(instances)
        assert n >= 2 and page.locator(".find-item").count() == n
        assert page.locator(".find-item .score").first.text_content() == (
            f"{instances[0]['score']:.3f}"
        )
        np.testing.assert_array_equal(_find_layer(page), _union(instances))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_sam3_instances.png"))

        # toggle the best instance off: the overlay shows only the others
        page.locator(".find-item input[type=checkbox]").first.uncheck()
        np.testing.assert_array_equal(_find_layer(page), _union(instances[1:]))

        assert page.text_content(".find-count") == f"{n} instances (score):"

        # refine the second instance: its box is the click prompt (the interactive head), then
        # a click adds a point to it; the instances stay
        page.locator(".find-item button.refine").nth(1).click()
        page.wait_for_function(
            "window.samkit.state.pending === 0 && window.samkit.state.candidates.length === 3"
        )
        assert page.evaluate("window.samkit.state.actions[0].type") == "box"
        box = page.locator("#prompt-layer").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(
            "window.samkit.state.pending === 0 && window.samkit.state.actions.length === 2"
            " && window.samkit.state.lastResponse.prompt.points.length === 1"
        )
        assert page.evaluate("window.samkit.state.lastResponse.prompt.box") is not None
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_sam3_find.png"))

        with page.expect_download() as dl:
            page.click("#find-download")
        path = tmp_path / "find.json"
        dl.value.save_as(path)

    doc = json.loads(path.read_text())
    assert doc["categories"] == [{"id": 1, "name": "truck", "supercategory": "concept"}]
    assert [a["score"] for a in doc["annotations"]] == [a["score"] for a in instances[1:]]
    assert [a["bbox"] for a in doc["annotations"]] == [a["bbox"] for a in instances[1:]]
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = doc
    coco.createIndex()
    assert len(coco.getAnnIds(catIds=[1])) == n - 1
