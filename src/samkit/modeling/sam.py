"""The SAM 1 model: image encoder, prompt encoder and mask decoder with pre/post-processing."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samkit.layers.resize import normalize_and_pad, postprocess_masks
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.vit import ImageEncoderViT

# (encoder width, depth) of the official ViTs at 1024 px -> their names
_OFFICIAL_VITS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


class Sam(nn.Module):
    """Segment Anything (SAM 1); state-dict keys match the official checkpoints.

    Like every samkit model it says what it is: `family` ("sam1", its entry in
    `samkit.build.registry`), `image_size` (the encoder's square input side; the official
    `img_size` is an alias), `variant` and `image_embedding_shape`.
    """

    family: str = "sam1"
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
        mask_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.mask_threshold = mask_threshold
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mask_decoder.iou_token.weight.dtype

    @property
    def image_size(self) -> int:
        """The encoder's square input side in pixels (1024 for the official models)."""
        return int(self.image_encoder.img_size)

    @property
    def img_size(self) -> int:
        """Alias of `image_size` (the official `segment_anything` name)."""
        return self.image_size

    @property
    def variant(self) -> str:
        """The architecture: `vit_b` / `vit_l` / `vit_h`, or e.g. `ViT 64 wide x 4 blocks`."""
        enc = self.image_encoder
        key = (int(enc.patch_embed.proj.out_channels), len(enc.blocks))
        if self.image_size == 1024 and key in _OFFICIAL_VITS:
            return _OFFICIAL_VITS[key]
        return f"ViT {key[0]} wide x {key[1]} blocks"

    @property
    def image_embedding_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one image's embedding (256x64x64 for the official models)."""
        pe = self.prompt_encoder
        h, w = (int(v) for v in pe.image_embedding_size)
        return int(pe.embed_dim), h, w

    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise a BxCxHxW (or CxHxW) 0-255 image and pad it to the encoder's square size."""
        x = x.to(self.pixel_mean.dtype)
        return normalize_and_pad(x, self.pixel_mean, self.pixel_std, self.img_size)

    def postprocess_masks(
        self, masks: Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> Tensor:
        """Upscale BxCxhxw low-res logits to the original image size (official semantics)."""
        return postprocess_masks(masks, tuple(input_size), tuple(original_size), self.img_size)

    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, Tensor]]:
        """Official batched forward: see `segment_anything.modeling.Sam.forward`.

        Each input dict has `image` (3xHxW, already resized so its longest side is img_size),
        `original_size` (H, W) and optionally `point_coords` (BxNx2), `point_labels` (BxN),
        `boxes` (Bx4) and `mask_inputs` (Bx1x256x256), all in the resized frame.
        """
        input_images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        image_embeddings = self.image_encoder(input_images.to(self.dtype))
        outputs = []
        for record, emb in zip(batched_input, image_embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res, iou = self.mask_decoder(
                image_embeddings=emb.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res, record["image"].shape[-2:], record["original_size"]
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs
