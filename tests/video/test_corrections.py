"""Corrections on tracked frames (`add_all_frames_to_correct_as_cond`) and objects whose
prompts were all removed (issue 24, section 1).

The official behaviour (False) is what ../shared/fixtures/sam2_video recorded: in its session
`two_objects_forward`, a click on tracked frame 5 for object 2 changes that frame's mask, and
the next propagation gives back exactly the masks of the first one (`test_parity` replays it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit.modeling.sam2_video as sam2_video_module
from samkit.video.build import build_sam2_video_predictor
from samkit.video.predictor import Sam2VideoPredictor
from tests.video.clips import moving_shapes
from tests.video.conftest import VIDEO, manifest
from tests.video.fixture_model import fixture_model_predictor

LOGIT_ATOL = 1e-4  # as test_parity (official float32 vs samkit)


def _calls(session: str) -> list[dict]:
    return next(s for s in manifest()["sessions"] if s["name"] == session)["calls"]


def _ref_row(ref: np.lib.npyio.NpzFile, prefix: str, row: int) -> np.ndarray:
    return ref[f"{prefix}_logits_stride4"][row]


def _stride(masks: torch.Tensor, row: int) -> np.ndarray:
    s = manifest()["logit_stride"]
    return masks[row, 0, ::s, ::s].float().numpy()


def test_defaults_keep_corrections_and_official_setting_is_available(predictor):
    assert Sam2VideoPredictor(predictor.model).add_all_frames_to_correct_as_cond is True
    # the fixtures were recorded with the official default, and the parity fixture uses it
    assert manifest()["predictor_settings"]["add_all_frames_to_correct_as_cond"] is False
    assert predictor.add_all_frames_to_correct_as_cond is False


@pytest.mark.slow
def test_correction_survives_repropagation_against_the_official_session(predictor, monkeypatch):
    """Object 2 of `two_objects_forward` (objects are tracked independently) with the default:
    the correction on frame 5 is computed as the official one, then kept by the next
    propagation, where the official recomputed it away; frames 6-9 attend to it."""
    calls = {c["key"]: c for c in _calls("two_objects_forward")}
    ref = np.load(VIDEO / "session_two_objects_forward.npz")
    pred = Sam2VideoPredictor(predictor.model, fill_hole_area=0)  # default: True
    state = pred.init_state(str(VIDEO / "frames"))
    box = calls["c02"]
    _, ids, masks = pred.add_new_points_or_box(state, 0, 2, box=box["box"])
    assert ids == [2]
    np.testing.assert_allclose(_stride(masks, 0), _ref_row(ref, "c02", 1), atol=LOGIT_ATOL)
    # the first propagation, up to the correction's frame (forward tracking never looks ahead)
    for f, _, masks in pred.propagate_in_video(state, max_frame_num_to_track=5):
        ref_f = _ref_row(ref, f"c03_f{f:03d}", 1)
        np.testing.assert_allclose(_stride(masks, 0), ref_f, atol=LOGIT_ATOL)
    c = calls["c04"]
    _, _, corrected = pred.add_new_points_or_box(
        state, 5, 2, points=c["points"], labels=c["labels"], clear_old_points=False
    )
    np.testing.assert_allclose(_stride(corrected, 0), _ref_row(ref, "c04", 1), atol=LOGIT_ATOL)
    # the official's next propagation lost it: frame 5 is back to its first-pass mask
    official_after = _ref_row(ref, "c05_f005", 1)
    np.testing.assert_array_equal(official_after, _ref_row(ref, "c03_f005", 1))
    assert np.abs(official_after - _ref_row(ref, "c04", 1)).max() > 1.0

    seen: dict[int, tuple] = {}

    def spy(model, frame_idx, memory, num_frames, reverse):
        memories, pointers, max_ptrs = select_memories(
            model, frame_idx, memory, num_frames, reverse
        )
        seen[frame_idx] = (memory.cond_frame_outputs.get(5), memories, pointers)
        return memories, pointers, max_ptrs

    select_memories = sam2_video_module.select_memories
    monkeypatch.setattr(sam2_video_module, "select_memories", spy)
    after = {f: m for f, _, m in pred.propagate_in_video(state)}
    assert sorted(after) == list(range(10))
    torch.testing.assert_close(after[5], corrected, rtol=0, atol=LOGIT_ATOL)
    np.testing.assert_allclose(_stride(after[0], 0), _ref_row(ref, "c05_f000", 1), atol=1e-4)
    assert sorted(state.objects[0].memory.cond_frame_outputs) == [0, 5]
    assert 5 not in seen  # yielded from its stored output, not tracked
    for f in (6, 7, 8, 9):
        cond5, memories, pointers = seen[f]
        assert cond5 is not None
        assert any(t_pos == 0 and m is cond5.maskmem_features for t_pos, m, _ in memories)
        assert any(off == f - 5 and p is cond5.obj_ptr for off, p in pointers)


def _correct_then_repropagate(pred, frames, frame_idx, **click):
    state = pred.init_state(frames)
    pred.add_new_points_or_box(state, 0, 1, points=[[20, 40]], labels=[1])
    first = [m for _, _, m in pred.propagate_in_video(state)]
    _, _, corrected = pred.add_new_points_or_box(state, frame_idx, 1, **click)
    second = [m for _, _, m in pred.propagate_in_video(state)]
    return state, first, corrected, second


@pytest.fixture(scope="module")
def tiny256():
    return fixture_model_predictor(256)


@pytest.mark.parametrize("frame_idx", [4, 0], ids=["tracked_frame", "prompted_frame"])
def test_both_settings_on_a_correction(tiny256, frame_idx):
    """Default: the corrected frame keeps its mask and the other frames change (they attend
    to it). Official (False): the re-propagation gives the first propagation's masks again;
    on the initially prompted frame too (the click there is dropped at propagation)."""
    frames = moving_shapes(8, 96, 128)
    click = {"points": [[100, 10]], "labels": [1], "clear_old_points": False}
    keep = Sam2VideoPredictor(tiny256.model, fill_hole_area=0)
    state, first, corrected, second = _correct_then_repropagate(keep, frames, frame_idx, **click)
    assert (corrected - first[frame_idx]).abs().max() > 1.0  # the click changed the mask
    torch.testing.assert_close(second[frame_idx], corrected, rtol=0, atol=LOGIT_ATOL)
    assert frame_idx in state.objects[0].memory.cond_frame_outputs
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(first[5:], second[5:], strict=True))
    official = Sam2VideoPredictor(
        tiny256.model, fill_hole_area=0, add_all_frames_to_correct_as_cond=False
    )
    state, first_o, corrected_o, second_o = _correct_then_repropagate(
        official, frames, frame_idx, **click
    )
    torch.testing.assert_close(first_o, first, rtol=0, atol=0)  # same model, same first pass
    torch.testing.assert_close(corrected_o, corrected, rtol=0, atol=0)  # same click result
    torch.testing.assert_close(second_o, first_o, rtol=0, atol=0)  # the correction is gone
    assert sorted(state.objects[0].memory.cond_frame_outputs) == [0]


def test_build_takes_the_setting_by_its_official_name():
    from tests.video.conftest import CKPT, CONFIG

    assert build_sam2_video_predictor(CONFIG, CKPT).add_all_frames_to_correct_as_cond is True
    official = build_sam2_video_predictor(CONFIG, CKPT, add_all_frames_to_correct_as_cond=False)
    assert official.add_all_frames_to_correct_as_cond is False


@pytest.mark.parametrize("keep", [True, False], ids=["default", "official_setting"])
def test_object_whose_prompts_were_removed_starts_over_on_its_next_click(tiny256, keep):
    """Clearing object 2's only prompts and clicking it on tracked frame 2 tracks it from
    frame 2, exactly as an object first prompted there (facebookresearch/sam2 #523)."""
    pred = Sam2VideoPredictor(
        tiny256.model, fill_hole_area=0, add_all_frames_to_correct_as_cond=keep
    )
    frames = moving_shapes(6, 96, 128)
    state = pred.init_state(frames)
    pred.add_new_points_or_box(state, 0, 1, points=[[20, 40]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, box=[60, 50, 110, 90])
    list(pred.propagate_in_video(state))
    pred.add_new_points_or_box(state, 3, 2, points=[[90, 60]], labels=[0])  # a correction
    list(pred.propagate_in_video(state))
    pred.clear_all_prompts_in_frame(state, frame_idx=0, obj_id=2)
    if keep:  # the correction is a conditioning frame: object 2 is still prompted there
        assert state.objects[1].memory.cond_frame_outputs.keys() == {3}
        pred.clear_all_prompts_in_frame(state, frame_idx=3, obj_id=2)
    else:  # the correction's click is still in the state (a tracked frame's prompt)
        assert state.objects[1].point_inputs.keys() == {3}
    with pytest.raises(ValueError, match="object id 2 has no prompts"):
        next(pred.propagate_in_video(state))
    _, ids, masks = pred.add_new_points_or_box(state, 2, 2, points=[[85, 65]], labels=[1])
    assert ids == [1, 2]
    assert state.objects[1].point_inputs.keys() == {2}  # nothing left of the old prompts
    after = [m for _, _, m in pred.propagate_in_video(state)]

    fresh = pred.init_state(frames)
    pred.add_new_points_or_box(fresh, 0, 1, points=[[20, 40]], labels=[1])
    _, _, fresh_masks = pred.add_new_points_or_box(fresh, 2, 2, points=[[85, 65]], labels=[1])
    torch.testing.assert_close(masks[1], fresh_masks[1], rtol=0, atol=0)  # object 2
    expected = [m for _, _, m in pred.propagate_in_video(fresh)]
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert sorted(state.objects[1].memory.cond_frame_outputs) == [2]
    # a further click on that frame adds to the new click only
    pred.add_new_points_or_box(state, 2, 2, points=[[70, 70]], labels=[0], clear_old_points=False)
    assert state.objects[1].point_inputs[2].labels.tolist() == [[1, 0]]
