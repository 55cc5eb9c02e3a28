"""RoIAlign in plain torch (the values of torchvision's CPU kernel, no torchvision needed).

For each box, the output cell (i, j) of an `ph x pw` grid is the mean of `gh x gw` bilinear samples
taken at the centres of a regular sub-grid of that cell. With `sampling_ratio <= 0` the sub-grid is
adaptive per box: `gh = ceil(box_h / ph)`, `gw = ceil(box_w / pw)`. A sample farther than one pixel
outside the map (`y < -1`, `y > H`, `x < -1` or `x > W`) counts as 0; otherwise coordinates are
clamped to the map. `aligned=True` shifts the box by half a pixel (pixel centres at +0.5);
`aligned=False` (torchvision's default, and the call SAM 3's geometry encoder makes) does not, and
widens boxes smaller than one pixel to one pixel.

Bilinear sampling on a grid of sample points is separable, so each box is pooled with two small
interpolation matrices: `Wy (gh*ph, H) @ feature (C, H, W) @ Wx^T (W, gw*pw)`, then a block mean.
Reference: torchvision `csrc/ops/cpu/roi_align_kernel.cpp` (Mask R-CNN's RoIAlign).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _axis_weights(
    start: float, bin_size: float, bins: int, grid: int, size: int, like: Tensor
) -> Tensor:
    """(bins * grid, size) bilinear weights of the sample coordinates along one axis.

    Row r holds the weights of sample r (bin r // grid, sub-sample r % grid) over the `size`
    pixels; rows of samples outside [-1, size] are all zero.
    """
    idx = torch.arange(bins * grid, dtype=torch.float64, device=like.device)
    b, s = torch.div(idx, grid, rounding_mode="floor"), torch.remainder(idx, grid)
    pos = start + b * bin_size + (s + 0.5) * bin_size / grid  # (bins * grid,)
    valid = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(pos.dtype), pos)
    frac = pos - low.to(pos.dtype)
    w = torch.zeros(bins * grid, size, dtype=torch.float64, device=like.device)
    rows = torch.arange(bins * grid, device=like.device)
    w.index_put_((rows, low), (1.0 - frac) * valid, accumulate=True)
    w.index_put_((rows, high), frac * valid, accumulate=True)
    return w.to(like.dtype)


def roi_align(
    features: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pool a fixed-size feature patch for every box.

    Args:
        features: (N, C, H, W) feature maps.
        boxes: (K, 5) rows `[batch_index, x0, y0, x1, y1]`, or a list of N (K_i, 4) tensors of
            `x0, y0, x1, y1` (one per image, as torchvision accepts), in input pixels (times
            `spatial_scale` gives feature-map pixels).
        output_size: `ph` or `(ph, pw)`.
        spatial_scale: scale from box coordinates to feature-map coordinates.
        sampling_ratio: samples per output cell along each axis; <= 0: adaptive (see module doc).
        aligned: half-pixel offset (see module doc).

    Returns:
        (K, C, ph, pw) pooled features in `features`' dtype.

    Raises:
        ValueError: wrong shapes, or a batch index outside [0, N).
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got shape {tuple(features.shape)}")
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != features.shape[0]:
            raise ValueError(f"got {len(boxes)} box tensors for {features.shape[0]} feature maps")
        rows = []
        for i, b in enumerate(boxes):
            if b.dim() != 2 or b.shape[-1] != 4:
                raise ValueError(f"boxes[{i}] must be (K, 4), got shape {tuple(b.shape)}")
            rows.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
        boxes = torch.cat(rows) if rows else features.new_zeros(0, 5)
    if boxes.dim() != 2 or boxes.shape[-1] != 5:
        raise ValueError(
            f"boxes must be (K, 5) [batch_index, x0, y0, x1, y1], got {tuple(boxes.shape)}"
        )
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, h, w = features.shape
    out = features.new_zeros(boxes.shape[0], c, ph, pw)
    offset = 0.5 if aligned else 0.0
    for k, row in enumerate(boxes.detach().double().tolist()):
        bi = int(row[0])
        if not 0 <= bi < n:
            raise ValueError(f"box {k}: batch index {bi} outside [0, {n})")
        x0, y0 = row[1] * spatial_scale - offset, row[2] * spatial_scale - offset
        x1, y1 = row[3] * spatial_scale - offset, row[4] * spatial_scale - offset
        rw, rh = x1 - x0, y1 - y0
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bin_h, bin_w = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / ph), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / pw), 0)
        if gh == 0 or gw == 0:
            continue  # an empty box pools zeros, as the kernel does
        wy = _axis_weights(y0, bin_h, ph, gh, h, features)  # (ph*gh, H)
        wx = _axis_weights(x0, bin_w, pw, gw, w, features)  # (pw*gw, W)
        samples = wy @ features[bi] @ wx.T  # (C, ph*gh, pw*gw)
        out[k] = samples.view(c, ph, gh, pw, gw).sum(dim=(2, 4)) / (gh * gw)
    return out
