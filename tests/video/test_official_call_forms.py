"""Calls written as for the official `sam2` video predictor, and live-state misuse."""

from __future__ import annotations

import pytest
import torch

from samkit.video.frames.live import LiveFrames
from tests.video.conftest import random_frames


def test_init_state_takes_the_official_video_path_keyword(small):
    frames = random_frames(3, seed=5)
    by_keyword = small.init_state(video_path=frames)
    positional = small.init_state(frames)
    for state in (by_keyword, positional):
        small.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    a = [m for _, _, m in small.propagate_in_video(by_keyword)]
    b = [m for _, _, m in small.propagate_in_video(positional)]
    assert by_keyword["num_frames"] == 3 and len(a) == 3
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_track_frame_before_any_frame_says_to_add_one(small):
    state = small.init_state(LiveFrames(small.image_size))
    with pytest.raises(ValueError, match="no frame has arrived yet; add_frame"):
        small.track_frame(state)
