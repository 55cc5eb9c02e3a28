"""`samkit eval-video` on objects that appear after the first frame (YouTube-VOS / LVOS layout).

The expected masks are computed here the way the official `sam2` `tools/vos_inference.py
--track_object_appearing_later_in_video` does it (`vos_separate_inference_per_object`): one pass per
object from its first annotated frame, scores -1024 where an object was not tracked, the highest
logit wins where objects overlap, then `> 0`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samkit.video import build_sam2_video_predictor
from samkit.video.eval.davis import read_davis
from samkit.video.eval.evaluate import evaluate_davis
from samkit.video.formats import read_label_png, write_palette_png
from samkit.video.frames.sources import open_video
from tests.conftest import FIXTURES
from tests.video.clips import make_davis

TINY = FIXTURES / "sam2_tiny"
N, H, W = 5, 48, 64


@pytest.fixture(scope="module")
def predictor():
    return build_sam2_video_predictor(
        str(TINY / "config.json"), checkpoint=str(TINY / "sam2_tiny.pt")
    )


def later_davis(root, first_seen: int = 2):
    """Video `a`: object 1 is annotated from frame `first_seen` on; object 2 from frame 0."""
    make_davis(root, videos=("a",), n=N, h=H, w=W)
    ann = root / "Annotations" / "a"
    for t in range(first_seen):
        lab = read_label_png(ann / f"{t:05d}.png")
        write_palette_png(ann / f"{t:05d}.png", np.where(lab == 1, 0, lab).astype(np.uint8))
    return root


def official_separate_per_object(predictor, video):
    """The official per-object protocol, written out with the public predictor API."""
    state = predictor.init_state(open_video(video.frames_dir, predictor.image_size))
    ids = sorted(video.first_frames)
    scores = torch.full((len(ids), N, H, W), -1024.0)
    for i, oid in enumerate(ids):
        f = video.first_frames[oid]
        predictor.reset_state(state)
        predictor.add_new_mask(state, f, oid, video.labels(f) == oid)
        for t, _, logits in predictor.propagate_in_video(state, start_frame_idx=f):
            scores[i, t] = logits[0, 0]
    # _apply_non_overlapping_constraints: only the per-pixel argmax keeps its score
    keep = scores.argmax(0, keepdim=True) == torch.arange(len(ids))[:, None, None, None]
    scores = torch.where(keep, scores, scores.clamp(max=-10.0))
    labels = np.zeros((N, H, W), np.uint8)
    for i in reversed(range(len(ids))):  # the official put_per_obj_mask: smaller id written last
        labels[(scores[i] > 0).numpy()] = ids[i]
    return labels


def test_reader_finds_objects_that_appear_later(tmp_path):
    (video,) = read_davis(later_davis(tmp_path / "d"))
    assert video.object_ids == [1, 2]
    assert video.first_frames == {1: 2, 2: 0}
    assert video.objects_appear_later


def test_eval_video_prompts_each_object_where_it_appears(tmp_path, predictor):
    root = later_davis(tmp_path / "d")
    (video,) = read_davis(root)
    doc = evaluate_davis(predictor, root, tmp_path / "out", progress=False)
    objs = doc["videos"]["a"]["objects"]
    assert sorted(objs) == ["1", "2"] and doc["overall"]["objects"] == 2
    assert objs["1"]["prompt_frame"] == 2 and objs["2"]["prompt_frame"] == 0
    # scored: annotated frames after the prompt frame, never the last (frame 4)
    assert len(objs["2"]["J"]["per_frame"]) == 3 and len(objs["1"]["J"]["per_frame"]) == 1
    assert "appear" in doc["protocol"]["objects_appearing_later"]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["videos"]["a"]["objects"]["1"]["prompt_frame"] == 2

    expected = official_separate_per_object(predictor, video)
    written = np.stack([read_label_png(tmp_path / "out" / "a" / f"{t:05d}.png") for t in range(N)])
    assert np.array_equal(written, expected)
    assert not (written[:2] == 1).any()  # never predicted before it appears


def test_object_first_seen_on_the_last_frame_is_reported(tmp_path, predictor):
    root = later_davis(tmp_path / "d", first_seen=N - 1)
    with pytest.warns(UserWarning, match=r"object 1 first appears on the last frame"):
        doc = evaluate_davis(predictor, root, tmp_path / "out", progress=False)
    assert sorted(doc["videos"]["a"]["objects"]) == ["2"]
    assert doc["protocol"]["objects_never_prompted"] == {"a": [1]}


def test_first_frame_only_videos_keep_the_joint_pass(tmp_path, predictor):
    root = make_davis(tmp_path / "d", videos=("a",), n=N, h=H, w=W)
    doc = evaluate_davis(predictor, root, tmp_path / "out", progress=False)
    assert doc["protocol"]["objects_never_prompted"] == {}
    assert {o["prompt_frame"] for o in doc["videos"]["a"]["objects"].values()} == {0}
