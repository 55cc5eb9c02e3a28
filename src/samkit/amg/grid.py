"""Point grids for automatic mask generation (normalised [0, 1] coordinates)."""

from __future__ import annotations

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """An n x n grid of points evenly spaced in [0, 1] x [0, 1], cell centres.

    Args:
        n_per_side: points along each side (>= 1).

    Returns:
        (n*n)x2 float64 array of (x, y), x varying fastest (row-major over y).
    """
    if not isinstance(n_per_side, (int, np.integer)) or isinstance(n_per_side, bool):
        raise ValueError(f"n_per_side must be an int, got {type(n_per_side).__name__}")
    if n_per_side < 1:
        raise ValueError(f"n_per_side must be >= 1, got {n_per_side}")
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """Point grids for crop layers 0..n_layers; layer i has int(n / scale**i) points per side.

    Raises:
        ValueError: if a layer would get no points.
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if scale_per_layer < 1:
        raise ValueError(f"scale_per_layer must be >= 1, got {scale_per_layer}")
    grids = []
    for i in range(n_layers + 1):
        n_points = int(n_per_side / (scale_per_layer**i))
        if n_points < 1:
            raise ValueError(
                f"crop layer {i} gets no points: points_per_side={n_per_side} / "
                f"crop_n_points_downscale_factor**{i}={scale_per_layer**i} < 1"
            )
        grids.append(build_point_grid(n_points))
    return grids
