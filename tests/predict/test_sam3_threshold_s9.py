"""One SAM 3 threshold rule everywhere: the Python API (`Sam3Processor(confidence_threshold=)`,
`Sam3Processor.set_confidence_threshold`, `Sam3VideoPredictor.start_session`'s
`score_threshold_detection` / `new_det_thresh`) refuses what the CLI and the web app refuse, a
threshold not strictly between 0 and 1, in the same words
(`samkit.configs.sam3_thresholds.check_score_threshold`), so a threshold that works in a
notebook works on the command line. The rule's source: the official code keeps a detection
scoring above the threshold, so 0 would keep every query and 1 none."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from samkit.build.sam3 import build_sam3_image_model
from samkit.build.sam3_video import sam3_tracker_from_sizes
from samkit.configs.sam3_thresholds import check_score_threshold
from samkit.predict.sam3 import Sam3Processor
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings
from tests.fixtures.sam3_small import IMG_SIZE
from tests.video.sam3 import tiny

BAD = [0, 0.0, 1, 1.0, np.float32(1.0), -0.1, 1.5, float("nan"), True, "0.5"]


def _words(value, name: str) -> str:
    """The message the CLI and the web app give for `value` (check_score_threshold's)."""
    with pytest.raises(ValueError) as err:
        check_score_threshold(value, name)
    return str(err.value)


@pytest.fixture(scope="module")
def model(sam3_small):
    return build_sam3_image_model(checkpoint_path=sam3_small, enable_inst_interactivity=False)


@pytest.fixture(scope="module")
def video_predictor() -> Sam3VideoPredictor:
    torch.manual_seed(0)
    tracker = sam3_tracker_from_sizes(1, 64, 1, d_model=tiny.D, mem_dim=16, image_size=tiny.SIZE)
    settings = Sam3VideoSettings(**tiny.SETTINGS)
    return Sam3VideoPredictor(None, tracker.eval(), settings, detector=tiny.StandInDetector())


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_processor_refuses_what_the_cli_refuses_in_the_same_words(model, bad) -> None:
    want = re.escape(_words(bad, "confidence_threshold"))
    with pytest.raises(ValueError, match=want):
        Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=bad)
    proc = Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=0.3)
    with pytest.raises(ValueError, match=want):
        proc.set_confidence_threshold(bad)
    assert proc.confidence_threshold == 0.3  # a refused threshold changes nothing


@pytest.mark.parametrize("name", ["score_threshold_detection", "new_det_thresh"])
@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_video_session_refuses_what_the_cli_refuses_in_the_same_words(
    video_predictor, name, bad
) -> None:
    with pytest.raises(ValueError, match=re.escape(_words(bad, name))):
        video_predictor.start_session(tiny.frames(1), **{name: bad})


def test_thresholds_just_inside_the_range_are_taken(model, video_predictor) -> None:
    for t in (1e-6, 0.5, 1 - 1e-6, np.float32(0.25)):
        proc = Sam3Processor(model, resolution=IMG_SIZE, confidence_threshold=t)
        assert proc.confidence_threshold == float(t)
        proc.set_confidence_threshold(t)
        sid = video_predictor.start_session(
            tiny.frames(1), score_threshold_detection=t, new_det_thresh=t
        )["session_id"]
        video_predictor.handle_request({"type": "close_session", "session_id": sid})
