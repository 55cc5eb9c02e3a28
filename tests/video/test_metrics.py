"""DAVIS J / F / J&F: hand-computed cases and a transcription of the DAVIS 2017 evaluation code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from samkit.video.eval.metrics import (
    boundary_f,
    boundary_tolerance,
    evaluate_object,
    region_similarity,
    seg2bmap,
    statistics,
    summarize,
)


def rect(h=100, w=100, rows=(40, 50), cols=(20, 70), dy=0, dx=0) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[rows[0] + dy : rows[1] + dy, cols[0] + dx : cols[1] + dx] = True
    return m


# ---------------------------------------------------------------- the DAVIS code, transcribed
# davis2017/metrics.py (db_eval_iou, f_measure, _seg2bmap) and utils.py (db_statistics), with
# skimage.morphology.disk written out and cv2.dilate replaced by scipy's binary dilation (the same
# operation for a symmetric structuring element and a zero border).


def davis_iou(annotation, segmentation):
    annotation, segmentation = annotation.astype(bool), segmentation.astype(bool)
    inters = np.sum(segmentation & annotation, axis=(-2, -1))
    union = np.sum(segmentation | annotation, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inters / union
    if j.ndim == 0:
        j = 1 if np.isclose(union, 0) else j
    else:
        j[np.isclose(union, 0)] = 1
    return j


def davis_seg2bmap(seg):
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def skimage_disk(radius):
    grid = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(grid, grid)
    return (x**2 + y**2) <= radius**2


def davis_f_measure(foreground_mask, gt_mask, bound_th=0.008):
    bound_pix = (
        bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    )
    fg_boundary = davis_seg2bmap(foreground_mask)
    gt_boundary = davis_seg2bmap(gt_mask)
    disk = skimage_disk(bound_pix)
    fg_dil = ndimage.binary_dilation(fg_boundary, disk)
    gt_dil = ndimage.binary_dilation(gt_boundary, disk)
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg, n_gt = np.sum(fg_boundary), np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def davis_statistics(per_frame_values):
    m = np.nanmean(per_frame_values)
    o = np.nanmean(per_frame_values > 0.5)
    ids = np.round(np.linspace(1, len(per_frame_values), 5) + 1e-10) - 1
    ids = ids.astype(np.uint8)
    d_bins = [per_frame_values[ids[i] : ids[i + 1] + 1] for i in range(0, 4)]
    d = np.nanmean(d_bins[0]) - np.nanmean(d_bins[3])
    return m, o, d


# ---------------------------------------------------------------- hand-computed cases


def test_tolerance_is_a_share_of_the_diagonal():
    assert boundary_tolerance(100, 100) == 2  # ceil(0.008 * 141.4) = ceil(1.13)
    assert boundary_tolerance(480, 854) == 8  # DAVIS 480p: ceil(7.84)
    assert boundary_tolerance(1080, 1920) == 18  # ceil(17.62)
    assert boundary_tolerance(100, 100, bound_th=3) == 3  # >= 1 means pixels


def test_boundary_map_of_a_rectangle():
    b = seg2bmap(rect())  # rows 40..49, cols 20..69
    assert b.sum() == 2 * 10 + 2 * 50
    assert b[39, 19:70].all() and b[40:50, 19].all()  # the outer L, half a pixel towards 0
    assert b[40:50, 69].all() and b[49, 20:69].all()  # the inner L
    assert not b[41:48, 21:68].any()


def test_perfect():
    assert region_similarity(rect(), rect()) == 1.0
    assert boundary_f(rect(), rect()) == 1.0


def test_shift_within_the_tolerance_keeps_f_at_one():
    gt, pred = rect(), rect(dy=2)  # 2 rows down; the tolerance at 100x100 is 2 pixels
    assert region_similarity(gt, pred) == pytest.approx(400 / 600)  # 8x50 / (500+500-400)
    assert boundary_f(gt, pred) == 1.0


def test_shift_beyond_the_tolerance():
    gt, pred = rect(), rect(dy=5)
    assert region_similarity(gt, pred) == pytest.approx(250 / 750)
    # Of the 120 predicted boundary pixels only those near the short sides match: 6 on the top
    # row (3 per end), 7 + 7 on the sides -> precision 20/120; recall is 20/120 by symmetry.
    assert boundary_f(gt, pred) == pytest.approx(1 / 6)


def test_empty_prediction_and_absent_object():
    empty = np.zeros((100, 100), bool)
    assert region_similarity(rect(), empty) == 0.0
    assert boundary_f(rect(), empty) == 0.0
    # object absent in the ground truth: predicting nothing is right, predicting something wrong
    assert region_similarity(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    assert region_similarity(empty, rect()) == 0.0 and boundary_f(empty, rect()) == 0.0


def test_statistics_by_hand():
    v = [1.0, 0.2, 0.8, 0.4, 0.6, 0.9, 0.3, 0.7]
    s = statistics(v)
    assert s["mean"] == pytest.approx(4.9 / 8)
    assert s["recall"] == pytest.approx(5 / 8)
    # DAVIS bins of 8 frames: [0:3], [2:5], [4:6], [5:8]; decay = first bin mean - last bin mean
    assert s["decay"] == pytest.approx((1 + 0.2 + 0.8) / 3 - (0.9 + 0.3 + 0.7) / 3)


def test_object_video_and_overall_means():
    gt = np.stack([rect(), rect(), np.zeros((100, 100), bool)])
    pred = np.stack([rect(), rect(dy=5), np.zeros((100, 100), bool)])
    o = evaluate_object(gt, pred)
    assert o["J"]["per_frame"] == pytest.approx([1, 1 / 3, 1])
    assert o["F"]["per_frame"] == pytest.approx([1, 1 / 6, 1])
    assert o["J"]["mean"] == pytest.approx(7 / 9) and o["F"]["mean"] == pytest.approx(13 / 18)
    assert o["J&F"] == pytest.approx((7 / 9 + 13 / 18) / 2)
    perfect = evaluate_object(gt, gt)
    s = summarize({"a": {1: o, 2: perfect}, "b": {1: perfect}})
    assert s["videos"]["a"]["J"] == pytest.approx((7 / 9 + 1) / 2)
    assert s["videos"]["b"]["J&F"] == 1.0
    assert s["overall"]["objects"] == 3
    assert s["overall"]["J-Mean"] == pytest.approx((7 / 9 + 2) / 3)  # over objects, not videos
    assert s["overall"]["J&F-Mean"] == pytest.approx(
        (s["overall"]["J-Mean"] + s["overall"]["F-Mean"]) / 2
    )


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="HxW or TxHxW"):
        boundary_f(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="non-empty"):
        statistics([])
    with pytest.raises(ValueError, match="no objects"):
        summarize({"v": {}})


# ---------------------------------------------------------------- against the DAVIS code


def blobs(rng, h, w, n=3) -> np.ndarray:
    m = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


@pytest.mark.parametrize("h,w", [(60, 90), (121, 77), (240, 427)])
def test_equals_the_davis_code_on_random_masks(h, w):
    rng = np.random.default_rng(h * w)
    gts, preds = [], []
    for k in range(12):
        gt = blobs(rng, h, w) if k % 6 else np.zeros((h, w), bool)
        pred = ndimage.shift(gt, rng.integers(-6, 7, 2), order=0) if k % 4 else blobs(rng, h, w)
        if k % 5 == 0:
            pred = np.zeros((h, w), bool)
        gt[0, :] |= k == 7  # touch the image border too
        gts.append(gt)
        preds.append(pred)
    gts, preds = np.stack(gts), np.stack(preds)
    np.testing.assert_allclose(
        region_similarity(gts, preds), davis_iou(gts, preds), rtol=0, atol=1e-15
    )
    ref_f = np.array([davis_f_measure(p, g) for g, p in zip(gts, preds)])
    np.testing.assert_allclose(boundary_f(gts, preds), ref_f, rtol=0, atol=1e-15)
    assert 0 < ref_f.mean() < 1  # a mix of matches and misses, not a degenerate case
    for m_name, vals in (("J", davis_iou(gts, preds)), ("F", ref_f)):
        m, o, d = davis_statistics(vals)
        s = evaluate_object(gts, preds)[m_name]
        assert (s["mean"], s["recall"]) == pytest.approx((m, o)) and math.isclose(
            s["decay"], d, abs_tol=1e-12
        )
