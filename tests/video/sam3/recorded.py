"""Reading the recorded official SAM 3 video sessions (tests/fixtures/sam3_video) and comparing
samkit's answers with them at the tolerances of that folder's README."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.conftest import ROOT

DIR = ROOT / "tests" / "fixtures" / "sam3_video"
MANIFEST = json.loads((DIR / "manifest.json").read_text())
CHECKPOINT = ROOT / MANIFEST["checkpoint"]["file"]
FRAMES_DIR = ROOT / MANIFEST["frames_dir"]

# README "Measured drift ... and tolerances"
ATOL_QUERY_LOGITS = 2e-5
ATOL_SCORES = 5e-6
ATOL_BOXES_NORM = 5e-6
ATOL_OUT_BOXES = 2.1e-3
MASK_PIXELS_DIFFERING = 1e-4


def session(name: str) -> dict:
    return next(s for s in MANIFEST["sessions"] if s["name"] == name)


def call(name: str, key: str) -> dict:
    return next(c for c in session(name)["calls"] if c["key"] == key)


@lru_cache(maxsize=4)
def arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(DIR / session(name)["file"], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def frames() -> list[Image.Image]:
    """The recorded clip: the first frames of the SAM 2 video fixture, as PIL images."""
    return [Image.open(FRAMES_DIR / f["file"]) for f in MANIFEST["frames"]]


def _fresh(value: Any) -> Any:
    """New dicts and lists around the same tensors (a caller may add or drop entries)."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


@contextmanager
def backbone_memo(model: Any) -> Iterator[None]:
    """Every session replays frames of the same 4-frame clip: while it lasts, the SAM 3 model's
    `backbone.forward_image` (a pure function of the input frame) answers an input it has seen,
    bit for bit, from its earlier output instead of running the ViT and necks again; the
    detector's grounding, the tracker and everything after them run as in any other call (as
    tests/video/replay.py does for the SAM 2-style sessions). A changed output would show in the
    comparisons with the recording."""
    backbone = model.backbone
    encode = backbone.forward_image
    seen: dict[bytes, dict] = {}

    def forward_image(x):
        t = x.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # any dtype, bfloat16 too
        key = hashlib.sha256(raw).digest() + str((t.shape, t.dtype)).encode()
        if key not in seen:
            seen[key] = encode(x)
        return _fresh(seen[key])

    backbone.forward_image = forward_image
    try:
        yield
    finally:
        del backbone.forward_image
        seen.clear()


