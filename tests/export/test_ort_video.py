"""OnnxSam2VideoPredictor (the exported video parts on onnxruntime) against the torch
Sam2VideoPredictor and the official recordings of ../shared/fixtures/sam2_video (and of
tests/fixtures/efficienttam and tests/fixtures/edgetam).

Measured (2026-12-06, sam2_tiny fixture model, every sam2_video session call by call): video
logits ORT vs torch <= 6.3e-7, ORT vs the official recording <= 5.4e-7 (torch: 4.2e-7; the
fixture's own tolerance is 1e-4, which the bfloat16 rounding of stored memories needs); the
parts on random inputs <= 2.3e-6 (image encoder; memory attention 1.2e-6, memory encoder 1.0e-6).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import tests.video.test_parity_edgetam as edgetam_parity  # noqa: E402
import tests.video.test_parity_efficienttam as etam_parity  # noqa: E402
from samkit.build.registry import get_family  # noqa: E402
from samkit.cli import main  # noqa: E402
from samkit.export.ort_video import OnnxEdgeTamVideoPredictor, OnnxSam2VideoPredictor  # noqa: E402
from samkit.export.sam2_video import MANIFEST_FILE, export_sam2_video_onnx  # noqa: E402
from samkit.modeling.video_memory import Clicks  # noqa: E402
from samkit.video.build import build_sam2_video_predictor  # noqa: E402
from samkit.video.edgetam import build_edgetam_video_predictor  # noqa: E402
from tests.video.conftest import CKPT, CONFIG, VIDEO, fixture_arrays, manifest  # noqa: E402
from tests.video.test_parity import Checker, _obj_scores  # noqa: E402
from tests.video.test_parity import test_session_matches_official as replay_official  # noqa: E402

SETTINGS = manifest()["predictor_settings"]
KW = {
    "fill_hole_area": SETTINGS["fill_hole_area"],
    "add_all_frames_to_correct_as_cond": SETTINGS["add_all_frames_to_correct_as_cond"],
}
PART_ATOL = 1e-5  # the parts vs torch on random inputs (measured <= 2.3e-6)
VS_TORCH_ATOL = 1e-5  # video logits vs the torch predictor (measured <= 6.3e-7)
SCORE_ATOL = 1e-6  # object scores vs torch
# By default the cheapest session replays through the ORT predictor against the official
# recording (~140 s CPU time on the loaded 2-core machine, one thread); every session side by
# side with the torch predictor is `slow` (twice that per session).
CHEAP = "mask_prompt_reverse"
SESSIONS = [pytest.param(s, id=s["name"]) for s in manifest()["sessions"]]


@pytest.fixture(scope="module")
def torch_predictor():
    return build_sam2_video_predictor(CONFIG, CKPT, **KW)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """The sam2_tiny fixture model exported with `samkit export onnx --video`."""
    out = tmp_path_factory.mktemp("ort_video") / "sam2"
    args = ["export", "onnx", "--video", "--model", str(CONFIG), "--checkpoint", str(CKPT)]
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_predictor(export_dir):
    return OnnxSam2VideoPredictor(export_dir, **KW)


def test_manifest_parts_and_registry(export_dir, onnx_predictor):
    m = json.loads((export_dir / MANIFEST_FILE).read_text())
    assert m["family"] == "sam2" and m["provenance"]["family"] == "sam2"
    assert set(m["files"]) == {
        "image_encoder",
        "mask_decoder",
        "memory_attention",
        "memory_encoder",
        "mask_downsample",
    }  # SAM 2's attention traces the same graph for one memory frame: no memory_attention_1
    s = ort.InferenceSession(str(export_dir / m["files"]["memory_attention"]))
    dims = {i.name: i.shape for i in s.get_inputs()}
    assert dims["memory"][:2] == ["objects", "memory_frames"]
    assert dims["obj_ptrs"][:2] == ["objects", "pointers"]
    fam = get_family("sam2")
    assert fam.load("onnx_video_predictor") is OnnxSam2VideoPredictor
    assert fam.load("video_exporter") is export_sam2_video_onnx
    assert get_family("efficienttam").load("onnx_video_predictor") is OnnxSam2VideoPredictor
    assert get_family("edgetam").load("onnx_video_predictor") is OnnxEdgeTamVideoPredictor
    assert onnx_predictor.family == "sam2" and onnx_predictor.image_size == 1024


def test_parts_match_the_torch_modules(torch_predictor, onnx_predictor):
    """Every method the tracker calls, on random inputs: memory banks of 1..7 frames and
    0..16 pointers (the dynamic axes), clicks / mask prompts, multimask or not."""
    m, o = torch_predictor.model, onnx_predictor.model
    g = torch.Generator().manual_seed(0)
    c, cm, (h, w), s = m.hidden_dim, m.mem_dim, m.sam_prompt_encoder.image_embedding_size, 1024

    def close(a, b):
        torch.testing.assert_close(b, a, rtol=0, atol=PART_ATOL)

    with torch.inference_mode():
        image = torch.randn(1, 3, s, s, generator=g)
        ta, oa = m.forward_image(image), o.forward_image(image)
        close(ta["backbone_fpn"][-1], oa["backbone_fpn"][-1])
        close(ta["vision_pos_enc"][-1], oa["vision_pos_enc"][-1])
        for x, y in zip(ta["backbone_fpn"][:2], oa["backbone_fpn"][:2], strict=True):
            close(x, y)
        feat, pos = torch.randn(1, c, h, w, generator=g), torch.randn(1, c, h, w, generator=g)
        for frames, ptrs in ((1, 1), (2, 3), (7, 16), (3, 0)):
            mems = [
                (t, torch.randn(1, cm, h, w, generator=g).bfloat16(), torch.randn(1, cm, h, w))
                for t in range(frames)
            ]
            pointers = [(i + 1, torch.randn(1, c, generator=g)) for i in range(ptrs)]
            close(
                m.condition_on_memory(feat, pos, mems, pointers, 16),
                o.condition_on_memory(feat, pos, mems, pointers, 16),
            )
        masks = torch.randn(1, 1, s, s, generator=g) * 5
        for score in (1.0, -1.0):
            for from_pts in (True, False):
                args = (feat, masks, torch.tensor([[score]]), from_pts)
                for x, y in zip(m.encode_new_memory(*args), o.encode_new_memory(*args)):
                    close(x, y)
        high = ta["backbone_fpn"][:2]
        pts = Clicks(torch.tensor([[[400.0, 300.0], [700.0, 500.0]]]), torch.tensor([[1, 0]]))
        low = torch.randn(1, 1, 4 * h, 4 * w, generator=g)
        for points, mask, multi in ((pts, None, True), (pts, low, False), (None, low, False)):
            for x, y in zip(
                m.forward_sam_heads(feat, points, mask, high, multi),
                o.forward_sam_heads(feat, points, mask, high, multi),
                strict=True,
            ):
                close(x, y)
        prompt = torch.zeros(1, 1, s, s)
        prompt[..., 200:600, 300:700] = 1.0
        for x, y in zip(
            m.use_mask_as_output(feat, high, prompt), o.use_mask_as_output(feat, high, prompt)
        ):
            close(x, y)


def _calls(predictor, state, call, frames):
    """Run one fixture call; yields (key, frame_idx, obj_ids, masks) for what it returns."""
    op, key = call["op"], call["key"]
    if op == "add_new_points_or_box":
        kw = {k: call[k] for k in ("points", "labels", "box", "clear_old_points") if k in call}
        yield (
            key,
            *predictor.add_new_points_or_box(state, call["frame_idx"], call["obj_id"], **kw),
        )
    elif op == "add_new_mask":
        x0, y0, x1, y1 = call["rect"]
        m = np.zeros(frames[0].shape[:2], dtype=bool)
        m[y0:y1, x0:x1] = True
        yield (key, *predictor.add_new_mask(state, call["frame_idx"], call["obj_id"], m))
    elif op == "propagate_in_video":
        names = ("start_frame_idx", "max_frame_num_to_track", "reverse")
        kw = {k: call[k] for k in names if k in call}
        for f, ids, masks in predictor.propagate_in_video(state, **kw):
            yield (f"{key}_f{f:03d}", f, ids, masks)
    elif op == "remove_object":
        predictor.remove_object(state, call["obj_id"])
    elif op == "reset_state":
        predictor.reset_state(state)


def test_cheapest_session_matches_official(onnx_predictor):
    """The default run's replay: the ORT predictor alone, as tests/video/test_parity replays
    the torch one (same calls, same checks and tolerances)."""
    session = next(s for s in manifest()["sessions"] if s["name"] == CHEAP)
    replay_official(onnx_predictor, fixture_arrays(), session)


@pytest.mark.slow
@pytest.mark.parametrize("session", SESSIONS)
def test_session_matches_torch_and_official(torch_predictor, onnx_predictor, session):
    """Call by call next to the torch predictor: the same frames, ids and logits (1e-5), the
    same stored object scores, and the official recording within the fixture's tolerances."""
    frames = fixture_arrays()
    ref = np.load(VIDEO / session["file"])
    check = Checker(ref, manifest()["logit_stride"])
    ts = torch_predictor.init_state(str(VIDEO / "frames"))
    os_ = onnx_predictor.init_state(str(VIDEO / "frames"))
    for call in session["calls"]:
        got = list(_calls(onnx_predictor, os_, call, frames))
        want = list(_calls(torch_predictor, ts, call, frames))
        assert [g[:3] for g in got] == [w[:3] for w in want], call["key"]
        for (key, f, ids, masks), (_, _, _, tmasks) in zip(got, want, strict=True):
            torch.testing.assert_close(masks, tmasks, rtol=0, atol=VS_TORCH_ATOL, msg=key)
            check.masks(key, f, ids, masks)
        if call["op"] == "propagate_in_video":
            scores, tscores = _obj_scores(os_), _obj_scores(ts)
            assert scores.keys() == tscores.keys()
            for k, v in tscores.items():
                assert abs(scores[k] - v) <= SCORE_ATOL, (call["key"], k)
            check.checked.update(k for k in ref.files if k.startswith(f"{call['key']}_objscore_"))
        if call["op"] == "add_new_mask":
            check.checked.add(f"{call['key']}_input_mask")
    assert check.checked == set(ref.files), set(ref.files) - check.checked
    # the memory bank is the torch predictor's: the same frames kept per object
    for o, t in zip(os_.objects, ts.objects, strict=True):
        assert o.memory.non_cond_frame_outputs.keys() == t.memory.non_cond_frame_outputs.keys()


