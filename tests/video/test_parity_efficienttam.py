"""Replays the EfficientTAM video sessions recorded from the official EfficientTAMVideoPredictor
(tests/fixtures/efficienttam: the sam2_video sessions and frames, call by call, with the pooled
`efficient1` cross-attention, plus `two_objects_forward` with the `rope` and `efficient2` ones)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.conftest import FIXTURES, ROOT

FIX = ROOT / "tests" / "fixtures" / "efficienttam"
FRAMES = FIXTURES / "sam2_video" / "frames"
LOGIT_ATOL = 1e-4  # as ../shared/fixtures/sam2_video (bfloat16 memories amplify upstream drift)
FP16_RTOL = 2.0**-10  # the stored logits are float16: one ulp relative
SCORE_ATOL = 1e-5
MASK_MISMATCH = 1e-4
# a few minutes per session on 2 cores (1024 px frames), like tests/video/test_parity.py
pytestmark = pytest.mark.slow


def _manifest() -> dict:
    return json.loads((FIX / "manifest.json").read_text())


SESSIONS = _manifest()["sessions"] if (FIX / "manifest.json").exists() else []
_PREDICTORS: dict[str, object] = {}


def _predictor(cross_attention: str):
    """The samkit video predictor for the official cross-attention class of a session."""
    from samkit.build.efficienttam import resolve_efficienttam_config
    from samkit.video.efficienttam import build_efficienttam_video_predictor

    kind = {
        "RoPEAttention": "rope",
        "EfficientRoPEAttention1": "efficient1",
        "EfficientRoPEAttention2": "efficient2",
    }[cross_attention.rsplit(".", 1)[-1]]
    if kind not in _PREDICTORS:
        cfg, _ = resolve_efficienttam_config(FIX / "config.json")
        cfg = dataclasses.replace(cfg, cross_attention=kind)
        settings = _manifest()["predictor_settings"]
        _PREDICTORS[kind] = build_efficienttam_video_predictor(
            cfg,
            FIX / "efficienttam_tiny.pt",
            fill_hole_area=settings["fill_hole_area"],
            add_all_frames_to_correct_as_cond=False,
        )
    return _PREDICTORS[kind]


def _unpack(a: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(a, axis=-1)[..., :width].astype(bool)


class Checker:
    def __init__(self, ref, logit_stride: int, mask_stride: int):
        self.ref, self.ls, self.ms = ref, logit_stride, mask_stride
        self.checked: set[str] = set()

    def masks(self, prefix: str, frame_idx: int, obj_ids: list, masks: torch.Tensor) -> None:
        r = self.ref
        assert r[f"{prefix}_frame_idx"].tolist() in (frame_idx, [frame_idx]), prefix
        assert list(r[f"{prefix}_obj_ids"]) == list(obj_ids), prefix
        logits = masks[:, 0].float().numpy()
        stored = r[f"{prefix}_logits"].astype(np.float32)
        got = logits[:, :: self.ls, :: self.ls]
        np.testing.assert_allclose(got, stored, rtol=FP16_RTOL, atol=LOGIT_ATOL, err_msg=prefix)
        absmax = np.abs(logits).reshape(len(obj_ids), -1).max(-1)
        np.testing.assert_allclose(absmax, r[f"{prefix}_logits_absmax"], rtol=1e-5, atol=LOGIT_ATOL)
        sub = logits[:, :: self.ms, :: self.ms] > 0
        ref_masks = _unpack(r[f"{prefix}_masks"], sub.shape[-1])
        assert ref_masks.shape == sub.shape, prefix
        assert np.mean(ref_masks != sub) <= MASK_MISMATCH, prefix
        area = (logits > 0).reshape(len(obj_ids), -1).sum(-1)
        tol = MASK_MISMATCH * logits.shape[-1] * logits.shape[-2]
        assert np.all(np.abs(area - r[f"{prefix}_masks_area"]) <= tol), prefix
        self.checked.update(k for k in r.files if k.startswith(prefix + "_"))


def _obj_scores(state) -> dict[str, float]:
    out = {}
    for idx, obj in enumerate(state.objects):
        for kind, is_cond in (("cond", True), ("non_", False)):
            for t, o in obj.memory.frames(is_cond).items():
                out[f"o{idx}_{kind}_f{t:03d}"] = float(o.object_score_logits.reshape(()))
    return out


@pytest.mark.parametrize("session", SESSIONS, ids=[s["name"] for s in SESSIONS])
def test_session_matches_official(session):
    man = _manifest()
    predictor = _predictor(session["cross_attention"])
    ref = np.load(FIX / session["file"])
    check = Checker(ref, session["logit_stride"], man["storage"]["video_mask_stride"])
    state = predictor.init_state(str(FRAMES))
    h, w = state["video_height"], state["video_width"]
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
            m = np.zeros((h, w), dtype=bool)
            m[y0:y1, x0:x1] = True
            assert np.array_equal(_unpack(ref[f"{key}_input_mask"], w), m)
            check.checked.add(f"{key}_input_mask")
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
