"""The batched (sam2 1.0-era) predictor rules of EdgeTAM's official video predictor, on the tiny
EdgeTAM of tests/fixtures/edgetam (tests/video/test_parity replays the recorded sessions;
these check the rules those sessions do not reach, with propagations of one frame)."""

from __future__ import annotations

import pytest
import torch

from samkit.build.registry import get_family
from samkit.modeling.sam2_video import NO_OBJ_SCORE
from samkit.video.edgetam import EdgeTamVideoPredictor, build_edgetam_video_predictor
from samkit.video.edgetam_tracker import EMPTY_OBJECT_SCORE, BatchedSession
from tests.conftest import FIXTURES, ROOT

FIX = ROOT / "tests" / "fixtures" / "edgetam"
FRAMES = FIXTURES / "sam2_video" / "frames"


@pytest.fixture(scope="module")
def predictor() -> EdgeTamVideoPredictor:
    return build_edgetam_video_predictor(checkpoint=FIX / "edgetam_tiny.pt", fill_hole_area=0)


def _run(predictor, state, **kw) -> list[int]:
    return [f for f, _, _ in predictor.propagate_in_video(state, **kw)]


def test_frames_prompted_for_one_object_become_frames_of_all(predictor):
    s = predictor.init_state(str(FRAMES))
    assert isinstance(s, BatchedSession)
    predictor.add_new_points_or_box(s, 0, 1, points=[[430, 200]], labels=[1])
    predictor.add_new_points_or_box(s, 2, 2, box=[80, 250, 330, 520])
    assert _run(predictor, s, max_frame_num_to_track=0) == [0]
    assert s.consolidated_cond == {0, 2}
    one, two = s.objects
    assert set(one.memory.cond_frame_outputs) == set(two.memory.cond_frame_outputs) == {0, 2}
    # object 2 had nothing on frame 0: an empty output (official placeholder values)
    empty = two.memory.cond_frame_outputs[0]
    assert torch.all(empty.pred_masks == NO_OBJ_SCORE)
    assert predictor.get_object_scores(s, 0)[2] == EMPTY_OBJECT_SCORE
    assert empty.maskmem_features is not None and empty.maskmem_features.shape[-1] == 512
    # the pointer of an empty mask is the learned no-object pointer (fixed_no_obj_ptr)
    torch.testing.assert_close(empty.obj_ptr, predictor.model.no_obj_ptr.float())
    # the reused frame 2 is not tracked again
    assert _run(predictor, s, start_frame_idx=2, max_frame_num_to_track=0) == [2]
    assert s.objects[0].memory.cond_frame_outputs[2] is one.memory.cond_frame_outputs[2]


def test_new_objects_are_refused_once_tracking_started(predictor):
    s = predictor.init_state(str(FRAMES))
    predictor.add_new_points_or_box(s, 0, 1, points=[[430, 200]], labels=[1])
    predictor.add_new_points_or_box(s, 0, 2, points=[[200, 400]], labels=[1])  # before: fine
    _run(predictor, s, max_frame_num_to_track=0)
    with pytest.raises(ValueError, match="after tracking started"):
        predictor.add_new_points_or_box(s, 3, 5, points=[[100, 100]], labels=[1])
    with pytest.raises(ValueError, match="after tracking started"):
        predictor.add_new_mask(s, 3, 5, torch.ones(540, 960, dtype=torch.bool).numpy())
    assert s.obj_ids == [1, 2]
    predictor.add_new_points_or_box(s, 3, 1, points=[[100, 100]], labels=[1])  # known id: fine
    predictor.reset_state(s)
    assert not s.tracking_has_started and not s.consolidated_cond
    _, ids, _ = predictor.add_new_points_or_box(s, 3, 5, points=[[100, 100]], labels=[1])
    assert ids == [5]


def test_clearing_and_removing_follow_the_batched_rules(predictor):
    s = predictor.init_state(str(FRAMES))
    predictor.add_new_points_or_box(s, 0, 1, points=[[430, 200]], labels=[1])
    predictor.add_new_points_or_box(s, 2, 2, box=[80, 250, 330, 520])
    _run(predictor, s, max_frame_num_to_track=0)
    # frame 2 keeps no prompt of any object: a tracked frame of both, no longer consolidated
    predictor.clear_all_prompts_in_frame(s, 2, 2)
    assert s.consolidated_cond == {0}
    assert all(set(o.memory.cond_frame_outputs) == {0} for o in s.objects)
    assert all(2 in o.memory.non_cond_frame_outputs for o in s.objects)
    # removing object 1 clears its prompt on frame 0, the last conditioning frame: reset
    ids, updated = predictor.remove_object(s, 1)
    assert ids == [2] and [t for t, _ in updated] == [0]
    assert not s.tracking_has_started
    assert all(not o.memory.cond_frame_outputs and not o.prompted_frames() for o in s.objects)
    with pytest.raises(ValueError, match="no prompts"):
        _run(predictor, s)
    with pytest.raises(ValueError, match="remove_object"):
        predictor.add_new_points_or_box(s, 0, 1, points=[[430, 200]], labels=[1])


def test_the_registry_names_the_edgetam_video_predictor(predictor):
    build = get_family("edgetam").load("video_predictor")
    assert build is build_edgetam_video_predictor
    with pytest.raises(ValueError, match="init_state"):
        predictor.clear_all_prompts_in_frame(object(), 0, 1)