@pytest.mark.slow  # exports the EfficientTAM fixture model (two memory-attention graphs)
def test_efficienttam_session_matches_official(tmp_path, monkeypatch):
    """EfficientTAM's pooled cross-attention: `memory_attention_1.onnx` serves one memory frame;
    the recorded official session replays through the ORT predictor."""
    session = next(s for s in etam_parity.SESSIONS if s["name"] == CHEAP)
    assert session["cross_attention"].endswith("EfficientRoPEAttention1")
    torch_pred = etam_parity._predictor(session["cross_attention"])
    files = export_sam2_video_onnx(torch_pred.model, tmp_path)
    assert "memory_attention_1" in files
    pred = OnnxSam2VideoPredictor(tmp_path, fill_hole_area=0)
    pred.tracker.add_all_frames_to_correct_as_cond = False
    monkeypatch.setitem(etam_parity._PREDICTORS, "efficient1", pred)
    etam_parity.test_session_matches_official(session)


@pytest.mark.slow  # exports the EdgeTAM fixture model
def test_edgetam_session_matches_official(tmp_path):
    """EdgeTAM: the perceiver-compressed memories (memory_encoder.onnx ends with the perceiver,
    memory_attention.onnx takes 1 x N latent memories) and the batched predictor's rules."""
    settings = edgetam_parity._manifest()["predictor_settings"]
    torch_pred = build_edgetam_video_predictor(
        checkpoint=edgetam_parity.FIX / "edgetam_tiny.pt", fill_hole_area=0
    )
    export_sam2_video_onnx(torch_pred.model, tmp_path)
    with pytest.raises(ValueError, match="EdgeTAM export; open it with OnnxEdgeTamVideoPredictor"):
        OnnxSam2VideoPredictor(tmp_path)
    pred = OnnxEdgeTamVideoPredictor(
        tmp_path,
        fill_hole_area=settings["fill_hole_area"],
        add_all_frames_to_correct_as_cond=False,
    )
    session = next(s for s in edgetam_parity._manifest()["sessions"] if s["name"] == CHEAP)
    edgetam_parity.test_session_matches_official(pred, session)


