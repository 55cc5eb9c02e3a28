"""Every recorded official video session of the SAM 2-style families, replayed call by call
with samkit's torch video predictors (tests/video/replay.py: the recordings, their storage and
tolerances): SAM 2 (../shared/fixtures/sam2_video), EfficientTAM (tests/fixtures/efficienttam:
the pooled `efficient1` cross-attention, and `two_objects_forward` with `rope` and `efficient2`)
and EdgeTAM (tests/fixtures/edgetam: the batched sam2 1.0-era rules; `two_objects_forward` is
where they change the numbers, the correction on frame 5 consolidated for both objects and
reused; tests/light/test_edgetam_video checks the rules the sessions do not reach).

Each family's cheapest session (`mask_prompt_reverse`, one object, 14 frames) is in the quick
run (`-m "not slow"`); the others are marked slow (about a minute each on the loaded 2-core
machine, 1024 px frames). tests/export/test_ort_video compares the onnxruntime predictor with
the torch one on the SAM 2 sessions, which makes this comparison first in a whole-suite run."""

from __future__ import annotations

import pytest

from tests.video.replay import RECORDINGS, torch_replay

CHEAP = "mask_prompt_reverse"
CASES = [
    pytest.param(family, s["name"], id=f"{family}-{s['name']}")
    if s["name"] == CHEAP
    else pytest.param(family, s["name"], id=f"{family}-{s['name']}", marks=pytest.mark.slow)
    for family, rec in RECORDINGS.items()
    for s in rec.sessions()
]


@pytest.mark.parametrize("family,name", CASES)
def test_recorded_session_matches_official(family: str, name: str) -> None:
    torch_replay(family, name)


def test_every_family_has_the_cheap_session() -> None:
    for family, rec in RECORDINGS.items():
        assert CHEAP in [s["name"] for s in rec.sessions()], family
