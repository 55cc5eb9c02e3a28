"""The recorded SAM 3 video sessions (tests/fixtures/sam3_video) are complete and self-consistent.

They are the official video predictor's outputs (tools/reference/sam3_video/record_sessions.py);
a later parity test replays them. This test keeps them from rotting: every call of the manifest
has its arrays, every array belongs to a call, shapes and dtypes are the documented ones, and the
inputs (frames, checkpoint) are the files the recording used (sha256).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, ROOT

DIR = ROOT / "tests" / "fixtures" / "sam3_video"
LOW_RES = 288  # the detector's and the tracker's mask logits are 288 x 288

FRAME_KEYS = {"obj_ids", "probs", "boxes_xywh", "masks_s2", "mask_areas", "masks_sha256"}
# arrays each event kind stores (besides its manifest entry); "?" = only when there is something
EVENT_KEYS = {
    "detect": {
        "query_logits",
        "query_boxes_xyxy",
        "presence_logit",
        "nms_keep",
        "det_scores",
        "det_boxes_xyxy",
        "det_mask_logits",
        "det_mask_logits_absmax",
    },
    "track": {"trk_mask_logits", "trk_mask_logits_absmax", "trk_obj_score_logits"},
    "associate": {"ious?"},
    "plan": set(),
    "recondition": set(),
    "tracker_points": {
        "points_mask_logits",
        "points_mask_logits_absmax",
        "points_obj_score_logits",
    },
}


def _manifest() -> dict:
    return json.loads((DIR / "manifest.json").read_text())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


MANIFEST = _manifest()
SESSIONS = MANIFEST["sessions"]


def test_manifest_lists_the_files_present() -> None:
    files = {p.name for p in DIR.iterdir()}
    assert {"manifest.json", "README.md"} <= files
    npz = {s["file"] for s in SESSIONS}
    assert npz == {f for f in files if f.endswith(".npz")}
    total = sum((DIR / f).stat().st_size for f in files)
    assert total < 3.5e6, total  # the fixtures stay small (README)
    assert len(MANIFEST["frames"]) >= 2
    assert MANIFEST["video_hw"] == [540, 960]


@pytest.mark.parametrize("session", SESSIONS, ids=[s["name"] for s in SESSIONS])
def test_session_arrays_match_manifest(session: dict) -> None:
    h, w = MANIFEST["video_hw"]
    s2 = MANIFEST["mask_stride"]
    ls = MANIFEST["logit_stride"]
    n_frames = len(MANIFEST["frames"])
    wc = -(-w // s2)  # columns of the subsampled mask before packing
    with np.load(DIR / session["file"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    expected: set[str] = set()
    calls = session["calls"]
    assert calls[0]["request"]["type"] == "start_session"
    assert calls[-1]["request"]["type"] == "close_session"
    assert [c["key"] for c in calls] == [f"c{i:02d}" for i in range(len(calls))]
    for call in calls:
        key, req = call["key"], call["request"]
        outputs = call.get("outputs", [])
        if req["type"] == "propagate_in_video":
            assert call["frames_yielded"] == [o["frame"] for o in outputs]
            assert (
                len(set(call["frames_yielded"])) == len(outputs)
                or req["propagation_direction"] == "both"
            )
        elif req["type"] == "add_prompt":
            assert len(outputs) == 1 and outputs[0]["frame"] == call["response"]["frame_index"]
        else:
            assert not outputs
        for o in outputs:
            # a frame yielded twice in one call (direction "both") keeps the later arrays
            p = f"{key}_f{o['frame']:03d}_"
            assert 0 <= o["frame"] < n_frames
            expected |= {p + k for k in FRAME_KEYS}
            ids = arrays[p + "obj_ids"]
            n = len(o["obj_ids"])
            if o is _last_for_frame(outputs, o["frame"]):
                assert ids.tolist() == o["obj_ids"], p
            assert ids.dtype == np.int64 and list(ids) == sorted(ids)  # official: sorted ids
            assert arrays[p + "probs"].shape == (n,) and arrays[p + "probs"].dtype == np.float32
            assert arrays[p + "boxes_xywh"].shape == (n, 4)
            assert arrays[p + "masks_s2"].shape == (n, -(-h // s2), -(-wc // 8))
            assert arrays[p + "masks_s2"].dtype == np.uint8
            areas = arrays[p + "mask_areas"]
            # official: empty masks are dropped *before* the object-wise non-overlap step, which can
            # empty a mask again (README, step 10), so an output mask may have no pixel
            assert areas.shape == (n,) and (areas >= 0).all() and areas.dtype == np.int64
            assert arrays[p + "masks_sha256"].shape == (n, 32)
            sub = np.unpackbits(arrays[p + "masks_s2"], axis=-1)[..., :wc].reshape(n, -1).sum(-1)
            assert ((sub > 0) <= (areas > 0)).all()  # a subsampled pixel is a full-resolution pixel
        for ev in call.get("events", []):
            p = f"{key}_{ev['key']}_"
            for name in EVENT_KEYS[ev["kind"]]:
                optional = name.endswith("?")
                name = name.rstrip("?")
                if optional and p + name not in arrays:
                    continue
                expected.add(p + name)
                a = arrays[p + name]
                if name.endswith("mask_logits"):
                    assert a.dtype == np.float16 and a.shape[1:] == (LOW_RES // ls,) * 2, p + name
            if ev["kind"] == "detect":
                q = arrays[p + "query_logits"].shape[0]
                assert arrays[p + "query_boxes_xyxy"].shape == (q, 4)
                assert arrays[p + "nms_keep"].shape == (q,)
                k = arrays[p + "det_scores"].shape[0]
                assert arrays[p + "det_mask_logits"].shape[0] == k
                assert arrays[p + "det_boxes_xyxy"].shape == (k, 4)
            if ev["kind"] == "track":
                m = len(ev["obj_ids"])
                assert arrays[p + "trk_mask_logits"].shape[0] == m
                assert arrays[p + "trk_obj_score_logits"].shape == (m,)
            if ev["kind"] == "associate" and p + "ious" in arrays:
                assert arrays[p + "ious"].shape[1] == len(ev["trk_obj_ids"])
    unknown = set(arrays) - expected
    assert not unknown, sorted(unknown)[:5]
    assert all(re.match(r"c\d\d_", k) for k in arrays)


def _last_for_frame(outputs: list[dict], frame: int) -> dict:
    return [o for o in outputs if o["frame"] == frame][-1]


def test_inputs_are_the_recorded_files() -> None:
    frames_dir = ROOT / MANIFEST["frames_dir"]
    if not frames_dir.is_dir():
        pytest.skip(f"{frames_dir} not present")
    for f in MANIFEST["frames"]:
        assert _sha256(frames_dir / f["file"]) == f["sha256"], f["file"]
    ckpt = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
    assert (ROOT / MANIFEST["checkpoint"]["file"]).resolve() == ckpt.resolve()
    assert _sha256(ckpt) == MANIFEST["checkpoint"]["sha256"]