def test_refusals(tmp_path, export_dir, onnx_predictor):
    """Bad models, files and calls: ValueError / FileNotFoundError saying what is expected."""
    with pytest.raises(ValueError, match="video model"):
        export_sam2_video_onnx(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="no video manifest"):
        OnnxSam2VideoPredictor(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    m = json.loads((export_dir / MANIFEST_FILE).read_text())
    (bad / MANIFEST_FILE).write_text(json.dumps({**m, "format": 99}))
    with pytest.raises(ValueError, match="manifest format 99"):
        OnnxSam2VideoPredictor(bad)
    (bad / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"image_encoder.*missing"):
        OnnxSam2VideoPredictor(bad)
    for name in m["files"].values():
        shutil.copy(export_dir / name, bad / name)
    (bad / MANIFEST_FILE).write_text(json.dumps({**m, "high_res_features": []}))
    with pytest.raises(ValueError, match="do not match the manifest"):
        OnnxSam2VideoPredictor(bad)
    with pytest.raises(ValueError, match="SAM 2 export; open it with OnnxSam2VideoPredictor"):
        OnnxEdgeTamVideoPredictor(export_dir)
    with pytest.raises(ValueError, match="fill_hole_area"):
        OnnxSam2VideoPredictor(export_dir, fill_hole_area=-1)
    with pytest.raises(ValueError, match="threads"):
        OnnxSam2VideoPredictor(export_dir, threads=0)
    # calls: the torch predictor's checks, before anything runs
    state = onnx_predictor.init_state(fixture_arrays()[:2])
    with pytest.raises(ValueError, match="no prompts yet"):
        next(onnx_predictor.propagate_in_video(state))
    with pytest.raises(ValueError, match="outside the video"):
        onnx_predictor.add_new_points_or_box(state, 5, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError):
        onnx_predictor.add_new_points_or_box(state, 0, 1, points=[[np.nan, 1]], labels=[1])
    assert state["obj_ids"] == []
    args = ["export", "onnx", "--video", "--model", "vit_b", "--random-weights"]
    assert main([*args, "--out", str(tmp_path / "v")]) == 2  # SAM 1: no video export
