"""RLE round trips (incl. pycocotools), stability score, mask-to-box, small-region removal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.amg import (
    area_from_rle,
    batched_mask_to_box,
    calculate_stability_score,
    coco_decode_rle,
    coco_encode_rle,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
)
from samkit.amg.upsample import MaskUpsampler
from samkit.io.rle import crop_mask_to_rle, rle_counts_to_string, rle_string_to_counts
from samkit.layers.resize import postprocess_masks
from samkit.predict.inputs import get_preprocess_shape


def _random_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, h, w, generator=g) > 0.6
    m[0] = False  # empty
    m[1] = True  # full
    m[2, 0, 0] = True  # starts with a one
    return m


def test_rle_hand_checked() -> None:
    m = torch.tensor([[[0, 1, 1], [0, 1, 0]]], dtype=torch.bool)  # column-major: 0 0 1 1 1 0
    assert mask_to_rle_pytorch(m) == [{"size": [2, 3], "counts": [2, 3, 1]}]
    first = torch.tensor([[[1, 0], [1, 0]]], dtype=torch.bool)
    assert mask_to_rle_pytorch(first)[0]["counts"] == [0, 2, 2]
    rle = {"size": [2, 3], "counts": [2, 3, 1]}
    np.testing.assert_array_equal(rle_to_mask(rle), m[0].numpy())
    assert area_from_rle(rle) == 3
    with pytest.raises(ValueError):
        rle_to_mask({"size": [2, 3], "counts": [2, 3]})


def test_rle_round_trip_and_crop_form() -> None:
    masks = _random_masks(6, 13, 17)
    masks[3] = False
    masks[3, 4:9, 2:6] = torch.rand(5, 4) > 0.3
    masks[3, 4, 2] = masks[3, 8, 5] = True
    rles = mask_to_rle_pytorch(masks)
    for m, rle in zip(masks, rles):
        np.testing.assert_array_equal(rle_to_mask(rle), m.numpy())
        assert area_from_rle(rle) == int(m.sum())
        box = batched_mask_to_box(m).tolist()
        crop = m[box[1] : box[3] + 1, box[0] : box[2] + 1]
        assert crop_mask_to_rle(crop, box, 13, 17) == rle


def test_coco_strings_round_trip() -> None:
    for counts in ([0, 5, 3, 100, 2], [221], [7, 1, 1, 1, 100000, 3, 2], [0, 1]):
        s = rle_counts_to_string(counts)
        assert rle_string_to_counts(s) == counts
    masks = _random_masks(4, 31, 23, seed=1)
    for m, rle in zip(masks, mask_to_rle_pytorch(masks)):
        coco = coco_encode_rle(rle)
        assert isinstance(coco["counts"], str)
        np.testing.assert_array_equal(coco_decode_rle(coco), m.numpy())


def test_coco_rle_matches_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    masks = _random_masks(5, 40, 29, seed=2)
    for m, rle in zip(masks, mask_to_rle_pytorch(masks)):
        ours = coco_encode_rle(rle)
        theirs = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode()
        assert ours["size"] == list(theirs["size"])
        decoded = mask_utils.decode({"size": ours["size"], "counts": ours["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), m.numpy())
        # pycocotools' reading of the uncompressed form agrees too.
        fr = mask_utils.frPyObjects(rle, *rle["size"])
        assert fr["counts"].decode() == ours["counts"]
        assert int(mask_utils.area(fr)) == area_from_rle(rle)


def test_stability_score_hand_checked() -> None:
    logits = torch.tensor([[[-2.0, -0.5, 0.5], [1.5, 2.5, 0.9]]])
    # > 1: {1.5, 2.5} = 2; > -1: 5 pixels -> 0.4
    assert calculate_stability_score(logits, 0.0, 1.0).tolist() == [pytest.approx(0.4)]
    assert calculate_stability_score(logits, 0.0, 0.0).item() == 1.0
    assert torch.isnan(calculate_stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0)).all()
    big = torch.zeros(2, 300, 40000)
    big[0, :, :35000] = 3.0
    big[1, :, :10] = 3.0
    s = calculate_stability_score(big, 0.0, 1.0)  # counts beyond int16: no overflow
    assert s[0].item() == 0.875  # 300 * 35000 / (300 * 40000): no int16 overflow
    assert s[1].item() == pytest.approx(10 / 40000)


def test_mask_to_box() -> None:
    m = torch.zeros(3, 2, 6, 8, dtype=torch.bool)
    m[0, 0, 1:3, 2:5] = True
    m[1, 1, 5, 7] = True
    m[2, 0, 0, 0] = m[2, 0, 5, 3] = True
    b = batched_mask_to_box(m)
    assert b.shape == (3, 2, 4) and b.dtype == torch.int64
    assert b[0, 0].tolist() == [2, 1, 4, 2]
    assert b[0, 1].tolist() == [0, 0, 0, 0]  # empty
    assert b[1, 1].tolist() == [7, 5, 7, 5]
    assert b[2, 0].tolist() == [0, 0, 3, 5]
    assert batched_mask_to_box(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)


def test_remove_small_regions_hand_checked() -> None:
    pytest.importorskip("scipy")
    m = np.zeros((10, 10), bool)
    m[1:7, 1:7] = True
    m[4, 4] = False  # 1-pixel hole
    m[9, 9] = True  # 1-pixel island, diagonal to nothing
    m[8, 8] = True  # ... and diagonal to (9, 9): one 8-connected island of 2 pixels
    filled, changed = remove_small_regions(m, 2, "holes")
    assert changed and filled[4, 4] and filled.sum() == m.sum() + 1
    cleaned, changed = remove_small_regions(m, 3, "islands")
    assert changed and not cleaned[8, 8] and not cleaned[9, 9] and cleaned.sum() == m.sum() - 2
    # Diagonal neighbours connect (8-connectivity): a 2-pixel island survives a threshold of 2.
    same, changed = remove_small_regions(m, 2, "islands")
    assert not changed and same is not None and (same == m).all()
    # All islands small: the largest is kept.
    tiny = np.zeros((6, 6), bool)
    tiny[0, 0] = True
    tiny[3:5, 3:5] = True
    kept, changed = remove_small_regions(tiny, 10, "islands")
    assert changed and kept.sum() == 4 and not kept[0, 0]
    with pytest.raises(ValueError, match="mode"):
        remove_small_regions(m, 2, "both")


@pytest.mark.parametrize("hw", [(1200, 1800), (1800, 1200), (402, 322), (37, 999), (534, 800)])
def test_upsampler_is_bitwise_postprocess_masks(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    low = torch.randn(3, 1, 256, 256)
    input_size = get_preprocess_shape(*hw, 1024)
    ref = postprocess_masks(low, input_size, hw, 1024)
    up = MaskUpsampler((256, 256), 1024, input_size, hw, torch.device("cpu"))
    for i in range(3):
        assert torch.equal(up(low[i, 0]), ref[i, 0])


def _reference_coco_string(counts: list[int]) -> str:
    """pycocotools' rleToString, transcribed one value at a time."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if ch & 0x10 else (x != 0)
            out.append(chr((ch | 0x20 if more else ch) + 48))
    return "".join(out)


