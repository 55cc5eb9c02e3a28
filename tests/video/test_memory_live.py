"""Constant memory on long videos and the live-frame path (== propagate_in_video)."""

from __future__ import annotations

import torch

from samkit.video.frames.live import LiveFrames
from samkit.video.frames.sources import open_video
from samkit.video.session import memory_window
from tests.video.conftest import random_frames


def test_state_stops_growing_after_the_memory_window(small):
    frames = random_frames(40)
    state = small.init_state(frames)
    small.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    small.add_new_points_or_box(state, 0, 2, box=[5, 5, 25, 30])
    sizes = {}
    kept = {}
    for f, ids, masks in small.propagate_in_video(state):
        assert masks.shape == (2, 1, 48, 64) and list(ids) == [1, 2]
        if f in (20, 39):
            sizes[f] = state.nbytes()
            kept[f] = len(state.objects[0].memory.non_cond_frame_outputs)
    window = memory_window(small.model)
    assert window == 15
    assert kept == {20: window + 1, 39: window + 1}  # frames 5..20 and 24..39
    assert sizes[39] == sizes[20]
    # what a kept frame costs: memory features (bf16), low-res logits, pointer, score
    per_frame = 64 * 8 * 8 * 2 + 32 * 32 * 4 + 256 * 4 + 4
    assert sizes[39] < 2 * (window + 1) * per_frame + 2 * 2**20  # + 2 cached feature frames
    # tracking state is still complete enough to continue: a correction click on a kept frame
    f, ids, masks = small.add_new_points_or_box(
        state, 38, 1, points=[[10, 10]], labels=[0], clear_old_points=False
    )
    assert f == 38 and masks.shape == (2, 1, 48, 64)


def _reference(small, frames):
    """propagate_in_video in two steps: object 1 from frame 0, object 2 added on frame 3."""
    state = small.init_state(open_video(frames, small.image_size))
    small.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    out = {f: m.clone() for f, _, m in small.propagate_in_video(state, max_frame_num_to_track=2)}
    small.add_new_points_or_box(state, 3, 2, box=[5, 5, 25, 30])
    small.add_new_points_or_box(state, 5, 1, points=[[40, 30]], labels=[1], clear_old_points=False)
    out.update({f: m.clone() for f, _, m in small.propagate_in_video(state, start_frame_idx=3)})
    return out


def test_live_frames_equal_propagate_in_video(small):
    frames = random_frames(18, seed=1)
    ref = _reference(small, frames)
    assert sorted(ref) == list(range(18))

    state = small.init_state(LiveFrames(small.image_size))
    assert state["num_frames"] == 0
    got = {}
    for t, frame in enumerate(frames):
        idx = small.add_frame(state, frame)
        assert idx == t and state["num_frames"] == t + 1
        assert (state["video_height"], state["video_width"]) == (48, 64)
        if t == 0:
            small.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
        if t == 3:
            small.add_new_points_or_box(state, 3, 2, box=[5, 5, 25, 30])
        f, ids, masks = small.track_frame(state)
        assert f == t and list(ids) == ([1] if t < 3 else [1, 2])
        got[f] = masks.clone()
        if t == 4:  # a correction added before frame 5 is tracked, as in the reference
            small.add_frame(state, frames[5])
            small.add_new_points_or_box(
                state, 5, 1, points=[[40, 30]], labels=[1], clear_old_points=False
            )
            frames_done = 5
            f, ids, masks = small.track_frame(state, frames_done)
            got[f] = masks.clone()
            break
    for t in range(6, 18):
        f, ids, masks = small.track_new_frame(state, frames[t])
        got[f] = masks.clone()
    assert sorted(got) == sorted(ref)
    for f in ref:
        torch.testing.assert_close(got[f], ref[f], rtol=0, atol=1e-6, msg=f"frame {f}")


def test_live_iterator_source_pulls_frames(small):
    frames = random_frames(5, seed=2)
    state = small.init_state(iter(frames))
    small.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    for t in range(5):
        f, _, masks = small.track_frame(state, t)
        assert f == t and masks.shape == (1, 1, 48, 64)
    assert state["num_frames"] == 5
