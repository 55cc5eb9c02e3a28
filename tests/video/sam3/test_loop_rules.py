"""The detector-tracker rules of SAM 3 video that the recorded 4-frame sessions cannot reach
(README "What is not covered"): hotstart removal of unmatched and duplicate tracks, keep-alive
counters, occlusion suppression, association of several tracks to one detection. Expected values
follow the official `Sam3VideoBase` rules (sam3 0.1.4) worked out by hand."""

from __future__ import annotations

import numpy as np
import torch

from samkit.video.sam3.loop import Association, LoopSettings, associate, hotstart, suppress_occluded
from samkit.video.sam3.session import TrackMetadata

ST = LoopSettings()


def _masks(*boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """(N, 16, 16) logits: +1 inside each box (y0, y1, x0, x1), -1 elsewhere."""
    out = -torch.ones(len(boxes), 16, 16)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = 1.0
    return out


def test_association_decisions() -> None:
    dets = _masks((0, 8, 0, 8), (8, 16, 8, 16), (0, 4, 12, 16))
    trks = _masks((0, 8, 0, 8), (0, 8, 0, 7), (12, 16, 0, 4), (0, 0, 0, 0))
    a = associate(dets, np.array([0.9, 0.75, 0.5]), trks, [10, 11, 12, 13], ST)
    # det 0 overlaps tracks 10 (IoU 1) and 11 (IoU 56/64): matched to both, not new,
    # high confidence + IoU -> its best track 10; det 1 is new (0.75 >= 0.7, no overlap);
    # det 2 is below new_det_thresh
    assert a.new_dets == [1]
    assert a.matched == {0: [10, 11], 1: [], 2: []}
    assert a.high_conf == {10: 0}
    assert a.unmatched == [12] and a.empty == [13]
    no_tracks = associate(dets, np.array([0.1, 0.2, 0.3]), trks[:0], [], ST)
    assert no_tracks.new_dets == [0, 1, 2]  # without tracks every detection is new
    no_dets = associate(dets[:0], np.zeros(0), trks, [10, 11, 12, 13], ST)
    assert no_dets.unmatched == [10, 11, 12] and no_dets.empty == [13]


def test_hotstart_removes_a_track_unmatched_on_8_frames_within_15() -> None:
    meta = TrackMetadata()
    start = Association([0], [], [], {0: []}, {}, None)
    assert hotstart(meta, 0, False, start, [7], ST) == set()
    assert meta.keep_alive[7] == 30 and meta.first_frame[7] == 0
    unmatched = Association([], [7], [], {}, {}, None)
    removed = [hotstart(meta, f, False, unmatched, [], ST) for f in range(1, 9)]
    assert removed[:7] == [set()] * 7 and removed[7] == {7}  # 8th unmatched frame
    assert meta.keep_alive[7] == 22 and 7 in meta.removed
    # the same counts outside the hotstart window (first frame <= t - 15) keep the object
    late = TrackMetadata()
    hotstart(late, 0, False, start, [7], ST)
    for f in range(16, 24):
        assert hotstart(late, f, False, unmatched, [], ST) == set()


def test_hotstart_removes_the_later_of_two_tracks_one_detection_keeps_matching() -> None:
    meta = TrackMetadata()
    hotstart(meta, 0, False, Association([0], [], [], {}, {}, None), [1], ST)
    hotstart(meta, 1, False, Association([0], [], [], {}, {}, None), [2], ST)
    both = Association([], [], [], {0: [1, 2]}, {}, None)
    out = [hotstart(meta, f, False, both, [], ST) for f in range(2, 10)]
    assert out[-1] == {2} and all(o == set() for o in out[:-1])
    assert meta.overlap_frames[(1, 2)] == list(range(2, 10))
    assert meta.keep_alive[1] == 30  # matched: +1, capped at max_trk_keep_alive


def test_occlusion_suppression_hides_the_more_recently_occluded_of_two_overlapping() -> None:
    meta = TrackMetadata()
    low = _masks((0, 8, 0, 8), (0, 8, 0, 8), (8, 16, 8, 16))
    meta.last_occluded = {1: 3, 2: 5}  # 3 never occluded
    out = suppress_occluded(meta, 9, False, [1, 2, 3], low, set(), ST)
    assert (out[1] == -10).all() and torch.equal(out[0], low[0]) and torch.equal(out[2], low[2])
    assert meta.last_occluded == {1: 3, 2: 9, 3: -1}
    # in reverse the earlier-occluded one goes; a never-occluded partner protects nobody
    meta.last_occluded = {1: 3, 2: 5}
    out = suppress_occluded(meta, 9, True, [1, 2, 3], low, set(), ST)
    assert (out[0] == -10).all() and torch.equal(out[1], low[1])
    meta.last_occluded = {1: -1, 2: 5}
    out = suppress_occluded(meta, 9, False, [1, 2, 3], low, set(), ST)
    assert torch.equal(out, low)
