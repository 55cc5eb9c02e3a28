"""`frames_to_track` / `start_frame_for` / `frames_after_start` (samkit track's frame counts) against what
`propagate_in_video` really yields, on the small fixture-sized model."""

from __future__ import annotations

import pytest

from samkit.video.track import frames_after_start, frames_to_track, start_frame_for
from tests.video.conftest import random_frames

N = 5


@pytest.fixture(scope="module")
def prompted(small):
    state = small.init_state(random_frames(N))
    small.add_new_points_or_box(state, 1, 1, points=[[20, 20]], labels=[1])
    small.add_new_points_or_box(state, 3, 2, points=[[40, 30]], labels=[1])
    return state


@pytest.mark.parametrize(
    ("start", "count", "reverse"),
    [
        (None, None, False),
        (None, None, True),
        (None, 1, True),
        (0, None, True),  # reverse from frame 0 yields nothing (the official rule)
        (0, 2, False),
        (4, 3, False),
        (4, 0, True),
        (2, 1, True),
    ],
)
def test_counts_equal_the_frames_yielded(small, prompted, start, count, reverse):
    begin = start_frame_for([1, 3], start, reverse)
    assert begin == (start if start is not None else 3 if reverse else 1)
    got = [
        f
        for f, _, _ in small.propagate_in_video(
            prompted, start_frame_idx=begin, max_frame_num_to_track=count, reverse=reverse
        )
    ]
    assert frames_to_track(N, [1, 3], start, count, reverse) == len(got)
    if got:
        assert got[0] == begin


@pytest.mark.parametrize("reverse", [False, True])
def test_frames_after_start_yields_that_many_frames(small, prompted, reverse):
    for n in (1, 2, 3):
        count = frames_after_start(n)
        got = list(
            small.propagate_in_video(
                prompted, start_frame_idx=3, max_frame_num_to_track=count, reverse=reverse
            )
        )
        assert len(got) == min(n, 2 if not reverse else 4)
    assert frames_after_start(None) is None
    with pytest.raises(ValueError, match=r"--max-frames must be >= 1 .* got 0"):
        frames_after_start(0, "--max-frames")
