"""HQ-SAM: SAM 1 (ViT or TinyViT encoder) with a high-quality output token in the mask decoder.

HQ-SAM (Ke et al., NeurIPS 2023; official code `segment_anything_hq`, github SysCV/sam-hq) adds to
SAM 1's decoder one more output token (`hf_token`) with its own hypernetwork MLP (`hf_mlp`), and
"HQ features" made once per image from the image embedding and an early encoder feature (the
output of the first global-attention ViT block, or of TinyViT's second stage):

    hq_features = embedding_encoder(image_embedding) + compress_vit_feat(early_feature)
    hq_mask_features = embedding_maskfeature(sam_mask_features) + hq_features
    hq_mask = hf_mlp(hf_token_out) . hq_mask_features

The output is one mask per prompt: the SAM mask (the single-mask token, or with
`multimask_output` the best of the three by predicted IoU) plus the HQ mask, or the HQ mask alone
with `hq_token_only`. State-dict keys equal the official checkpoints (`sam_hq_vit_b.pth`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from samkit.layers import MLP, LayerNorm2d
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.mobile_sam import OFFICIAL_VIT_T
from samkit.modeling.sam import Sam
from samkit.modeling.tiny_vit import TinyViT
from samkit.modeling.two_way_transformer import TwoWayTransformer


class MaskDecoderHQ(MaskDecoder):
    """SAM 1's `MaskDecoder` plus HQ-SAM's token, MLP and feature-fusion convolutions.

    Args:
        transformer_dim, transformer, num_multimask_outputs, activation, iou_head_depth,
            iou_head_hidden_dim: as `MaskDecoder` (SAM 1 flags only).
        vit_dim: channels of the early encoder feature (ViT width; TinyViT stage-2 width).
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        vit_dim: int,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__(
            transformer_dim,
            transformer,
            num_multimask_outputs,
            activation,
            iou_head_depth,
            iou_head_hidden_dim,
        )
        c = transformer_dim
        self.vit_dim = vit_dim
        self.hf_token = nn.Embedding(1, c)
        self.hf_mlp = MLP(c, c, c // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, c, kernel_size=2, stride=2),
            LayerNorm2d(c),
            nn.GELU(),
            nn.ConvTranspose2d(c, c // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(c // 8, c // 4, 3, 1, 1),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.Conv2d(c // 4, c // 8, 3, 1, 1),
        )

    def hq_features(self, image_embeddings: Tensor, interm_embeddings: Tensor) -> Tensor:
        """Per-image HQ features: BxCxhxw embedding and Bxhxwx`vit_dim` early feature (channels
        last, as the encoders give it) -> Bx(C/8)x4hx4w."""
        vit = interm_embeddings.permute(0, 3, 1, 2)
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(vit)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        repeat_image: bool = True,
        high_res_features: list[Tensor] | None = None,
        prepared: Any = None,
        hq_token_only: bool | None = None,
        interm_embeddings: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """Predict one mask per prompt.

        Args:
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output, repeat_image, prepared: as `MaskDecoder.forward`.
            high_res_features: `[hq_features(...)]` of this image (1 or B rows), computed once
                per image by the predictors; or None to compute it from `interm_embeddings`.
            hq_token_only: True: the HQ mask; False: SAM mask + HQ mask (the official default);
                None: return the parts, `(sam_masks, iou_pred, hq_masks)`, for a caller that
                combines them itself (`combine_hq`).
            interm_embeddings: Bxhxwx`vit_dim` early encoder feature (official argument).

        Returns:
            Bx1x4hx4w mask logits and Bx1 IoU predictions (the chosen SAM mask's), or the three
            parts when `hq_token_only` is None.

        Raises:
            ValueError: neither `high_res_features` nor `interm_embeddings` given.
        """
        if high_res_features is not None:
            hq = high_res_features[0]
        elif interm_embeddings is not None:
            hq = self.hq_features(image_embeddings, interm_embeddings)
        else:
            raise ValueError(
                "HQ-SAM's decoder needs the image's HQ features (high_res_features=[...]; "
                "SamHQPredictor computes them, SamPredictor does not) or the "
                "encoder's early feature (interm_embeddings=...)"
            )
        masks, iou_pred, hq_masks = self.predict_masks_hq(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            hq,
            repeat_image,
            prepared,
        )
        if multimask_output:
            iou_pred, best = torch.max(iou_pred[:, 1:], dim=1)
            rows = torch.arange(masks.shape[0], device=masks.device)
            masks = masks[:, 1:][rows, best].unsqueeze(1)
            iou_pred = iou_pred.unsqueeze(1)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if hq_token_only is None:
            return masks, iou_pred, hq_masks
        return combine_hq(masks, hq_masks, hq_token_only), iou_pred

    def predict_masks_hq(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        hq_features: Tensor,
        repeat_image: bool = True,
        prepared: Any = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """All SAM masks BxNmx4hx4w, their IoUs BxNm, and the HQ mask Bx1x4hx4w."""
        tokens_w = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight])
        b = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat((tokens_w.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings), 1)
        if prepared is not None:
            src, pos_src, key_proj = prepared
        else:
            src, pos_src = self._image_side(
                image_embeddings, image_pe, dense_prompt_embeddings, b, repeat_image
            )
            key_proj = None
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens, key_proj)
        n = self.num_mask_tokens
        mask_tokens_out = hs[:, 1 : 1 + n, :]
        hf_out = hs[:, 1 + n, :]

        src = src.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        upscaled = self.output_upscaling(src)  # (B, C/8, 4H, 4W)
        upscaled_hq = self.embedding_maskfeature(upscaled) + hq_features
        hyper = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, Nm, C/8)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c8, uh * uw)).reshape(b, n, uh, uw)
        hq_hyper = self.hf_mlp(hf_out).unsqueeze(1)  # (B, 1, C/8)
        hq_masks = (hq_hyper @ upscaled_hq.reshape(-1, c8, uh * uw)).reshape(b, 1, uh, uw)
        return masks, self.iou_prediction_head(hs[:, 0, :]), hq_masks


