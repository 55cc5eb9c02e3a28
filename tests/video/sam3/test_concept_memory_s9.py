"""What a SAM 3 concept tracker holds per video (`samkit track --text`, the web app's SAM 3 video
sessions): a video opened as a `VideoFrames` stays a `VideoFrames`, decoded when a session needs
a frame (the state held every decoded frame: H x W x 3 bytes each, 3.7 GB for 600 frames at
1920x1080), and the masks kept for later clicks are run-length encoded (they took H x W / 8
bytes per object and frame). The answers are those of the same video given as a list of arrays.
The sam3_tiny random weights as the 336 px checkpoint of the product tests (`sam3_small`) on the
first 2 frames of the SAM 2 video fixture, at a threshold that finds instances."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from samkit.video.frames.folder import VideoFrames
from samkit.video.frames.sources import open_video
from tests.conftest import FIXTURES

N = 2
THRESHOLD = 0.228  # under the random weights' best scores (about 0.23): a few instances
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "sam3_tiny" / "sam3_tiny.pt").is_file(),
    reason="no ../shared/fixtures/sam3_tiny",
)


def _run(tracker, video) -> tuple[object, list]:
    state = tracker.init_state(video)
    out = [tracker.find(state, 0, "person", threshold=THRESHOLD)]
    out += list(tracker.propagate_in_video(state, start_frame_idx=0))
    return state, out


def test_a_video_is_decoded_when_used_and_masks_are_kept_small(tmp_path, sam3_small) -> None:
    from samkit.video.track_concepts import build_concept_tracker

    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(N):
        shutil.copy(FIXTURES / "sam2_video" / "frames" / f"{i:05d}.jpg", clip / f"{i:05d}.jpg")
    tracker = build_concept_tracker(checkpoint=sam3_small, keep_outputs=True)
    video = open_video(clip, tracker.image_size)
    calls: list[int] = []
    rgb = video.rgb
    video.rgb = lambda t: (calls.append(t), rgb(t))[1]  # count the frames decoded
    state = tracker.init_state(video)
    assert state.frames is video and calls == [], "init_state decoded frames"
    tracker.close_state(state)

    arrays = [np.asarray(rgb(t)) for t in range(N)]
    state_list, want = _run(tracker, arrays)
    state, got = _run(tracker, video)
    assert isinstance(state.frames, VideoFrames) and isinstance(state_list.frames, list)
    assert [(t, ids) for t, ids, _ in got] == [(t, ids) for t, ids, _ in want]
    assert got[0][1], "the threshold finds instances"
    for (t, _, a), (_, _, b) in zip(got, want):
        assert torch.equal(a, b), t
    # the kept masks (clicks after tracking) decode to the outputs, in far fewer bytes
    h, w = state.video_height, state.video_width
    last = {t: dict(zip(ids, m[:, 0].numpy())) for t, ids, m in got}
    for t, masks in last.items():
        kept = state.kept(t)
        assert sorted(kept) == sorted(masks)
        for o, m in masks.items():
            assert np.array_equal(kept[o], m), (t, o)
            assert state.last[t][o].nbytes <= h * w / 8, (t, o, state.last[t][o].nbytes)
    tracker.close_state(state)
    tracker.close_state(state_list)
