"""The typed video session (`samkit.video.session.InferenceSession`) without a model: the
official keys, object id <-> index maps, the feature cache, pruning and byte counts."""

from __future__ import annotations

import pytest
import torch

from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput
from samkit.video.frames.live import LiveFrames
from samkit.video.frames.sources import open_video
from samkit.video.session import FEATURE_CACHE_FRAMES, InferenceSession, ObjectState
from tests.video.conftest import random_frames


def _session(n: int = 4) -> InferenceSession:
    return InferenceSession.open(open_video(random_frames(n), 128), torch.device("cpu"))


def _output(score: float = 1.0) -> FrameOutput:
    return FrameOutput(torch.zeros(1, 1, 4, 4), torch.zeros(1, 8), torch.full((1, 1), score))


def test_the_official_keys_read_and_the_rest_is_typed():
    s = _session()
    s.put_object(ObjectState(7))
    assert (s["num_frames"], s["video_height"], s["video_width"]) == (4, 48, 64)
    assert s["obj_ids"] == [7] == s.obj_ids
    assert "num_frames" in s and "output_dict_per_obj" not in s
    with pytest.raises(
        KeyError, match=r"'output_dict_per_obj' is not a readable state key.*obj_ids"
    ):
        s["output_dict_per_obj"]
    with pytest.raises(TypeError):
        s["num_frames"] = 3  # read-only


def test_object_ids_and_indices_follow_adds_and_removals():
    s = _session()
    for obj_id in ("a", 2, "c"):
        s.put_object(ObjectState(obj_id))
    ids = s.obj_ids
    s.drop_object(1)
    assert ids == ["a", 2, "c"]  # a list handed out earlier does not change
    assert s.obj_ids == ["a", "c"] and [s.obj_idx(o) for o in ("a", "c")] == [0, 1]
    assert s.obj_idx("new") is None
    with pytest.raises(ValueError, match="object id 2 was removed with remove_object"):
        s.obj_idx(2)
    with pytest.raises(ValueError, match="must be hashable"):
        s.obj_idx(["a"])
    with pytest.raises(
        ValueError, match=r"unknown object id 'new'; known object ids: \['a', 'c'\]"
    ):
        s.known_obj_idx("new")
    fresh = ObjectState("c")
    assert s.put_object(fresh) == 1 and s.objects[1] is fresh  # replaced in place
    s.reset()
    assert s.obj_ids == [] and s.obj_idx(2) is None  # a reset forgets removed ids


def test_object_outputs_pending_first_then_stored():
    obj = ObjectState(1)
    assert not obj.has_conditioning() and obj.output(0, True) is None
    tracked, cond, pending = _output(-1.0), _output(2.0), _output(3.0)
    obj.memory.non_cond_frame_outputs[0] = tracked
    assert obj.output(0, True) is tracked and not obj.has_conditioning()
    obj.memory.cond_frame_outputs[0] = cond
    assert obj.output(0, False) is cond and obj.has_conditioning()
    obj.pending.cond_frame_outputs[0] = pending
    assert obj.output(0, True) is pending and obj.output(0, False) is cond
    obj.point_inputs[2] = Clicks(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.int32))
    obj.mask_inputs[3] = torch.ones(1, 1, 8, 8)
    assert obj.prompted_frames() == {2, 3}


def test_feature_cache_keeps_the_most_recently_used_frames():
    s = _session()

    def feats() -> FrameFeatures:
        return FrameFeatures(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), [])

    for t in range(FEATURE_CACHE_FRAMES):
        s.cache_features(t, feats())
    assert s.cached_features(0) is not None  # 0 is now the most recent
    s.cache_features(9, feats())
    assert sorted(s.features) == [0, 9]
    assert s.cached_features(1) is None
    expanded = s.cached_features(9).expand(3)
    assert expanded.image_embed.shape == (3, 2, 2, 2)


def test_pruning_keeps_conditioning_frames_and_the_window():
    s = _session(40)
    obj = ObjectState(1)
    obj.memory.cond_frame_outputs[0] = _output()
    for t in range(1, 40):
        obj.memory.non_cond_frame_outputs[t] = _output()
    s.put_object(obj)
    s.prune_tracked(39, 15)
    assert sorted(obj.memory.non_cond_frame_outputs) == list(range(24, 40))
    assert list(obj.memory.cond_frame_outputs) == [0]
    per_output = 16 * 4 + 8 * 4 + 4
    assert s.nbytes() == 17 * per_output


def test_a_live_session_learns_its_size_from_the_first_frame():
    src = LiveFrames(128)
    s = InferenceSession.open(src, torch.device("cpu"))
    assert s.is_live and (s["num_frames"], s["video_height"]) == (0, None)
    src.append(random_frames(1)[0])
    s.refresh()
    assert (s["num_frames"], s["video_height"], s["video_width"]) == (1, 48, 64)
