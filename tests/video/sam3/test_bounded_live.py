"""SAM 3 video sessions in bounded memory and on live frames, on a tiny random tracker with a
stand-in detector (`tests.video.sam3.tiny`): the tracker, loop, clicks and passes are
samkit's real code, so equalities here are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.video.frames.live import LiveFrames
from tests.video.sam3 import tiny

# a memory-selection threshold between the tiny tracker's frame scores, so that memory
# selection accepts some frames and rejects others
MF_THRESHOLD = 0.0658


def _predictor(**settings):
    p = tiny.predictor(**settings)
    p.tracker.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.data += 0.3
    p.tracker.mf_threshold = MF_THRESHOLD
    return p


def _start(p, resource) -> str:
    return p.handle_request({"type": "start_session", "resource_path": resource})["session_id"]


def _prompt(p, sid: str, frame: int, **kw) -> dict:
    req = {"type": "add_prompt", "session_id": sid, "frame_index": frame, **kw}
    return p.handle_request(req)["outputs"]


def _propagate(p, sid: str, **kw) -> dict[int, dict]:
    req = {"type": "propagate_in_video", "session_id": sid, **kw}
    return {o["frame_index"]: o["outputs"] for o in p.handle_stream_request(req)}


def _assert_same(a: dict, b: dict, what: str) -> None:
    for k in ("out_obj_ids", "out_probs", "out_boxes_xywh", "out_binary_masks"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what} {k}")


def _retained(p, sid: str) -> dict[str, int]:
    """Per-frame entries a session holds."""
    s = p._sessions[sid]
    return {
        "tracked_outputs": sum(len(st.memory.non_cond_frame_outputs) for st in s.states),
        "tracked_frames": sum(len(st.tracked) for st in s.states),
        "cached_output_frames": len(s.cached_masks),
        "tracker_scores": len(s.meta.tracker_score),
        "features": len(s.features),
        "decoded_frames": len(s.frames._cache),
    }


def test_state_stays_bounded_over_many_frames() -> None:
    p = _predictor(max_output_frames=8)
    sid = _start(p, tiny.frames(60))
    _prompt(p, sid, 0, text="blob")
    stream = p.handle_stream_request(
        {"type": "propagate_in_video", "session_id": sid, "propagation_direction": "forward"}
    )
    seen = []
    for out in stream:  # frame g is released when frame g + 14 ran (hotstart delay 15)
        seen.append((out["frame_index"] + 14, _retained(p, sid)))
    window = p.engine.window  # 15, samkit's SAM 2 memory window
    assert window == 15 and len(p._sessions[sid].states) == 1
    bound = {
        # frames within the window of the current frame and of the pass's start, and the
        # memory-selection frames nearest to them
        "tracked_outputs": 2 * (window + 1) + 4 * 15,
        "tracked_frames": 2 * (window + 1) + 4 * 15 + 1,  # + the conditioning frame
        "cached_output_frames": 8,
        "tracker_scores": 8 + 15,  # + the frames the hotstart delay holds back
        "features": 2,
        "decoded_frames": 2,
    }
    for f, counts in seen:
        for k, v in counts.items():
            assert v <= bound[k], (f, k, v)
    # past the window the state no longer grows with the frames
    late = [c["tracked_outputs"] for f, c in seen if f >= 40]
    assert max(late) <= min(late) + 15, late
    assert seen[-1][1]["cached_output_frames"] == 8
    # an output frame dropped from the cache is refused, not returned without masks
    with pytest.raises(ValueError, match=r"no longer kept .* max_output_frames"):
        _prompt(p, sid, 3, points=[[0.5, 0.5]], point_labels=[1], obj_id=0)


def test_pruned_memory_tracks_as_keeping_everything() -> None:
    """Both directions from a middle frame: the dropped memory was never read."""
    frames = tiny.frames(44)
    outs = []
    for keep_all in (False, True):
        p = _predictor()
        if keep_all:
            p.engine.window = 10**6
        sid = _start(p, frames)
        _prompt(p, sid, 22, text="blob")
        outs.append(_propagate(p, sid, propagation_direction="both"))
        s = p._sessions[sid]
        kept = len(s.states[0].memory.non_cond_frame_outputs)
        scores = [
            float(o.eff_iou_score) for o in s.states[0].memory.non_cond_frame_outputs.values()
        ]
        assert kept == 43 if keep_all else kept < 43
        # memory selection both accepted and rejected frames
        assert min(scores) <= MF_THRESHOLD < max(scores)
    assert sorted(outs[0]) == list(range(44))
    for f in outs[0]:
        _assert_same(outs[0][f], outs[1][f], f"frame {f}")


def test_live_frames_equal_propagate_in_video() -> None:
    frames = tiny.frames(20)
    p = _predictor()
    ref_sid = _start(p, frames)
    _prompt(p, ref_sid, 0, text="blob")
    ref = _propagate(p, ref_sid, propagation_direction="forward")
    assert sorted(ref) == list(range(20))

    live = LiveFrames(tiny.SIZE)
    sid = _start(p, live)
    got: dict[int, dict] = {}
    for t, frame in enumerate(frames):
        assert live.append(frame) == t
        if t == 0:
            got[0] = _prompt(p, sid, 0, text="blob")
            _assert_same(got[0], ref[0], "prompt frame")
        out = _propagate(p, sid, propagation_direction="forward")
        # the hotstart delay (15 frames) holds outputs back, as in propagate_in_video
        assert sorted(out) == ([t - 14] if t >= 14 else [])
        got.update(out)
    live.close()
    got.update(_propagate(p, sid, propagation_direction="forward"))
    assert sorted(got) == list(range(20))
    for f in ref:
        _assert_same(got[f], ref[f], f"frame {f}")


def test_live_prompts_on_arrived_frames() -> None:
    """A click on an arrived frame answers as after propagate_in_video over the frames so far;
    a text prompt on an arrived frame restarts the live pass there."""
    frames = tiny.frames(20)
    click = {"points": [[0.4, 0.3], [0.6, 0.7]], "point_labels": [1, 0]}
    p = _predictor()
    ref_sid = _start(p, frames)
    _prompt(p, ref_sid, 0, text="blob")
    _propagate(p, ref_sid, propagation_direction="forward", max_frame_num_to_track=9)
    ref_refine = _prompt(p, ref_sid, 6, obj_id=1, **click)
    ref_new = _prompt(p, ref_sid, 9, obj_id=5, **click)
    assert ref_new["out_obj_ids"].tolist()[-1] == 5 or 5 not in ref_new["out_obj_ids"]
    ref2_sid = _start(p, frames)
    _prompt(p, ref2_sid, 12, text="blob")
    ref2 = _propagate(p, ref2_sid, propagation_direction="forward")

    live = LiveFrames(tiny.SIZE)
    sid = _start(p, live)
    for t in range(10):
        live.append(frames[t])
        if t == 0:
            _prompt(p, sid, 0, text="blob")
        _propagate(p, sid, propagation_direction="forward")
    _assert_same(_prompt(p, sid, 6, obj_id=1, **click), ref_refine, "refine")
    _assert_same(_prompt(p, sid, 9, obj_id=5, **click), ref_new, "new object")
    with pytest.raises(ValueError, match="frame_index 10 is outside the video"):
        _prompt(p, sid, 10, text="blob")
    got = {}
    for t in range(10, 20):
        live.append(frames[t])
        if t == 12:
            _prompt(p, sid, 12, text="blob")
        got.update(_propagate(p, sid, propagation_direction="forward"))
    live.close()
    got.update(_propagate(p, sid, propagation_direction="forward"))
    assert sorted(got) == list(range(12, 20))
    for f in got:
        _assert_same(got[f], ref2[f], f"frame {f}")


def test_iterator_source_is_pulled_by_the_pass() -> None:
    frames = tiny.frames(18)
    p = _predictor()
    ref_sid = _start(p, frames)
    _prompt(p, ref_sid, 0, text="blob")
    ref = _propagate(p, ref_sid, propagation_direction="forward")
    sid = _start(p, iter(frames))
    assert p._sessions[sid].num_frames == 1  # the first frame is pulled at open
    _prompt(p, sid, 0, text="blob")
    got = _propagate(p, sid, propagation_direction="forward")
    assert sorted(got) == list(range(18))
    for f in ref:
        _assert_same(got[f], ref[f], f"frame {f}")
    assert torch.is_tensor(p._sessions[sid].frames[17])