def combine_hq(sam_masks: Tensor, hq_masks: Tensor, hq_token_only: bool) -> Tensor:
    """HQ-SAM's output logits: the HQ mask alone, or SAM mask + HQ mask (official rule)."""
    return hq_masks if hq_token_only else sam_masks + hq_masks


class SamHQ(Sam):
    """HQ-SAM: a SAM 1 model whose decoder is `MaskDecoderHQ`; the encoder is SAM 1's ViT
    (`sam_hq_vit_b/l/h`) or TinyViT (`sam_hq_vit_tiny`). Keys match the official checkpoints."""

    family: str = "sam_hq"
    mask_decoder: MaskDecoderHQ

    @property
    def variant(self) -> str:
        """`sam_hq_vit_b` / `_l` / `_h` / `sam_hq_vit_tiny`, or a description of another size."""
        enc = self.image_encoder
        if isinstance(enc, TinyViT):
            official = (enc.embed_dims, enc.depths) == OFFICIAL_VIT_T
            return "sam_hq_vit_tiny" if official else enc.describe()
        base = super().variant
        return f"sam_hq_{base}" if base.startswith("vit_") else base

    @contextmanager
    def capture_interm(self) -> Iterator[list[Tensor]]:
        """While active, every image-encoder run appends its early feature (Bxhxwx`vit_dim`,
        channels last, in the decoder's dtype): the first global-attention ViT block's output,
        or TinyViT's stage-1 output after its patch merging (official `interm_embeddings[0]`)."""
        enc = self.image_encoder
        if isinstance(enc, TinyViT):
            g = enc.grid
            module: nn.Module = enc.layers[1]

            def to_bhwc(t: Tensor) -> Tensor:
                return t.view(t.shape[0], g, g, -1)
        else:
            module = next(b for b in enc.blocks if b.window_size == 0)

            def to_bhwc(t: Tensor) -> Tensor:
                return t

        got: list[Tensor] = []
        handle = module.register_forward_hook(
            lambda _m, _i, out: got.append(to_bhwc(out).to(self.dtype))
        )
        try:
            yield got
        finally:
            handle.remove()

    def encode_image(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Bx3xSxS preprocessed image -> (BxCxhxw embedding, Bxhxwx`vit_dim` early feature)."""
        with self.capture_interm() as got:
            features = self.image_encoder(x)
        return features, got[-1]

    def forward(  # type: ignore[override]
        self,
        batched_input: list[dict[str, Any]],
        multimask_output: bool,
        hq_token_only: bool = False,
    ) -> list[dict[str, Tensor]]:
        """Official batched forward (`segment_anything_hq.modeling.Sam.forward`): as
        `Sam.forward`, one mask per prompt, `hq_token_only` as in `MaskDecoderHQ.forward`."""
        images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        embeddings, interm = self.encode_image(images.to(self.dtype))
        outputs = []
        for i, record in enumerate(batched_input):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res, iou = self.mask_decoder(
                embeddings[i : i + 1],
                self.prompt_encoder.get_dense_pe(),
                sparse,
                dense,
                multimask_output,
                hq_token_only=hq_token_only,
                interm_embeddings=interm[i : i + 1],
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
