"""samkit's RoIAlign against a float64 loop written from the algorithm, and against values of
torchvision's upstream CPU kernel recorded in the SAM 3 oracle venv (`roi_align_cases.json`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from samkit.modeling.sam3.roi_align import roi_align

CASES = json.loads((Path(__file__).with_name("roi_align_cases.json")).read_text())


def reference_roi_align(feat, boxes, ph, pw, scale, sampling_ratio, aligned):
    """One bilinear sample at a time, in float64 (Mask R-CNN RoIAlign as torchvision computes it)."""
    feat = feat.double()
    _, c, h, w = feat.shape
    out = torch.zeros(len(boxes), c, ph, pw, dtype=torch.float64)

    def bilinear(img, y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return torch.zeros(c, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * img[:, y0, x0]
            + (1 - ly) * lx * img[:, y0, x1]
            + ly * (1 - lx) * img[:, y1, x0]
            + ly * lx * img[:, y1, x1]
        )

    off = 0.5 if aligned else 0.0
    for k, (bi, x0, y0, x1, y1) in enumerate(boxes.tolist()):
        sx, sy, ex, ey = (v * scale - off for v in (x0, y0, x1, y1))
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                acc = torch.zeros(c, dtype=torch.float64)
                for iy in range(max(gh, 0)):
                    y = sy + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(max(gw, 0)):
                        x = sx + j * bw + (ix + 0.5) * bw / gw
                        acc += bilinear(feat[int(bi)], y, x)
                out[k, :, i, j] = acc / count
    return out


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: f"{c['output_size']}-{c['aligned']}")
def test_matches_torchvision_kernel_and_float64_reference(case: dict) -> None:
    feat = torch.tensor(CASES["features"])
    boxes = torch.tensor(CASES["boxes"])
    size = case["output_size"]
    ph, pw = (size, size) if isinstance(size, int) else size
    args = (case["spatial_scale"], case["sampling_ratio"], case["aligned"])
    mine = roi_align(feat, boxes, (ph, pw), *args)
    tv = torch.tensor(case["output"])
    ref = reference_roi_align(feat, boxes, ph, pw, *args)
    torch.testing.assert_close(ref, tv.double(), rtol=0, atol=1e-5)  # the reference is right
    torch.testing.assert_close(mine.double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(mine, tv, rtol=0, atol=1e-5)


def test_random_boxes_float64() -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 4, 13, 17, generator=g, dtype=torch.float64)
    xy = torch.rand(12, 2, generator=g, dtype=torch.float64) * torch.tensor([20.0, 16.0]) - 2
    wh = torch.rand(12, 2, generator=g, dtype=torch.float64) * 9
    boxes = torch.cat([torch.randint(0, 2, (12, 1), generator=g).double(), xy, xy + wh], 1)
    for aligned in (False, True):
        mine = roi_align(feat, boxes, 7, 1.0, -1, aligned)
        ref = reference_roi_align(feat, boxes, 7, 7, 1.0, -1, aligned)
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-12)


def test_list_of_boxes_per_image_equals_indexed_rows() -> None:
    feat = torch.randn(2, 3, 8, 8)
    b0, b1 = (
        torch.tensor([[1.0, 1.0, 5.0, 6.0]]),
        torch.tensor([[0.5, 2.0, 7.5, 7.0], [2.0, 2.0, 3.0, 3.0]]),
    )
    rows = torch.tensor([[0, 1.0, 1.0, 5.0, 6.0], [1, 0.5, 2.0, 7.5, 7.0], [1, 2.0, 2.0, 3.0, 3.0]])
    torch.testing.assert_close(roi_align(feat, [b0, b1], 7), roi_align(feat, rows, 7))


@pytest.mark.parametrize(
    ("feat", "boxes", "msg"),
    [
        (torch.zeros(3, 8, 8), torch.zeros(1, 5), "features must be"),
        (torch.zeros(1, 3, 8, 8), torch.zeros(1, 4), "boxes must be"),
        (torch.zeros(1, 3, 8, 8), torch.tensor([[1.0, 0, 0, 2, 2]]), "batch index 1"),
        (torch.zeros(2, 3, 8, 8), [torch.zeros(1, 4)], "1 box tensors for 2"),
    ],
)
def test_bad_input(feat, boxes, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        roi_align(feat, boxes, 7)
