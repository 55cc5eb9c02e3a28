"""SAM 2's FPN neck and the image encoder (Hiera trunk + neck).

State-dict names follow the official `sam2.modeling.backbones.image_encoder` (`convs.{i}.conv`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.hiera import Hiera


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    Every backbone level gets a 1x1 lateral convolution to `d_model` channels; the levels in
    `fpn_top_down_levels` also add the 2x-upsampled output of the next coarser level.

    Args:
        position_encoding: encoding computed for every output level.
        d_model: output channels.
        backbone_channel_list: trunk channels, coarsest level first (like `Hiera.channel_list`).
        fpn_interp_model: interpolation of the top-down path ("nearest" in all official models).
        fuse_type: "sum" or "avg" of lateral and top-down features.
        fpn_top_down_levels: levels (0 = finest) that receive top-down features; None = all.
    """

    def __init__(
        self,
        position_encoding: PositionEmbeddingSine,
        d_model: int,
        backbone_channel_list: list[int] | tuple[int, ...],
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: list[int] | tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        self.position_encoding = position_encoding
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in self.backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size, stride, padding))
            self.convs.append(level)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        n = len(self.convs)
        self.fpn_top_down_levels = list(
            range(n) if fpn_top_down_levels is None else fpn_top_down_levels
        )

    def forward(
        self, xs: list[Tensor], num_levels: int | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Fuse trunk features.

        Args:
            xs: trunk features, finest first (BxC_ixH_ixW_i).
            num_levels: compute outputs only for the first `num_levels` levels (finest first);
                coarser levels are still computed if a kept level needs their top-down features.

        Returns:
            (features, position encodings), finest first, each BxDxH_ixW_i.
        """
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"FpnNeck expects {n} feature levels, got {len(xs)}")
        keep = n if num_levels is None else num_levels
        out: list[Tensor | None] = [None] * n
        pos: list[Tensor | None] = [None] * n
        prev = None
        for i in range(n - 1, -1, -1):  # coarse to fine
            lateral = self.convs[n - 1 - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                top_down = F.interpolate(
                    prev.float(),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False,
                )
                prev = lateral + top_down.to(lateral.dtype)
                if self.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            out[i] = prev
            if i < keep:
                pos[i] = self.position_encoding(prev)
        return out[:keep], pos[:keep]  # type: ignore[return-value]


class ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck; drops the `scalp` coarsest levels.

    `forward` returns the official dict: `vision_features` (the coarsest kept level),
    `vision_pos_enc` and `backbone_fpn` (lists, finest first).
    """

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 0) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"trunk channels {trunk.channel_list} do not match the neck's "
                f"backbone_channel_list {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """Bx3xHxW normalised image -> backbone outputs (see class docstring)."""
        feats = self.trunk(sample)
        features, pos = self.neck(feats, num_levels=len(feats) - self.scalp)
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}
