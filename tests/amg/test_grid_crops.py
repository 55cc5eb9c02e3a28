"""Point grids, crop boxes and uncropping against hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.amg import (
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)


def test_point_grid_cell_centres_x_fastest() -> None:
    g = build_point_grid(2)
    np.testing.assert_array_equal(g, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    g4 = build_point_grid(4)
    assert g4.shape == (16, 2)
    np.testing.assert_allclose(g4[:4, 0], [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(g4[::4, 1], [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_array_equal(build_point_grid(1), [[0.5, 0.5]])


def test_layer_grids_downscale() -> None:
    grids = build_all_layer_point_grids(16, 2, 2)
    assert [len(g) for g in grids] == [256, 64, 16]
    assert [len(g) for g in build_all_layer_point_grids(5, 1, 2)] == [25, 4]  # int(5 / 2) = 2
    with pytest.raises(ValueError, match="no points"):
        build_all_layer_point_grids(2, 2, 2)
    with pytest.raises(ValueError):
        build_point_grid(0)


def test_crop_boxes_hand_checked() -> None:
    # 480x640, 1 layer: overlap = int(512/1500 * 480 * 1) = 163,
    # crop_w = ceil((163 + 640) / 2) = 402, crop_h = ceil((163 + 480) / 2) = 322,
    # x0 in (0, 239), y0 in (0, 159); x varies slowest.
    boxes, layers = generate_crop_boxes((480, 640), 1, 512 / 1500)
    assert boxes == [
        [0, 0, 640, 480],
        [0, 0, 402, 322],
        [0, 159, 402, 480],
        [239, 0, 640, 322],
        [239, 159, 640, 480],
    ]
    assert layers == [0, 1, 1, 1, 1]


def test_crop_boxes_two_layers_and_no_overlap() -> None:
    boxes, layers = generate_crop_boxes((100, 200), 2, 0.0)
    assert layers == [0] + [1] * 4 + [2] * 16
    assert boxes[1:5] == [
        [0, 0, 100, 50],
        [0, 50, 100, 100],
        [100, 0, 200, 50],
        [100, 50, 200, 100],
    ]
    # Layer 2 without overlap tiles the image exactly.
    cover = np.zeros((100, 200), int)
    for x0, y0, x1, y1 in boxes[5:]:
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert generate_crop_boxes((7, 9), 0, 0.3) == ([[0, 0, 9, 7]], [0])


def test_uncrop() -> None:
    crop = [10, 20, 30, 60]
    b = torch.tensor([[0, 0, 5, 5], [1, 2, 3, 4]])
    assert uncrop_boxes_xyxy(b, crop).tolist() == [[10, 20, 15, 25], [11, 22, 13, 24]]
    p = torch.tensor([[1.5, 2.5]], dtype=torch.float64)
    assert uncrop_points(p, crop).tolist() == [[11.5, 22.5]]
    m = torch.zeros(1, 40, 20, dtype=torch.bool)
    m[0, 0, 0] = m[0, 39, 19] = True
    full = uncrop_masks(m, crop, 70, 50)
    assert full.shape == (1, 70, 50)
    assert full.nonzero().tolist() == [[0, 20, 10], [0, 59, 29]]
    assert uncrop_masks(m, [0, 0, 20, 40], 40, 20) is m


def test_box_near_crop_edge() -> None:
    crop, orig = [100, 0, 300, 200], [0, 0, 300, 200]
    boxes = torch.tensor(
        [
            [50, 50, 100, 100],  # far from the crop's left edge (x=100 after uncrop: 150)
            [5, 50, 100, 100],  # 105: within 20 of the crop's left edge at 100
            [50, 50, 199, 100],  # right edge 299 is the image edge: kept
            [50, 0, 100, 100],  # top edge is also the image's top edge: kept
        ]
    )
    assert is_box_near_crop_edge(boxes, crop, orig).tolist() == [False, True, False, False]
