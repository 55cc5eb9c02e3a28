"""The SAM 2 image model: Hiera + FPN image encoder, prompt encoder, mask decoder, no_mem_embed.

State-dict names match the official `SAM2Base` (`image_encoder.trunk.*`, `image_encoder.neck.*`,
`sam_prompt_encoder.*`, `sam_mask_decoder.*`, `no_mem_embed`). The video memory modules are not
built; their checkpoint tensors are skipped by `build_sam2`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.neck import ImageEncoder
from samkit.modeling.prompt_encoder import PromptEncoder

# (trunk width, blocks per stage) of the official Hieras at 1024 px -> their names
_OFFICIAL_HIERAS = {
    (96, (1, 2, 7, 2)): "hiera_t",
    (96, (1, 2, 11, 2)): "hiera_s",
    (112, (2, 3, 16, 3)): "hiera_b+",
    (144, (2, 6, 36, 4)): "hiera_l",
}


class Sam2(nn.Module):
    """SAM 2 for images.

    Args:
        image_encoder: Hiera trunk + FPN neck.
        sam_prompt_encoder: the shared prompt encoder.
        sam_mask_decoder: the shared mask decoder with the SAM 2 options (high-res features,
            object-score head, sigmoid IoU) and `sam2_outputs=True`.
        image_size: square input size.
        directly_add_no_mem_embed: add `no_mem_embed` to the lowest-resolution features (what
            the official image predictor does for a frame without memory).
        pixel_mean, pixel_std: normalisation of a [0, 1] RGB image.

    Like every samkit model it says what it is: `family` ("sam2", its entry in
    `samkit.build.registry`), `image_size` (official name; `img_size` is an alias), `variant`
    and `image_embedding_shape`.
    """

    family: str = "sam2"
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        image_size: int = 1024,
        directly_add_no_mem_embed: bool = True,
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.image_size = image_size
        self.hidden_dim = sam_prompt_encoder.embed_dim
        self.directly_add_no_mem_embed = directly_add_no_mem_embed
        self.use_high_res_features_in_sam = sam_mask_decoder.use_high_res_features
        self.num_feature_levels = 3 if self.use_high_res_features_in_sam else 1
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    @property
    def img_size(self) -> int:
        """Alias of `image_size` (the name SAM 1 code reads)."""
        return int(self.image_size)

    @property
    def variant(self) -> str:
        """The architecture: `hiera_t` / `_s` / `_b+` / `_l`, or e.g. `Hiera 96 wide, stages 1-2-3-1`."""
        trunk = self.image_encoder.trunk
        ends = [int(e) for e in trunk.stage_ends]
        stages = tuple(b - a for a, b in zip([-1, *ends[:-1]], ends))
        width = int(trunk.patch_embed.proj.out_channels)
        if int(self.image_size) == 1024 and (width, stages) in _OFFICIAL_HIERAS:
            return _OFFICIAL_HIERAS[(width, stages)]
        return f"Hiera {width} wide, stages {'-'.join(map(str, stages))}"

    @property
    def image_embedding_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one image's embedding (256x64x64 for the official models)."""
        pe = self.sam_prompt_encoder
        h, w = (int(v) for v in pe.image_embedding_size)
        return int(pe.embed_dim), h, w

    @property
    def bb_feat_sizes(self) -> list[tuple[int, int]]:
        """Spatial sizes of the decoder's feature levels, finest first (official `_bb_feat_sizes`)."""
        s = self.image_size
        sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        return sizes[-self.num_feature_levels :]

    def preprocess(self, images: Tensor) -> Tensor:
        """Bx3xHxW RGB in [0, 1] -> Bx3xSxS normalised model input.

        Resizes to the square `image_size` without keeping the aspect ratio (bilinear with
        antialiasing, as torchvision's `Resize` on tensors), then normalises.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a Bx3xHxW image batch, got {tuple(images.shape)}")
        x = images.to(self.pixel_mean.device, torch.float32)
        s = self.image_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, (s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def forward_image(self, img_batch: Tensor) -> dict[str, Any]:
        """Image encoder outputs, with levels 0 and 1 already projected by conv_s0 / conv_s1."""
        backbone_out = self.image_encoder(img_batch)
        if self.use_high_res_features_in_sam:
            fpn = list(backbone_out["backbone_fpn"])
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
            backbone_out["backbone_fpn"] = fpn
        return backbone_out

    def _prepare_backbone_features(
        self, backbone_out: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Tensor], list[Tensor], list[tuple[int, int]]]:
        """Official flattening: the last `num_feature_levels` levels as (HW)xBxC sequences."""
        backbone_out = dict(backbone_out)
        feature_maps = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        pos_embeds = backbone_out["vision_pos_enc"][-self.num_feature_levels :]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos_embeds]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos_embeds = [x.flatten(2).permute(2, 0, 1) for x in pos_embeds]
        return backbone_out, vision_feats, vision_pos_embeds, feat_sizes

    def encode_image(self, img_batch: Tensor) -> dict[str, Any]:
        """Predictor features of a normalised Bx3xSxS batch.

        Returns:
            {"image_embed": BxCx(S/16)x(S/16) (with `no_mem_embed` added when
            `directly_add_no_mem_embed`), "high_res_feats": [Bx(C/8)x(S/4)x(S/4),
            Bx(C/4)x(S/8)x(S/8)] (empty without high-res features)}.
        """
        backbone_out = self.forward_image(img_batch.to(self.dtype))
        feats = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        image_embed = feats[-1]
        if self.directly_add_no_mem_embed:
            image_embed = image_embed + self.no_mem_embed.view(1, -1, 1, 1)
        return {"image_embed": image_embed, "high_res_feats": list(feats[:-1])}

    def forward(self, img_batch: Tensor) -> dict[str, Any]:
        """Same as `encode_image` (the image part of SAM 2; prompts go through the predictor)."""
        return self.encode_image(img_batch)
