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

from samkit.build.registry import get_family  # noqa: E402
from samkit.cli import main  # noqa: E402
from samkit.export.ort_video import OnnxEdgeTamVideoPredictor, OnnxSam2VideoPredictor  # noqa: E402
from samkit.export.sam2_video import MANIFEST_FILE, export_sam2_video_onnx  # noqa: E402
from samkit.modeling.video_memory import Clicks  # noqa: E402
from tests.video import replay as rp  # noqa: E402
from tests.video.conftest import fixture_arrays, manifest  # noqa: E402

SETTINGS = manifest()["predictor_settings"]
KW = {
    "fill_hole_area": SETTINGS["fill_hole_area"],
    "add_all_frames_to_correct_as_cond": SETTINGS["add_all_frames_to_correct_as_cond"],
}
PART_ATOL = 1e-5  # the parts vs torch on random inputs (measured <= 2.3e-6)
VS_TORCH_ATOL = 1e-5  # video logits vs the torch predictor (measured <= 6.3e-7)
SCORE_ATOL = 1e-6  # object scores vs torch
# Every session replays through the ORT predictor next to the torch one (tests/video/replay.py;
# the torch replay is the one tests/video/test_parity compares with the recording, made once per
# test process); the cheapest in the quick run, the others `slow`.
CHEAP = "mask_prompt_reverse"
SESSIONS = [
    pytest.param(s, id=s["name"], marks=() if s["name"] == CHEAP else pytest.mark.slow)
    for s in manifest()["sessions"]
]


@pytest.fixture(scope="module")
def torch_predictor():
    return rp.torch_predictor("sam2")


@pytest.fixture(scope="module")
def export_dir(sam2_video_onnx_dir):
    """The sam2_tiny fixture model exported with `samkit export onnx --video`
    (tests/export/conftest.py; test_ort_video_keys_s9 reads the same folder)."""
    return sam2_video_onnx_dir


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


@pytest.mark.parametrize("session", SESSIONS)
def test_session_matches_torch_and_official(onnx_predictor, session):
    """The torch predictor's replay of a recorded session (compared with the recording), then
    the ORT predictor's, which keeps its memories' keys (the export's key graphs): the official
    recording within the fixture's tolerances, and next to the torch outputs the same frames and
    ids, logits within 1e-5, the same object scores (1e-6) after every propagation and the same
    frames kept in each object's memory bank; the key graph ran once per stored memory read, not
    once per frame (test_ort_video_keys_s9 tests the key graphs themselves)."""
    want = rp.torch_replay("sam2", session["name"], keep=True)
    o = onnx_predictor.model
    assert o.reuse_memory_keys
    reads = []
    run_attention = o.condition_on_memory

    def counting(feat, pos, memories, pointers, max_ptrs):
        reads.append(len(memories) if feat.shape[0] == 1 else 0)
        return run_attention(feat, pos, memories, pointers, max_ptrs)

    def next_to_torch(i, key, f, ids, masks):
        wkey, wf, wids, wmasks = want.outputs[i]
        assert (key, f, ids) == (wkey, wf, wids), key
        torch.testing.assert_close(masks, wmasks, rtol=0, atol=VS_TORCH_ATOL, msg=key)

    runs = o.memory_keys.runs
    o.condition_on_memory = counting
    try:
        # the sessions replay the same frames: the ORT image-encoder graph encodes each once for
        # all of them (tests/video/replay.py), every other part runs in each call
        with rp.encoder_memo(o):
            got = rp.replay(onnx_predictor, "sam2", session, on_output=next_to_torch)
    finally:
        del o.condition_on_memory
    assert len(got.outputs) == len(want.outputs)
    assert got.scores.keys() == want.scores.keys()
    for call, scores in want.scores.items():
        assert got.scores[call].keys() == scores.keys(), call
        for k, v in scores.items():
            assert abs(got.scores[call][k] - v) <= SCORE_ATOL, (call, k)
    # the memory bank is the torch predictor's: the same frames kept per object
    assert got.tracked == want.tracked
    if sum(reads) > 1:
        assert 0 < o.memory_keys.runs - runs < sum(reads)


@pytest.mark.slow  # exports the EfficientTAM fixture model (two memory-attention graphs)
def test_efficienttam_session_matches_official(tmp_path):
    """EfficientTAM's pooled cross-attention: `memory_attention_1.onnx` serves one memory frame;
    the recorded official session replays through the ORT predictor."""
    session = rp.RECORDINGS["efficienttam"].session(CHEAP)
    assert session["cross_attention"].endswith("EfficientRoPEAttention1")
    files = export_sam2_video_onnx(rp.torch_predictor("efficienttam", session).model, tmp_path)
    assert "memory_attention_1" in files
    pred = OnnxSam2VideoPredictor(tmp_path, fill_hole_area=0)
    pred.tracker.add_all_frames_to_correct_as_cond = False
    rp.replay(pred, "efficienttam", session)


@pytest.mark.slow  # exports the EdgeTAM fixture model
def test_edgetam_session_matches_official(tmp_path):
    """EdgeTAM: the perceiver-compressed memories (memory_encoder.onnx ends with the perceiver,
    memory_attention.onnx takes 1 x N latent memories) and the batched predictor's rules."""
    rec = rp.RECORDINGS["edgetam"]
    export_sam2_video_onnx(rp.torch_predictor("edgetam").model, tmp_path)
    with pytest.raises(ValueError, match="EdgeTAM export; open it with OnnxEdgeTamVideoPredictor"):
        OnnxSam2VideoPredictor(tmp_path)
    pred = OnnxEdgeTamVideoPredictor(
        tmp_path,
        fill_hole_area=rec.manifest()["predictor_settings"]["fill_hole_area"],
        add_all_frames_to_correct_as_cond=False,
    )
    rp.replay(pred, "edgetam", rec.session(CHEAP))


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
