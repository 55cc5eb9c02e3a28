"""New-user trial, session 9 (b), the web app on a real uvicorn server:

- an explicit JSON null for Find's optional `threshold` means the default, as leaving it out:
  `POST /api/images/{id}/find {"text": "dog", "threshold": null}` runs at 0.5 (was 422 "...got
  None"), and the video Find runs at the server's thresholds;
- the image Find that keeps nothing suggests a threshold under its best candidate's score, and
  that threshold finds it;
- the reason /api/info gives for a model that cannot find phrases names it with its article
  ("an EdgeTAM model", `with_article`; was "a EdgeTAM model").

The sam3_tiny random weights as the 336 px checkpoint of the product tests (`sam3_small`): queries
score about 0.23, so the official thresholds find nothing. A 2-frame clip; 5 detector passes."""

from __future__ import annotations

import re

import pytest

from samkit.build.registry import FAMILY_NAMES, family_names
from samkit.configs.sam3_thresholds import suggested_threshold
from samkit.io.provenance import with_article
from samkit.server.sam3_find import find_unavailable_reason
from tests.conftest import FIXTURES

pytestmark = [
    pytest.mark.skipif(
        not (FIXTURES / "sam3_tiny" / "sam3_tiny.pt").is_file(),
        reason="no ../shared/fixtures/sam3_tiny",
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def served(sam3_served):
    """(client, image id, video id): `tests/server/conftest.sam3_served`."""
    return sam3_served


def test_image_find_null_threshold_is_the_default(served) -> None:
    c, image_id, _ = served
    url = f"/api/images/{image_id}/find"
    null = c.post(url, content='{"text": "dog", "threshold": null}')
    assert null.status_code == 200, null.text
    left_out = c.post(url, json={"text": "dog"})
    assert left_out.status_code == 200, left_out.text
    a, b = null.json(), left_out.json()
    assert a["threshold"] == b["threshold"] == 0.5
    assert a["best_score"] == b["best_score"] and len(a["instances"]) == len(b["instances"])


def test_video_find_null_threshold_is_the_servers(served) -> None:
    c, _, video_id = served
    url = f"/api/videos/{video_id}/find"
    null = c.post(url, content='{"frame": 0, "text": "person", "threshold": null, "box": null}')
    assert null.status_code == 200, null.text
    left_out = c.post(url, json={"frame": 0, "text": "person"})
    assert left_out.status_code == 200, left_out.text
    assert null.json()["thresholds"] == left_out.json()["thresholds"]
    assert null.json()["threshold"] == left_out.json()["threshold"] == 0.5


def test_image_find_suggests_a_threshold_that_finds_the_best_candidate(served) -> None:
    c, image_id, _ = served
    url = f"/api/images/{image_id}/find"
    out = c.post(url, json={"text": "truck", "threshold": 0.9}).json()
    assert out["instances"] == [], out
    best = out["best_score"]
    m = re.search(r'\(e\.g\. "threshold": ([0-9.]+)\)', out["message"])
    assert m, out["message"]
    hint = float(m.group(1))
    assert hint == suggested_threshold(best) and 0 < hint < best, (best, out["message"])
    again = c.post(url, json={"text": "truck", "threshold": hint}).json()
    assert again["instances"], again


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f not in family_names("concepts")])
def test_find_reason_names_the_model_with_its_article(family) -> None:
    reason = find_unavailable_reason(family)
    assert reason is not None
    assert f"this server runs {with_article(FAMILY_NAMES[family])} model," in reason, reason
    assert "needs a SAM 3 model" in reason, reason
    if family == "edgetam":
        assert "runs an EdgeTAM model" in reason and "a EdgeTAM" not in reason, reason
