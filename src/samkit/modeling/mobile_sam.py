"""MobileSAM: SAM 1's prompt encoder and mask decoder behind a TinyViT image encoder.

MobileSAM (Zhang et al. 2023, github ChaoningZhang/MobileSAM, package `mobile_sam`) distils SAM
1's ViT-H encoder into a 5M-parameter TinyViT (`vit_t`) and keeps SAM 1's decoder unchanged, so
the model is a `Sam` with another encoder; state-dict keys equal the official `mobile_sam.pt`.
"""

from __future__ import annotations

from samkit.modeling.sam import Sam
from samkit.modeling.tiny_vit import TinyViT

# TinyViT stage widths and depths of the official MobileSAM encoder (`build_sam_vit_t`)
OFFICIAL_VIT_T = ((64, 128, 160, 320), (2, 2, 6, 2))


class MobileSam(Sam):
    """A SAM 1 model with a `TinyViT` image encoder (`mobile_sam` / `vit_t`)."""

    family: str = "mobile_sam"
    image_encoder: TinyViT

    @property
    def variant(self) -> str:
        """`mobile_sam` for the official encoder size, else e.g. `TinyViT 16/32/48/320 x 1/2/1/1`."""
        enc = self.image_encoder
        if (enc.embed_dims, enc.depths) == OFFICIAL_VIT_T:
            return "mobile_sam"
        return enc.describe()