def unpack_masks(packed: np.ndarray) -> np.ndarray:
    """(N, H/2, W/16) packed -> (N, H/2, W/2) bool masks at stride 2 (README)."""
    w = MANIFEST["video_hw"][1]
    s = MANIFEST["mask_stride"]
    return np.unpackbits(packed, axis=-1)[..., : -(-w // s)].astype(bool)


def check_frame_outputs(outputs: dict, z: dict, prefix: str) -> None:
    """One frame's outputs against `<prefix>obj_ids/probs/boxes_xywh/masks_s2/mask_areas`."""
    s = MANIFEST["mask_stride"]
    np.testing.assert_array_equal(outputs["out_obj_ids"], z[prefix + "obj_ids"], prefix)
    np.testing.assert_allclose(outputs["out_probs"], z[prefix + "probs"], atol=ATOL_SCORES)
    np.testing.assert_allclose(
        outputs["out_boxes_xywh"], z[prefix + "boxes_xywh"], atol=ATOL_OUT_BOXES
    )
    masks = outputs["out_binary_masks"]
    assert masks.dtype == bool and masks.shape[1:] == tuple(MANIFEST["video_hw"])
    ref = unpack_masks(z[prefix + "masks_s2"])
    mine = masks[:, ::s, ::s]
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    differing = (mine != ref).mean() if mine.size else 0.0
    assert differing <= MASK_PIXELS_DIFFERING, f"{prefix}: {differing:.2e} of the pixels differ"
    areas = masks.reshape(len(masks), -1).sum(-1)
    np.testing.assert_allclose(areas, z[prefix + "mask_areas"], rtol=1e-4, atol=2)


def request(req: dict, session_id: str) -> dict:
    """A recorded request as sent to samkit: the frame folder is the recorded clip."""
    out = {**req}
    if out.get("resource_path") == "<frames>":
        out["resource_path"] = frames()
        out["session_id"] = session_id
    elif out["type"] != "start_session":
        out["session_id"] = session_id
    return out


def check_detection(d, z: dict, prefix: str) -> None:
    """A `FrameDetections` against a recorded `detect` event `<prefix>*`."""
    tol = ATOL_QUERY_LOGITS
    np.testing.assert_allclose(d.query_logits.numpy(), z[prefix + "query_logits"], atol=tol)
    np.testing.assert_allclose(d.presence_logit.numpy(), z[prefix + "presence_logit"], atol=tol)
    np.testing.assert_allclose(
        d.query_boxes_xyxy.numpy(), z[prefix + "query_boxes_xyxy"], atol=ATOL_BOXES_NORM
    )
    np.testing.assert_array_equal(d.nms_keep.numpy(), z[prefix + "nms_keep"], prefix)
    np.testing.assert_allclose(d.scores.numpy(), z[prefix + "det_scores"], atol=ATOL_SCORES)
    np.testing.assert_allclose(
        d.boxes_xyxy.numpy(), z[prefix + "det_boxes_xyxy"], atol=ATOL_BOXES_NORM
    )
    ls = MANIFEST["logit_stride"]
    mine = d.mask_logits[:, ::ls, ::ls].numpy()
    ref = z[prefix + "det_mask_logits"].astype(np.float32)
    assert np.allclose(mine, ref, rtol=1e-3, atol=2e-4), prefix
    np.testing.assert_allclose(
        d.mask_logits.abs().flatten(1).amax(1).numpy(),
        z[prefix + "det_mask_logits_absmax"],
        atol=1e-4,
    )


def replay(predictor, name: str, keys: list[str], detections: bool = False) -> list[str]:
    """Send the recorded calls `keys` of session `name` in order and compare every response
    and output frame (and, with `detections`, every detector pass with the call's `detect`
    events); returns the checked call keys."""
    z = arrays(name)
    done = []
    seen: list = []
    if detections:
        orig = predictor.detector.detect

        def spy(*a, **k):
            seen.append(orig(*a, **k))
            return seen[-1]

        predictor.detector.detect = spy
    try:
        for c in session(name)["calls"]:
            if c["key"] not in keys:
                continue
            seen.clear()
            _replay_call(predictor, name, c, z)
            if detections:
                events = [e for e in c.get("events", []) if e["kind"] == "detect"]
                assert len(seen) == len(events), (c["key"], len(seen), len(events))
                for d, e in zip(seen, events):
                    assert e["allow_new_detections"] or len(d.scores) == 0
                    check_detection(d, z, f"{c['key']}_{e['key']}_")
            done.append(c["key"])
    finally:
        if detections:
            del predictor.detector.detect
    return done


def _replay_call(predictor, name: str, c: dict, z: dict) -> None:
    """One recorded call sent and its response / yielded frames compared."""
    req = request(c["request"], name)
    if req["type"] == "propagate_in_video":
        got = list(predictor.handle_stream_request(req))
        assert [g["frame_index"] for g in got] == c["frames_yielded"], c["key"]
        for g, o in zip(got, c["outputs"]):
            assert g["outputs"]["out_obj_ids"].tolist() == o["obj_ids"], (c["key"], o)
        last = {g["frame_index"]: g for g in got}  # a frame yielded twice keeps the later
        for f, g in last.items():
            check_frame_outputs(g["outputs"], z, f"{c['key']}_f{f:03d}_")
    else:
        resp = predictor.handle_request(req)
        if req["type"] == "add_prompt":
            assert resp["frame_index"] == c["response"]["frame_index"]
            (o,) = c["outputs"]
            assert resp["outputs"]["out_obj_ids"].tolist() == o["obj_ids"], c["key"]
            check_frame_outputs(resp["outputs"], z, f"{c['key']}_f{o['frame']:03d}_")
        else:
            assert resp == c["response"], (c["key"], resp)


def check_logits(mine, stored: np.ndarray, what: str) -> None:
    """(M, 288, 288) logits against stored stride-4 float16 ones (README `trk_*` tolerance:
    rtol 1e-2, atol 2e-4 on the float32 value of the stored one)."""
    ref = stored.astype(np.float32)
    got = mine[:, :: MANIFEST["logit_stride"], :: MANIFEST["logit_stride"]].numpy()
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    bad = np.abs(got - ref) > 2e-4 + 1e-2 * np.abs(ref)
    assert not bad.any(), f"{what}: {int(bad.sum())} logits outside rtol 1e-2 / atol 2e-4"


def replay_with_tracker_events(
    predictor, name: str, keys: list[str], monkeypatch, detections: bool = False
) -> list[str]:
    """`replay` (with `detections`, its detector passes too), and per call the click path's
    low-res logits and object scores against its `tracker_points` events and every frame's
    tracker logits (hole-filled, all tracked objects in state order; their largest magnitude
    within rtol 1e-3) and object scores against its `track` events."""
    from samkit.video.sam3 import clicks, tracking
    from samkit.video.sam3.postprocess import fill_holes_in_mask_scores

    clicked: list = []
    tracked: list = []
    orig_points, orig_track = clicks.add_points, tracking.propagate

    def spy_points(*a, **k):
        clicked.append(orig_points(*a, **k))
        return clicked[-1]

    def spy_track(*a, **k):
        low, score = orig_track(*a, **k)
        tracked.append((a[3], low, score))
        return low, score

    monkeypatch.setattr(clicks, "add_points", spy_points)
    monkeypatch.setattr(tracking, "propagate", spy_track)
    z = arrays(name)
    done = []
    for key in keys:
        clicked.clear()
        tracked.clear()
        done += replay(predictor, name, [key], detections=detections)
        events = call(name, key).get("events", [])
        points = [e for e in events if e["kind"] == "tracker_points"]
        assert len(points) == len(clicked), (key, len(points), len(clicked))
        for out, e in zip(clicked, points):
            p = f"{key}_{e['key']}_"
            check_logits(out.pred_masks[:, 0], z[p + "points_mask_logits"], p)
            np.testing.assert_allclose(
                out.object_score_logits.reshape(-1).numpy(),
                z[p + "points_obj_score_logits"],
                atol=2e-5,
                err_msg=p,
            )
        frames: list = []  # the states' outputs of one frame, concatenated
        for f, low, score in tracked:
            if frames and frames[-1][0] == f:
                frames[-1][1].append(low)
                frames[-1][2].append(score)
            else:
                frames.append((f, [low], [score]))
        track = [e for e in events if e["kind"] == "track" and e["obj_ids"]]
        assert [f for f, _, _ in frames] == [e["frame"] for e in track], key
        for (_, lows, scores), e in zip(frames, track):
            p = f"{key}_{e['key']}_"
            low = fill_holes_in_mask_scores(torch.cat(lows)[:, None], 16)[:, 0]
            check_logits(low, z[p + "trk_mask_logits"], p)
            np.testing.assert_allclose(
                low.abs().flatten(1).amax(1).numpy(),
                z[p + "trk_mask_logits_absmax"],
                rtol=1e-3,
                err_msg=p,
            )
            np.testing.assert_allclose(
                torch.cat(scores).numpy(), z[p + "trk_obj_score_logits"], atol=2e-5, err_msg=p
            )
    return done
