"""The generator's outputs made from its final candidates (`samkit.amg.records`, split out of
`samkit.amg.pipeline`): every output mode says the same masks, boxes in the official
conventions, and the batched tensors agree with the records. A hand-made candidate set with a
box crop, a low-res mask and an empty mask, so each branch runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.amg import OUTPUT_MODES as PUBLIC_MODES
from samkit.amg import pipeline, records
from samkit.amg.candidates import Candidates, LowResMask
from samkit.amg.records import OUTPUT_MODES, mask_records, mask_tensors
from samkit.io.rle import coco_decode_rle, rle_to_mask

H, W = 12, 16


class _Identity:
    """An upsampler that returns the logits as they are (a 12x16 'low-res' mask)."""

    def __call__(self, low_res: torch.Tensor) -> torch.Tensor:
        return low_res


def _candidates() -> tuple[Candidates, list[np.ndarray]]:
    data = Candidates()
    full = []
    # a box crop: rows 2..4, cols 3..6, one pixel off inside
    crop = torch.ones((3, 4), dtype=torch.bool)
    crop[1, 2] = False
    m = np.zeros((H, W), dtype=bool)
    m[2:5, 3:7] = crop.numpy()
    full.append(m)
    # a large mask kept as its logits (LowResMask), box rows 5..11, cols 0..15
    logits = torch.full((H, W), -1.0)
    logits[5:, :] = 1.0
    data.crops += [crop, LowResMask(logits, _Identity(), [0, 5, 15, 11], 0.0)]
    full.append((logits > 0).numpy())
    # an empty mask (a box of one pixel, no pixel set)
    data.crops.append(torch.zeros((1, 1), dtype=torch.bool))
    full.append(np.zeros((H, W), dtype=bool))
    data.boxes += [torch.tensor(b) for b in ([3, 2, 6, 4], [0, 5, 15, 11], [9, 9, 9, 9])]
    data.iou += [torch.tensor(v) for v in (0.9, 0.8, 0.7)]
    data.stability += [torch.tensor(v) for v in (0.95, 0.96, 0.97)]
    data.points += [np.array([4.0, 3.0]), np.array([8.0, 8.0]), np.array([9.5, 9.5])]
    data.crop_boxes += [[0, 0, W, H]] * 3
    return data, full


def test_the_output_modes_are_one_tuple_re_exported():
    assert pipeline.OUTPUT_MODES is records.OUTPUT_MODES is PUBLIC_MODES is OUTPUT_MODES


@pytest.mark.parametrize("mode", OUTPUT_MODES)
def test_every_output_mode_says_the_same_masks(mode):
    data, full = _candidates()
    recs = mask_records(data, (H, W), mode)
    assert len(recs) == 3
    for rec, want in zip(recs, full):
        seg = rec["segmentation"]
        got = {
            "binary_mask": lambda s: s,
            "uncompressed_rle": rle_to_mask,
            "coco_rle": coco_decode_rle,
        }[mode](seg)
        np.testing.assert_array_equal(np.asarray(got, dtype=bool), want)
        assert rec["area"] == int(want.sum())
    # the official conventions: XYWH with w = x_max - x_min, crop boxes XYWH
    assert recs[0]["bbox"] == [3, 2, 3, 2] and recs[1]["bbox"] == [0, 5, 15, 6]
    assert recs[0]["crop_box"] == [0, 0, W, H]
    assert recs[0]["point_coords"] == [[4.0, 3.0]]
    assert recs[1]["predicted_iou"] == pytest.approx(0.8)
    assert recs[2]["stability_score"] == pytest.approx(0.97)


def test_the_tensors_agree_with_the_records():
    data, full = _candidates()
    out = mask_tensors(data, (H, W), "cpu")
    assert out["masks"].shape == (3, H, W) and out["masks"].dtype == torch.bool
    np.testing.assert_array_equal(out["masks"].numpy(), np.stack(full))
    assert out["boxes"].tolist() == [[3, 2, 6, 4], [0, 5, 15, 11], [9, 9, 9, 9]]
    assert out["area"].tolist() == [int(m.sum()) for m in full]
    assert out["point_coords"].shape == (3, 2) and out["crop_boxes"].shape == (3, 4)
    torch.testing.assert_close(out["predicted_iou"], torch.tensor([0.9, 0.8, 0.7]))
    empty = mask_tensors(Candidates(), (H, W), "cpu")
    assert empty["masks"].shape == (0, H, W) and empty["boxes"].shape == (0, 4)
    assert empty["predicted_iou"].numel() == 0 and empty["point_coords"].shape == (0, 2)
