"""`Sam3VideoSettings` built directly by a Python user checks its thresholds, by the rule of
`samkit.configs.sam3_thresholds`: the detection scores (`score_threshold_detection`,
`new_det_thresh`) strictly between 0 and 1, as `start_session`, the CLI and the web app take
them (a detection is kept when its score is strictly above the threshold); the mask-IoU
thresholds from 0 to 1. The ValueError names the field and the range, before any checkpoint
is read."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from samkit.configs.sam3_thresholds import (
    VIDEO_IOU_THRESHOLDS,
    VIDEO_SCORE_THRESHOLDS,
    check_score_threshold,
)
from samkit.video.sam3.build import build_sam3_video_predictor
from samkit.video.sam3.predictor import Sam3VideoSettings

BAD_SCORES = [0, 1.0, -0.1, 1.5, float("nan"), True, "0.5", None]
BAD_IOUS = [-0.1, 1.5, float("nan"), True, "0.3", None]


@pytest.mark.parametrize("name", VIDEO_SCORE_THRESHOLDS)
@pytest.mark.parametrize("bad", BAD_SCORES, ids=repr)
def test_score_thresholds_refused_in_the_shared_words(name: str, bad: object) -> None:
    with pytest.raises(ValueError) as want:
        check_score_threshold(bad, f"Sam3VideoSettings.{name}")
    with pytest.raises(ValueError, match=re.escape(str(want.value))):
        Sam3VideoSettings(**{name: bad})


@pytest.mark.parametrize("name", VIDEO_IOU_THRESHOLDS)
@pytest.mark.parametrize("bad", BAD_IOUS, ids=repr)
def test_iou_thresholds_refused_with_the_field_and_range(name: str, bad: object) -> None:
    with pytest.raises(
        ValueError, match=rf"^Sam3VideoSettings\.{name} must be a number from 0 to 1"
    ):
        Sam3VideoSettings(**{name: bad})


def test_every_float_threshold_field_is_checked() -> None:
    fields = {f.name for f in dataclasses.fields(Sam3VideoSettings) if f.type == "float"}
    assert fields == set(VIDEO_SCORE_THRESHOLDS) | set(VIDEO_IOU_THRESHOLDS)


def test_replace_checks_too_and_good_values_pass() -> None:
    s = Sam3VideoSettings(
        score_threshold_detection=np.float32(0.25), new_det_thresh=1e-6, det_nms_thresh=1
    )
    assert Sam3VideoSettings(assoc_iou_thresh=0, occlusion_iou_thresh=1.0).assoc_iou_thresh == 0
    with pytest.raises(ValueError, match=r"Sam3VideoSettings\.new_det_thresh must be"):
        dataclasses.replace(s, new_det_thresh=1.0)


def test_builder_refuses_before_reading_the_checkpoint(tmp_path) -> None:
    missing = tmp_path / "no_such_sam3.pt"  # a read would raise FileNotFoundError
    with pytest.raises(ValueError, match=r"Sam3VideoSettings\.score_threshold_detection must be"):
        build_sam3_video_predictor(missing, score_threshold_detection=0.0)
