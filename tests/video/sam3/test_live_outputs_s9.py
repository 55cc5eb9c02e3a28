"""Live SAM 3 video sessions keep a bounded number of output frames by default: a session on a
`LiveFrames` or an iterator (no known end) caches the outputs of its last `live_output_frames`
frames (`LIVE_OUTPUT_FRAMES`, 300, by default); a session on a whole video keeps every frame, as
the official one does; `max_output_frames` bounds both, and `live_output_frames=None` keeps a
stream's every frame. A click on a dropped frame says which setting dropped it. The tiny tracker
and stand-in detector of `tests.video.sam3.tiny` (samkit's real session code)."""

from __future__ import annotations

import pytest

from samkit.video.frames.live import LiveFrames
from samkit.video.sam3.predictor import LIVE_OUTPUT_FRAMES
from tests.video.sam3 import tiny

N = 24  # frames of the stream; the hotstart delay holds back 14 until the source is closed


def _run(p, source, frames) -> str:
    sid = p.handle_request({"type": "start_session", "resource_path": source})["session_id"]
    if isinstance(source, LiveFrames):
        source.append(frames[0])
    p.handle_request({"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "blob"})
    req = {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
    for t in range(1, len(frames)):
        if isinstance(source, LiveFrames):
            source.append(frames[t])
        list(p.handle_stream_request(req))
    if isinstance(source, LiveFrames):
        source.close()
    list(p.handle_stream_request(req))
    return sid


def _cached(p, sid: str) -> list[int]:
    return sorted(p._sessions[sid].cached_masks)


def test_default_bound_applies_to_live_sources_only() -> None:
    p = tiny.predictor()
    assert p.settings.live_output_frames == LIVE_OUTPUT_FRAMES == 300
    assert p.settings.max_output_frames is None
    frames = tiny.frames(3)
    for source, bound in ((LiveFrames(tiny.SIZE), 300), (iter(frames), 300), (frames, None)):
        sid = p.handle_request({"type": "start_session", "resource_path": source})["session_id"]
        assert p._sessions[sid].cached_masks.max_frames == bound, type(source)


@pytest.mark.parametrize(
    ("settings", "live", "whole"),
    [
        ({"live_output_frames": 6}, list(range(N - 6, N)), list(range(N))),
        ({"live_output_frames": None}, list(range(N)), list(range(N))),
        ({"live_output_frames": 6, "max_output_frames": 4}, list(range(N - 4, N)), None),
    ],
)
def test_the_bound_a_stream_keeps(settings, live, whole) -> None:
    frames = tiny.frames(N)
    p = tiny.predictor(**settings)
    sid = _run(p, LiveFrames(tiny.SIZE), frames)
    assert _cached(p, sid) == live
    if whole is not None:  # the same run on the whole video keeps every frame
        assert _cached(p, _run(p, frames, frames)) == whole
    if live[0] > 0:
        click = {"points": [[0.5, 0.5]], "point_labels": [1], "obj_id": 0}
        req = {"type": "add_prompt", "session_id": sid, "frame_index": 0, **click}
        with pytest.raises(ValueError, match=r"no longer kept .*live_output_frames on a live"):
            p.handle_request(req)


def test_a_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="live_output_frames must be None or an int >= 1, got 0"):
        tiny.predictor(live_output_frames=0)
