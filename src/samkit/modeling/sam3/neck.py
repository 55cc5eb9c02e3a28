"""SAM 3's dual ViTDet neck: one ViT level -> a 4-level pyramid, twice (detector and SAM 2 head).

The official `sam3.model.necks.Sam3DualViTDetNeck`: for scale 4 two stride-2 transposed
convolutions with a GELU between them, for 2 one, for 1 nothing, for 0.5 a 2x2 max-pool; then a
1x1 and a 3x3 convolution to `d_model`. `sam2_convs` is an identical pyramid with its own weights
whose levels feed the interactive (SAM 2 style) head. State-dict names match the official ones
(`trunk.*`, `convs.{i}.{dconv_2x2_0, dconv_2x2_1, dconv_2x2, maxpool_2x2, conv_1x1, conv_3x3}`,
`sam2_convs.*`).
"""

from __future__ import annotations

from torch import Tensor, nn

from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.sam3.vit import Sam3ViT


def _pyramid_level(dim: int, d_model: int, scale: float) -> nn.Sequential:
    level = nn.Sequential()
    if scale == 4.0:
        level.add_module("dconv_2x2_0", nn.ConvTranspose2d(dim, dim // 2, 2, stride=2))
        level.add_module("gelu", nn.GELU())
        level.add_module("dconv_2x2_1", nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2))
        out_dim = dim // 4
    elif scale == 2.0:
        level.add_module("dconv_2x2", nn.ConvTranspose2d(dim, dim // 2, 2, stride=2))
        out_dim = dim // 2
    elif scale == 1.0:
        out_dim = dim
    elif scale == 0.5:
        level.add_module("maxpool_2x2", nn.MaxPool2d(kernel_size=2, stride=2))
        out_dim = dim
    else:
        raise ValueError(f"neck scale factors must be 4, 2, 1 or 0.5, got {scale}")
    level.add_module("conv_1x1", nn.Conv2d(out_dim, d_model, kernel_size=1))
    level.add_module("conv_3x3", nn.Conv2d(d_model, d_model, kernel_size=3, padding=1))
    return level


class Sam3DualViTDetNeck(nn.Module):
    """ViT trunk + simple feature pyramid(s).

    Args:
        trunk: the ViT (`Sam3ViT`).
        position_encoding: sine encoding computed for every output level.
        d_model: output channels (256).
        scale_factors: pyramid scales relative to the trunk's stride-14 grid.
        add_sam2_neck: also build `sam2_convs` (the interactive head's pyramid).
    """

    def __init__(
        self,
        trunk: Sam3ViT,
        position_encoding: PositionEmbeddingSine,
        d_model: int = 256,
        scale_factors: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5),
        add_sam2_neck: bool = True,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.position_encoding = position_encoding
        self.scale_factors = tuple(scale_factors)
        dim = trunk.channel_list[-1]
        self.convs = nn.ModuleList(_pyramid_level(dim, d_model, s) for s in self.scale_factors)
        self.sam2_convs = (
            nn.ModuleList(_pyramid_level(dim, d_model, s) for s in self.scale_factors)
            if add_sam2_neck
            else None
        )

    def forward(
        self, images: Tensor
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor] | None, list[Tensor] | None]:
        """Bx3xSxS normalised images -> (sam3 levels, their position encodings, sam2 levels or
        None, their encodings or None); levels Bxd_modelxHxW finest first (S/3.5 ... S/28).

        The position encodings are cached tensors expanded over the batch: do not write to them.
        """
        x = self.trunk(images)[-1]
        sam3_out = [conv(x) for conv in self.convs]
        sam3_pos = [self.position_encoding(f) for f in sam3_out]
        if self.sam2_convs is None:
            return sam3_out, sam3_pos, None, None
        sam2_out = [conv(x) for conv in self.sam2_convs]
        sam2_pos = [self.position_encoding(f) for f in sam2_out]
        return sam3_out, sam3_pos, sam2_out, sam2_pos
