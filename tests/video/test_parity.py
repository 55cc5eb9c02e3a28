"""Replays every session of ../shared/fixtures/sam2_video (official sam2 1.1.0 outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.video.conftest import VIDEO, manifest

SESSIONS = manifest()["sessions"]
LOGIT_ATOL = 1e-4
SCORE_ATOL = 1e-5
MASK_MISMATCH = 1e-4


def _unpack(a: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(a, axis=-1)[..., :width].astype(bool)


class Checker:
    def __init__(self, ref: np.lib.npyio.NpzFile, stride: int):
        self.ref = ref
        self.stride = stride
        self.checked: set[str] = set()

    def masks(self, prefix: str, frame_idx: int, obj_ids: list, masks: torch.Tensor) -> None:
        r = self.ref
        assert int(r[f"{prefix}_frame_idx"]) == frame_idx, prefix
        assert list(r[f"{prefix}_obj_ids"]) == list(obj_ids), prefix
        logits = masks[:, 0].float().numpy()
        ref_logits = r[f"{prefix}_logits_stride4"]
        s = self.stride
        np.testing.assert_allclose(logits[:, ::s, ::s], ref_logits, rtol=0, atol=LOGIT_ATOL)
        np.testing.assert_allclose(
            np.abs(logits).reshape(len(obj_ids), -1).max(-1),
            r[f"{prefix}_logits_absmax"],
            rtol=1e-5,
            atol=LOGIT_ATOL,
        )
        ref_masks = _unpack(r[f"{prefix}_masks"], logits.shape[-1])
        assert ref_masks.shape == logits.shape
        mismatch = np.mean(ref_masks != (logits > 0))
        assert mismatch <= MASK_MISMATCH, (prefix, mismatch)
        self.checked.update(k for k in r.files if k.startswith(prefix + "_"))


def _obj_scores(state) -> dict[str, float]:
    out = {}
    for idx, obj in enumerate(state.objects):
        for kind, is_cond in (("cond", True), ("non_", False)):
            for t, o in obj.memory.frames(is_cond).items():
                out[f"o{idx}_{kind}_f{t:03d}"] = float(o.object_score_logits.reshape(()))
    return out


@pytest.mark.parametrize("session", SESSIONS, ids=[s["name"] for s in SESSIONS])
def test_session_matches_official(predictor, frames_np, session):
    ref = np.load(VIDEO / session["file"])
    check = Checker(ref, manifest()["logit_stride"])
    state = predictor.init_state(str(VIDEO / "frames"))  # the JPEG folder, as the oracle
    assert state["num_frames"] == len(frames_np)
    assert (state["video_height"], state["video_width"]) == frames_np[0].shape[:2]
    for call in session["calls"]:
        op, key = call["op"], call["key"]
        if op == "add_new_points_or_box":
            kw = {k: call[k] for k in ("points", "labels", "box", "clear_old_points") if k in call}
            f, ids, masks = predictor.add_new_points_or_box(
                state, call["frame_idx"], call["obj_id"], **kw
            )
            assert (f, list(ids)) == (call["returns"]["frame_idx"], call["returns"]["obj_ids"])
            check.masks(key, f, ids, masks)
        elif op == "add_new_mask":
            x0, y0, x1, y1 = call["rect"]
            m = np.zeros(frames_np[0].shape[:2], dtype=bool)
            m[y0:y1, x0:x1] = True
            assert np.array_equal(_unpack(ref[f"{key}_input_mask"], m.shape[1]), m)
            f, ids, masks = predictor.add_new_mask(state, call["frame_idx"], call["obj_id"], m)
            assert (f, list(ids)) == (call["returns"]["frame_idx"], call["returns"]["obj_ids"])
            check.masks(key, f, ids, masks)
        elif op == "propagate_in_video":
            kw = {
                k: call[k]
                for k in ("start_frame_idx", "max_frame_num_to_track", "reverse")
                if k in call
            }
            yielded = []
            for f, ids, masks in predictor.propagate_in_video(state, **kw):
                yielded.append(f)
                check.masks(f"{key}_f{f:03d}", f, ids, masks)
            assert yielded == call["frames_yielded"]
            scores = _obj_scores(state)
            ref_scores = {
                k[len(key) + len("_objscore_") :]: float(ref[k].reshape(()))
                for k in ref.files
                if k.startswith(f"{key}_objscore_")
            }
            assert set(scores) == set(ref_scores)
            for k, v in ref_scores.items():
                assert abs(scores[k] - v) <= SCORE_ATOL, (key, k, scores[k], v)
            check.checked.update(k for k in ref.files if k.startswith(f"{key}_objscore_"))
        elif op == "remove_object":
            ids, _ = predictor.remove_object(state, call["obj_id"])
            assert list(ids) == call["returns"]["obj_ids"]
        elif op == "reset_state":
            predictor.reset_state(state)
            assert state["obj_ids"] == []
        else:
            raise AssertionError(f"unknown op {op}")
    assert check.checked == set(ref.files), set(ref.files) - check.checked