def test_vectorised_coco_string_matches_the_reference_at_every_width() -> None:
    rng = np.random.default_rng(3)
    cases = [[0], [5], [0, 1], [15, 16, 17, 511, 512, 0, 2**20, 1], [2**62, 1, 3, 2**40, 7]]
    # Every character count from 1 to 13, with deltas of both signs.
    cases += [[int(v) for v in rng.integers(0, 2**k, size=40)] for k in range(1, 63, 3)]
    for counts in cases:
        s = rle_counts_to_string(counts)
        assert s == _reference_coco_string(counts)
        assert rle_string_to_counts(s) == counts
    assert rle_counts_to_string(np.asarray(cases[3])) == _reference_coco_string(cases[3])
    assert rle_counts_to_string([]) == ""


def test_stability_and_mask_matches_the_official_formula() -> None:
    from samkit.amg.masks import calculate_stability_score, stability_and_mask

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(97, 131, generator=g) * 3
    logits[::7, ::5] = 1.0  # exactly on the upper threshold
    logits[1::9, ::4] = -1.0  # and on the lower one
    stability, mask = stability_and_mask(logits, 0.0, 1.0, -1.0)
    assert stability.dtype == torch.float32
    assert stability == calculate_stability_score(logits[None], 0.0, 1.0)[0]
    assert torch.equal(mask, logits > 0.0)


def test_bbox_and_area_from_rle_are_pycocotools_own():
    # COCO's box covers the pixels (w = x_max - x_min + 1): what pycocotools.mask.toBbox gives,
    # from either RLE form; the official SAM box is one pixel smaller.
    from samkit.amg.masks import batched_mask_to_box
    from samkit.io.rle import area_from_rle, bbox_from_rle, to_coco_rle

    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), bool), np.ones((477, 640), bool)]
    for i in range(400):
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        m = rng.random((h, w)) < rng.random() if i % 2 else np.zeros((h, w), bool)
        if i % 2 == 0:
            y0, y1 = sorted(rng.integers(0, h, 2))
            x0, x1 = sorted(rng.integers(0, w, 2))
            m[y0 : y1 + 1, x0 : x1 + 1] = True
        masks.append(m)
    for m in masks:
        t = torch.as_tensor(m)
        rle = mask_to_rle_pytorch(t[None])[0]
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert to_coco_rle(m)["counts"] == ref["counts"].decode()
        expected = mask_utils.toBbox(ref).tolist()
        assert bbox_from_rle(rle) == bbox_from_rle(to_coco_rle(m)) == expected, m
        assert area_from_rle(rle) == area_from_rle(to_coco_rle(m)) == int(mask_utils.area(ref))
        if m.any():
            x0, y0, x1, y1 = batched_mask_to_box(t[None])[0].tolist()
            assert expected == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
    assert bbox_from_rle(to_coco_rle(np.ones((477, 640), bool))) == [0, 0, 640, 477]
