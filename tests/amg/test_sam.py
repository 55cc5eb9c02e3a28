"""SamAutomaticMaskGenerator on constructed masks (crop merging, NMS), outputs, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from samkit.amg import (
    SamAutomaticMaskGenerator,
    batched_mask_to_box,
    box_iou,
    coco_decode_rle,
    rle_to_mask,
)
from tests.conftest import FIXTURES

RADII = (6.0, 14.0, 30.0)  # half-sizes (model input pixels) of the three square masks
IOUS = (0.9, 0.97, 0.93)


class SquarePrompts(nn.Module):
    """Stands in for the prompt encoder: passes the points through."""

    def __init__(self) -> None:
        super().__init__()
        self.no_mask_embed = nn.Embedding(1, 2)  # what the adapter hands the decoder runner

    def forward(self, points, boxes, masks):
        return points[0].float(), None

    def get_dense_pe(self):
        return None


class SquareDecoder(nn.Module):
    """Three square masks centred on each point, with soft logits (4 px of ramp)."""

    def __init__(self) -> None:
        super().__init__()
        self.iou_token = nn.Embedding(1, 4)  # Sam.dtype reads this

    def forward(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output,
        **_: object,  # MaskDecoder's other inputs (repeat_image, prepared, ...): unused here
    ):
        pts = sparse_prompt_embeddings[:, 0]  # (B, 2) in the 256-px model input frame
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        cx = (xs * 4 + 1.5)[None]
        cy = (ys * 4 + 1.5)[None]
        dist = torch.maximum((cx - pts[:, 0, None, None]).abs(), (cy - pts[:, 1, None, None]).abs())
        logits = torch.stack([(r - dist) / 4 for r in RADII], 1)  # (B, 3, 64, 64)
        iou = torch.tensor(IOUS).expand(len(pts), 3)
        return logits, iou


@pytest.fixture(scope="module")
def square_model():
    from samkit import build_sam

    d = FIXTURES / "sam1_shapes"
    model = build_sam(d / "config.json", checkpoint=d / "sam1_shapes.pth").eval()
    model.prompt_encoder = SquarePrompts()
    model.mask_decoder = SquareDecoder()
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)


def _mask(record) -> np.ndarray:
    seg = record["segmentation"]
    if isinstance(seg, np.ndarray):
        return seg
    if isinstance(seg["counts"], str):
        return coco_decode_rle(seg)
    return rle_to_mask(seg)


def test_crop_merging_and_nms_on_constructed_masks(square_model, image) -> None:
    events = []
    gen = SamAutomaticMaskGenerator(
        square_model,
        points_per_side=6,
        points_per_batch=10,
        pred_iou_thresh=0.5,
        stability_score_thresh=0.5,
        box_nms_thresh=0.5,
        crop_n_layers=1,
        crop_nms_thresh=0.4,
        output_mode="binary_mask",
        progress=lambda done, total, stage: events.append((done, total, stage)),
    )
    records = gen.generate(image)
    assert len(records) > 5
    full = [0, 0, 200, 150]
    from_crops = [r for r in records if r["crop_box"] != full]
    assert from_crops and len(from_crops) < len(records)

    masks = np.stack([_mask(r) for r in records])
    boxes = batched_mask_to_box(torch.from_numpy(masks))
    for r, m, b in zip(records, masks, boxes.tolist()):
        assert m.shape == image.shape[:2] and m.dtype == bool
        assert r["area"] == int(m.sum()) > 0
        assert r["bbox"] == [b[0], b[1], b[2] - b[0], b[3] - b[1]]
        assert 0.5 < r["predicted_iou"] <= 1 and 0.5 <= r["stability_score"] <= 1
        x, y = r["point_coords"][0]
        cx, cy, cw, ch = r["crop_box"]
        assert cx <= x <= cx + cw and cy <= y <= cy + ch
        # Masks of a crop never touch the crop's inner edges (they would be cut off).
        for bv, crop_edge, image_edge in zip(b, [cx, cy, cx + cw, cy + ch], full):
            assert crop_edge == image_edge or abs(bv - crop_edge) > 20
    # After crop merging no two masks overlap (by box IoU) more than the crop NMS threshold.
    iou = box_iou(boxes.float(), boxes.float())
    iou.fill_diagonal_(0)
    assert iou.max() <= 0.4
    # Progress: one report per decoder batch and a final "done".
    assert events[-1][2] == "done" and events[-1][0] == events[-1][1]
    dones = [e[0] for e in events]
    assert dones == sorted(dones) and len(events) == events[-1][1] + 1


def test_output_modes_and_torch_path_agree(square_model, image) -> None:
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.5)
    binary = SamAutomaticMaskGenerator(square_model, **kwargs).generate(image)
    rle = SamAutomaticMaskGenerator(square_model, output_mode="uncompressed_rle", **kwargs)
    coco = SamAutomaticMaskGenerator(square_model, output_mode="coco_rle", **kwargs)
    rle_records, coco_records = rle.generate(image), coco.generate(image)
    out = rle.generate_torch(image)
    assert len(binary) == len(rle_records) == len(coco_records) == out["masks"].shape[0] > 0
    for i, (a, b, c) in enumerate(zip(binary, rle_records, coco_records)):
        np.testing.assert_array_equal(_mask(a), _mask(b))
        np.testing.assert_array_equal(_mask(a), _mask(c))
        np.testing.assert_array_equal(_mask(a), out["masks"][i].numpy())
        assert isinstance(c["segmentation"]["counts"], str)
        for key in ("area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"):
            assert a[key] == b[key] == c[key], key
        x0, y0, x1, y1 = out["boxes"][i].tolist()
        assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert int(out["area"][i]) == a["area"]
    timings = rle.timings
    assert timings["num_masks"] == len(rle_records)
    assert timings["encoder_s"] > 0 and timings["decoder_s"] > 0 and timings["postprocess_s"] >= 0


def test_filters_drop_everything(square_model, image) -> None:
    gen = SamAutomaticMaskGenerator(square_model, points_per_side=3, pred_iou_thresh=0.99)
    assert gen.generate(image) == []
    out = gen.generate_torch(image)
    assert out["masks"].shape == (0, 150, 200)


def test_small_region_postprocessing_runs(square_model, image) -> None:
    pytest.importorskip("scipy")
    gen = SamAutomaticMaskGenerator(
        square_model,
        points_per_side=3,
        pred_iou_thresh=0.5,
        stability_score_thresh=0.5,
        min_mask_region_area=50,
    )
    records = gen.generate(image)
    assert records and all(r["area"] == int(_mask(r).sum()) for r in records)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points_per_side=None), "exactly one"),
        (dict(point_grids=[np.zeros((4, 2))]), "exactly one"),
        (dict(points_per_side=0), "points_per_side"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
        (dict(stability_score_thresh=-0.1), "stability_score_thresh"),
        (dict(stability_score_offset=float("nan")), "stability_score_offset"),
        (dict(box_nms_thresh=2.0), "box_nms_thresh"),
        (dict(crop_nms_thresh=-1), "crop_nms_thresh"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
        (dict(crop_n_layers=-1), "crop_n_layers"),
        (dict(crop_n_points_downscale_factor=0), "crop_n_points_downscale_factor"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "no points"),
        (dict(min_mask_region_area=-5), "min_mask_region_area"),
        (dict(output_mode="png"), "output_mode"),
        (dict(progress="yes"), "progress"),
        (dict(points_per_side=None, point_grids=[np.full((3, 2), 2.0)]), r"\[0, 1\]"),
        (
            dict(points_per_side=None, point_grids=[np.zeros((3, 2))], crop_n_layers=1),
            "point_grids",
        ),
    ],
)
def test_bad_parameters(square_model, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SamAutomaticMaskGenerator(square_model, **kwargs)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("image.png", "numpy array"),
        (np.zeros((10, 10, 2), np.uint8), r"HxW or HxWx\{1,3,4\}"),  # HxW, HxWx4: test_image_rule
        (np.zeros((10,), np.uint8), r"HxW or HxWx\{1,3,4\}"),
        (np.full((10, 10, 3), 3.0, np.float32), r"float image must hold values in \[0, 1\]"),
        (np.ones((10, 10, 3), bool), "numeric dtype"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_images(square_model, bad, match) -> None:
    gen = SamAutomaticMaskGenerator(square_model, points_per_side=2)
    with pytest.raises(ValueError, match=match):
        gen.generate(bad)


def test_missing_connected_components_backend(square_model, monkeypatch) -> None:
    import samkit.amg.sam as g

    monkeypatch.setattr(g, "connected_components_available", lambda: False)
    with pytest.raises(ValueError, match=r"samkit\[amg\]"):
        SamAutomaticMaskGenerator(square_model, min_mask_region_area=10)
