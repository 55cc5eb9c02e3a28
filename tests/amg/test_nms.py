"""NMS against a literal (scalar, float32) transcription of torchvision's CPU kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.amg import batched_nms, box_iou, nms


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """torchvision's nms_kernel_impl, one scalar at a time in float32 (stable score order)."""
    f = np.float32
    b = boxes.astype(f)
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    suppressed = [False] * len(order)
    keep = []
    for _i, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[_i + 1 :]:
            if suppressed[j]:
                continue
            w = max(f(0), min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(f(0), min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = f(w * h)
            ovr = f(inter / f(f(areas[i] + areas[j]) - inter))
            if float(ovr) > thr:
                suppressed[j] = True
    return keep


def reference_batched(boxes, scores, idxs, thr) -> list[int]:
    """torchvision's batched_nms: coordinate trick up to 1000 boxes, per-class loop above."""
    if boxes.size <= 4000:
        offsets = idxs.astype(np.float32) * (boxes.max() + np.float32(1))
        return reference_nms(boxes + offsets[:, None], scores, thr)
    keep = []
    for c in sorted(set(idxs.tolist())):
        sel = np.flatnonzero(idxs == c)
        keep += [int(sel[k]) for k in reference_nms(boxes[sel], scores[sel], thr)]
    keep = torch.tensor(sorted(keep))
    return keep[torch.from_numpy(scores)[keep].sort(descending=True)[1]].tolist()


def test_hand_checked() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 3) = 90 / 100 = 0.9; IoU(0, 1) = 81 / 119 = 0.68; IoU(3, 1) = 72 / 118 = 0.61.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.65).tolist() == [3, 1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    # Strictly greater suppresses: IoU exactly 0.5 is kept at threshold 0.5.
    two = torch.tensor([[0, 0, 2, 1], [1, 0, 3, 1], [0, 0, 2, 1.0]])
    assert box_iou(two[:1], two[1:2]).item() == pytest.approx(1 / 3)
    assert nms(two[[0, 2]], torch.tensor([1.0, 0.5]), 0.999).tolist() == [0]
    half = torch.tensor([[0, 0, 4, 1], [0, 0, 2, 1.0]])
    assert nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(half, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_ties_keep_input_order() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    # Many tied scores (where an unstable sort would reorder): identical to the reference.
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 100, (300, 2))
    wh = rng.integers(5, 60, (300, 2))
    b = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    s = rng.integers(0, 3, 300).astype(np.float32)
    got = nms(torch.from_numpy(b), torch.from_numpy(s), 0.3).tolist()
    assert got == reference_nms(b, s, 0.3)


@pytest.mark.parametrize("n, thr", [(50, 0.5), (400, 0.7), (1100, 0.3)])
def test_random_against_reference(n: int, thr: float) -> None:
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(1, 80, (n, 2))
    b = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    s = rng.random(n).astype(np.float32)
    s[::7] = s[0]  # some ties
    idxs = rng.integers(0, 3, n)
    got = batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(idxs), thr)
    # n > 1000 takes torchvision's per-class ("vanilla") path, like torchvision on CPU.
    assert got.tolist() == reference_batched(b, s, idxs, thr)
    if n > 500:
        return
    zero = torch.zeros(n, dtype=torch.int64)
    got1 = batched_nms(torch.from_numpy(b), torch.from_numpy(s), zero, thr)
    ref1 = reference_nms(b, s, thr)
    assert got1.tolist() == ref1


def test_threshold_compared_in_double() -> None:
    # IoU 0.1 in float32 (0.100000001) is > 0.1 as a double: suppressed, as in torchvision.
    b = torch.tensor([[0, 0, 10, 1], [0, 0, 1, 1.0]])
    iou = box_iou(b[:1], b[1:])[0, 0]
    assert float(iou) > 0.1
    assert nms(b, torch.tensor([1.0, 0.5]), 0.1).tolist() == [0]


def test_categories_do_not_interact() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([1, 1]), 0.5).tolist() == [0]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="Nx4"):
        nms(torch.zeros(3, 3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="one score per box"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="finite"):
        nms(torch.tensor([[0, 0, float("nan"), 1]]), torch.zeros(1), 0.5)
    with pytest.raises(ValueError, match="same dtype"):
        nms(torch.zeros(1, 4), torch.zeros(1, dtype=torch.float64), 0.5)
