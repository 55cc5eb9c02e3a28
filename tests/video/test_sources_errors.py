"""Frame sources give the same masks; bad input is a ValueError naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.video.frames.live import LiveFrames
from tests.video.clips import encode_video, moving_shapes, write_jpeg_folder


def _track(predictor, video) -> dict[int, torch.Tensor]:
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[12, 20]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 2, box=[38, 20, 60, 44])
    return {f: m.clone() for f, _, m in predictor.propagate_in_video(state)}


def test_mp4_arrays_live_and_folder_give_the_same_masks(small, tmp_path):
    pytest.importorskip("av")
    frames = write_jpeg_folder(tmp_path / "jpg", moving_shapes(n=4))  # as decoded from the JPEGs
    ref = _track(small, str(tmp_path / "jpg"))
    assert sorted(ref) == [0, 1, 2, 3]
    mp4 = encode_video(tmp_path / "clip.mp4", frames)  # lossless H.264 RGB
    for video in (str(mp4), frames, [f.copy() for f in frames]):
        got = _track(small, video)
        for f in ref:
            torch.testing.assert_close(got[f], ref[f], rtol=0, atol=0)
    live = LiveFrames(small.image_size)
    state = small.init_state(live)
    for t, frame in enumerate(frames):
        small.add_frame(state, frame)
        if t == 0:
            small.add_new_points_or_box(state, 0, 1, points=[[12, 20]], labels=[1])
            small.add_new_points_or_box(state, 0, 2, box=[38, 20, 60, 44])
        f, _, masks = small.track_frame(state)
        # a 4-frame video's pointer window is 4 frames, live assumes >= 16: equal on frames
        # that have no pointer from more than one frame back yet (frames 0 and 1), close after
        if f <= 1:
            torch.testing.assert_close(masks, ref[f], rtol=0, atol=0)
        assert ((masks > 0) == (ref[f] > 0)).float().mean() > 0.95


@pytest.fixture()
def state(small):
    return small.init_state(moving_shapes(n=3))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p, s: p.add_new_points_or_box(s, 3, 1, [[1, 1]], [1]), "outside the video"),
        (lambda p, s: p.add_new_points_or_box(s, -1, 1, [[1, 1]], [1]), "outside the video"),
        (lambda p, s: p.add_new_mask(s, 5, 1, np.ones((48, 64), bool)), "outside the video"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[1, 1]]), "together"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, labels=[1]), "together"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, [[1, 1], [2, 2]], [1]), "one label"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, [[1, 1, 1]], [1]), "Nx2"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, [[np.nan, 1]], [1]), "NaN"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, [[1, 1]], [5]), "labels must be"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1), "points with labels, or a box"),
        (
            lambda p, s: p.add_new_points_or_box(s, 0, 1, box=[1, 2, 3, 4], clear_old_points=False),
            "clear_old_points=True",
        ),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, box=[1, 2, 3]), r"\(x0, y0, x1, y1\)"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.ones((40, 64), bool)), "video size"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.ones((2, 48, 64), bool)), "2-D"),
        (lambda p, s: next(p.propagate_in_video(s)), "no prompts yet"),
        (lambda p, s: p.clear_all_prompts_in_frame(s, 0, 7), "unknown object id"),
        (lambda p, s: p.add_frame(s, np.zeros((48, 64, 3), np.uint8)), "live state"),
    ],
)
def test_bad_input_is_a_value_error(small, state, call, match):
    with pytest.raises(ValueError, match=match):
        call(small, state)


def test_a_frame_source_of_another_input_size_is_an_error(small):
    with pytest.raises(ValueError, match="1024-pixel inputs but the model needs 128"):
        small.init_state(LiveFrames(1024))


def test_prompts_for_a_removed_object_are_an_error(small, state):
    small.add_new_points_or_box(state, 0, 1, [[12, 20]], [1])
    small.add_new_points_or_box(state, 0, 2, [[40, 30]], [1])
    ids, _ = small.remove_object(state, 1)
    assert ids == [2] and state["obj_ids"] == [2]
    with pytest.raises(ValueError, match="was removed"):
        small.add_new_points_or_box(state, 1, 1, [[12, 20]], [1])
    with pytest.raises(ValueError, match="was removed"):
        small.add_new_mask(state, 1, 1, np.ones((48, 64), bool))
    with pytest.raises(ValueError, match="outside the video"):
        next(small.propagate_in_video(state, start_frame_idx=9))
    small.reset_state(state)  # a reset forgets removed ids
    small.add_new_points_or_box(state, 0, 1, [[12, 20]], [1])
    assert state["obj_ids"] == [1]


def test_reverse_tracking_from_after_the_only_prompt_runs_on_cpu(small):
    # the official predictor fails here on a CPU (bfloat16 memories meet float32 weights when no
    # object pointer is in range); samkit uses the memories in float32
    state = small.init_state(moving_shapes(n=5))
    small.add_new_points_or_box(state, 1, 1, [[12, 20]], [1])
    got = [f for f, _, m in small.propagate_in_video(state, start_frame_idx=4, reverse=True)]
    assert got == [4, 3, 2, 1, 0]
    out = state.objects[0].memory.non_cond_frame_outputs
    assert out[4].maskmem_features.dtype == torch.bfloat16
