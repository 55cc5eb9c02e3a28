"""SAM 3 video parity with the recorded official sessions (tests/fixtures/sam3_video), call by
call at the README's tolerances. The detector runs at full size on 1008 px frames: a frame costs
tens of seconds on a busy CPU, so each test replays as few frames as its check needs."""

from __future__ import annotations

import pytest
import torch

from samkit.video.sam3.build import build_sam3_video_predictor
from samkit.video.sam3.frames import load_frames
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings
from tests.video.sam3 import recorded as rec

pytestmark = [
    pytest.mark.skipif(
        not (rec.CHECKPOINT.is_file() and rec.FRAMES_DIR.is_dir()),
        reason="the SAM 3 tiny checkpoint or the SAM 2 video frames are not in ../shared",
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def predictor():
    """The module's predictor; its backbone encodes each of the clip's 4 frames once for the
    module (`recorded.backbone_memo`: the sessions replay the same frames, 17 backbone passes
    otherwise), every other part runs in each call."""
    th = rec.session("text_forward_refine_remove")["thresholds"]
    pred = build_sam3_video_predictor(checkpoint_path=rec.CHECKPOINT, **th)
    with rec.backbone_memo(pred.model):
        yield pred


def test_frames_are_loaded_as_the_official_video_loader_does() -> None:
    fr = load_frames(rec.frames())
    images = torch.stack([fr[i] for i in range(len(fr))])
    assert images.dtype == torch.float16 and images.shape == (4, 3, 1008, 1008)
    assert (fr.video_height, fr.video_width) == tuple(rec.MANIFEST["video_hw"])
    assert float(images.min()) >= -1 and float(images.max()) <= 1


def test_text_forward_refine_remove_session_replays_call_by_call(predictor, monkeypatch) -> None:
    """add_prompt text on frame 0 (one detection -> object 0), then a full forward
    propagation where every later detection starts a new object (frames 1-3 -> objects 1-5):
    every detector pass (pre-NMS logits, presence, boxes, NMS keeps, detections and their
    288x288 logits), every tracker step (object 0 started from its frame-0 detection, its
    conditioning output, memory and tracked frame 1; objects 1-4 on frames 2-3: hole-filled
    logits, their largest magnitude and object scores) and every returned frame (ids, scores,
    boxes, masks). Then the click path:
    two clicks refine object 4 on frame 2 (its click logits and object score as recorded; its
    new mask is empty, so frame 2 returns 0-3), a partial forward propagation from 2 tracks
    only the state of objects 3 and 4 (their hole-filled logits and scores on frames 2 and 3
    as recorded; the other objects come from the cache), remove_object 5, and a propagation
    that only fetches the cached frames without object 5."""
    name = "text_forward_refine_remove"
    keys = ["c00", "c01", "c02"]
    assert rec.replay_with_tracker_events(predictor, name, keys, monkeypatch, True) == keys
    later = ["c03", "c04", "c05", "c06", "c07"]
    assert rec.replay_with_tracker_events(predictor, name, later, monkeypatch) == later


def test_click_new_object_session_replays_call_by_call(predictor, monkeypatch) -> None:
    """add_prompt text on frame 0, a full pass over frames 0-1, then a click with a new id (10)
    on frame 1 starts an object in its own tracker state (official action "add"); partial
    passes backward from 1 and forward over 1, a fetch, a second click on object 10 on frame 0
    (a frame its state tracked, whose tracked output the state's per-object view no longer
    sees), and a partial pass over frames 0-1: every returned frame, click and tracker step."""
    name = "click_new_object"
    keys = [c["key"] for c in rec.session(name)["calls"]]
    assert rec.replay_with_tracker_events(predictor, name, keys, monkeypatch) == keys


def test_text_both_ways_session_replays_call_by_call(predictor) -> None:
    """add_prompt text on frame 1, propagate "both" from 1: forward 1-3 then backward 0; new
    objects mid-clip (frames 2, 3 and 0 in reverse), a duplicate started when a track's mask
    is empty; every yielded frame's ids, scores, boxes and masks."""
    name = "text_both_ways"
    keys = [c["key"] for c in rec.session(name)["calls"]]
    assert rec.replay(predictor, name, keys, detections=True) == keys


def test_exemplar_box_session_replays_call_by_call(predictor) -> None:
    """add_prompt with one exemplar box (no text): the detector reads "visual" with the box on
    frame 0 and detects nothing on later frames; propagate forward for 2 frames; reset. Every
    detector pass is compared, frame 1's too: the official detector computed it ahead while on
    frame 0, with frame 0's box (its look-ahead buffer), and samkit does the same."""
    name = "exemplar_box"
    th = rec.session(name)["thresholds"]
    # the built model and tracker of the module's predictor, with this session's thresholds
    exemplar = Sam3VideoPredictor(predictor.model, predictor.tracker, Sam3VideoSettings(**th))
    keys = [c["key"] for c in rec.session(name)["calls"]]
    assert rec.replay(exemplar, name, keys, detections=True) == keys
