"""The page says what it does (issue 24): headless Debian Chromium against `samkit serve` (SAM 1).

* "Segment everything" has one vocabulary and one set of defaults: the fields come from the
  server with `samkit auto`'s defaults, and the "0 masks" explanation is visible (in the opened
  settings, next to the fields) and names those fields, not the API's parameters.
* The Video mode of a SAM 1 server shows why it cannot track: "Open video..." is disabled with
  the reason as its tooltip, and the image mode's candidate row is hidden there.
"""

from __future__ import annotations

import httpx
import pytest

from tests.server.conftest import SHAPES
from tests.server.test_browser import ARTIFACTS, CHROMIUM, browser_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def sam1_url(sam1_shapes_served):
    return sam1_shapes_served  # `samkit serve` with sam1_shapes (tests/server/conftest.py)


@pytest.fixture(scope="module")
def page(sam1_url):
    with browser_page(sam1_url, 60_000) as pg:
        pg.wait_for_function("window.samkit.state.settings.length > 0")
        yield pg


def _open_image(page) -> None:
    page.set_input_files("#file", str(SHAPES / "shapes_1.png"))
    page.wait_for_function(
        "window.samkit.state.imageId !== null && window.samkit.state.phase === 'ready'"
    )


def _segment_everything(page, **settings: str) -> None:
    page.evaluate("document.querySelector('details.settings').open = true")
    for name, value in settings.items():
        page.fill(f"#setting-{name}", value)
    page.locator("#everything").click()
    page.wait_for_function(
        "window.samkit.state.pending === 0 && window.samkit.state.phase === 'ready'"
        " && window.samkit.state.everything !== null"
    )


def test_settings_have_the_page_names_and_the_cli_defaults(page, sam1_url):
    labels = [
        " ".join(t.split()) for t in page.locator("#settings-fields label").all_text_contents()
    ]
    assert labels == ["points per side", "min predicted IoU", "min stability", "stability offset"]
    # `samkit auto`'s defaults for a SAM 1 model (the official SamAutomaticMaskGenerator's)
    values = {
        n: page.input_value(f"#setting-{n}")
        for n in (
            "points_per_side",
            "pred_iou_thresh",
            "stability_score_thresh",
            "stability_score_offset",
        )
    }
    assert values == {
        "points_per_side": "32",
        "pred_iou_thresh": "0.88",
        "stability_score_thresh": "0.95",
        "stability_score_offset": "1",
    }
    title = page.locator("label[data-setting='pred_iou_thresh']").get_attribute("title")
    assert "pred_iou_thresh in the API" in title and "--pred-iou-thresh in samkit auto" in title
    note = page.locator("#settings-note").text_content()
    assert "samkit auto" in note and "SAM 1" in note
    # the API answers with the same defaults when a setting is left out
    info = httpx.get(f"{sam1_url}/api/info").json()
    assert [s["default"] for s in info["everything_settings"]] == [32, 0.88, 0.95, 1.0]
    assert info["video"]["available"] is False and "SAM 2" in info["video"]["reason"]


def test_zero_masks_are_explained_in_the_page_words(page):
    _open_image(page)
    page.evaluate("document.querySelector('details.settings').open = false")
    _segment_everything(page, points_per_side="4", pred_iou_thresh="1")
    assert page.evaluate("window.samkit.state.everything.length") == 0
    why = page.locator("#everything-why")
    assert why.is_visible()  # the settings opened to show it, next to the fields
    text = why.inner_text()
    assert text.startswith("0 masks: all ") and '"min predicted IoU"' in text, text
    for api_name in ("pred_iou_thresh", "stability_score", "thresh"):
        assert api_name not in text, text
    named = page.locator("label.named")
    assert named.count() == 1 and named.get_attribute("data-setting") == "pred_iou_thresh"
    assert "0 masks" in page.locator("#candidates-row").inner_text()
    assert "see settings" in page.locator("#status-text").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_zero_masks.png"))

    # masks again: the explanation and the highlight go away
    _segment_everything(page, pred_iou_thresh="0", stability_score_thresh="0")
    assert page.evaluate("window.samkit.state.everything.length") > 0
    assert why.is_hidden() and page.locator("label.named").count() == 0


def test_video_mode_of_a_sam1_server_says_why_it_cannot_track(page):
    if page.evaluate("window.samkit.state.imageId") is None:
        _open_image(page)
    _segment_everything(page, points_per_side="4", pred_iou_thresh="0", stability_score_thresh="0")
    page.evaluate("document.querySelector('details.settings').open = false")
    row = page.locator("#candidates-row")
    assert row.is_visible() and "masks (segment everything)" in row.inner_text()

    page.evaluate("document.getElementById('find-row').hidden = false")  # as on a SAM 3 server
    page.locator("#mode-video").click()
    assert row.is_hidden() and page.locator("body > nav.toolbar").is_hidden()
    shown = page.evaluate(
        "[...document.body.children].filter((e) => !['SCRIPT', 'STYLE'].includes(e.tagName)"
        " && getComputedStyle(e).display !== 'none').map((e) => e.id || e.tagName)"
    )
    assert shown == ["HEADER", "video-mode"], shown  # no image-mode row above the video
    assert page.locator("#stage").is_hidden() and page.locator("#v-stage").is_visible()
    open_video = page.locator("#v-open")
    assert open_video.get_attribute("aria-disabled") == "true"
    assert "disabled" in (open_video.get_attribute("class") or "")
    assert "video tracking needs a SAM 2" in open_video.get_attribute("title")
    assert page.locator("#v-file").is_disabled()
    status = page.locator("#v-status-text")
    assert status.is_visible() and "video tracking needs a SAM 2" in status.inner_text()
    hint = page.locator("#v-drop-hint").inner_text()
    assert "Not available on this server" in hint and "with a SAM 2 model" in hint
    assert "not available" in page.locator("#mode-video").get_attribute("title")
    # the disabled chooser never opens
    with pytest.raises(Exception, match="Timeout"), page.expect_file_chooser(timeout=1000):
        open_video.click(force=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_video_sam1.png"))

    page.locator("#mode-image").click()
    assert row.is_visible() and page.locator("#v-stage").is_hidden()
    page.evaluate("document.getElementById('find-row').hidden = true")
