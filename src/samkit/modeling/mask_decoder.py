"""Mask decoder (SAM 1 and SAM 2): tokens + image embedding -> mask logits and predicted IoU."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from samkit.layers import MLP, LayerNorm2d
from samkit.modeling.two_way_transformer import KeyProjections, TwoWayTransformer


class DecoderImage(NamedTuple):
    """The prompt-independent image side of `MaskDecoder` for one image whose prompts share one
    dense prompt embedding (no mask input): `MaskDecoder.prepare_image`'s output, passed back to
    `forward` as `prepared` by callers that decode several batches of prompts on the image."""

    src: Tensor  # 1xCxHxW image embedding + dense prompt embedding, channels-last
    pos: Tensor  # 1xCxHxW positional encoding, channels-last
    key_proj: KeyProjections  # the first two-way block's projections of (src, pos)


class MaskDecoder(nn.Module):
    """Predicts masks from an image embedding and prompt embeddings with a two-way transformer.

    With the default flags this is SAM 1's decoder and `forward` returns `(masks, iou_pred)`.
    SAM 2 turns on high-res feature fusion, the object-score token, sigmoid IoU and dynamic
    multimask selection, and sets `sam2_outputs` so `forward` returns
    `(masks, iou_pred, sam_tokens_out, object_score_logits)` like the official SAM 2 decoder.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
        sam2_outputs: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = (
                MLP(transformer_dim, transformer_dim, 1, 3)
                if pred_obj_scores_mlp
                else nn.Linear(transformer_dim, 1)
            )
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh
        self.sam2_outputs = sam2_outputs

    def prepare_image(
        self, image_embeddings: Tensor, image_pe: Tensor, dense_prompt_embeddings: Tensor
    ) -> DecoderImage:
        """The image-side work of `forward` that does not depend on the sparse prompts.

        Args:
            image_embeddings: 1xCxHxW, one image.
            image_pe: 1xCxHxW positional encoding.
            dense_prompt_embeddings: 1xCxHxW (or Bx... broadcast from one row, stride 0), the
                same for every prompt: the no-mask embedding.

        Returns:
            A `DecoderImage` to pass to `forward(..., prepared=...)` with these tensors.

        Raises:
            ValueError: more than one image, or dense embeddings that differ per prompt.
        """
        if not one_image_side(image_embeddings, dense_prompt_embeddings):
            raise ValueError(
                "prepare_image needs one 1xCxHxW image embedding and one dense prompt embedding "
                f"for every prompt; got {tuple(image_embeddings.shape)} and "
                f"{tuple(dense_prompt_embeddings.shape)}"
            )
        src, pos = self._image_side(image_embeddings, image_pe, dense_prompt_embeddings, 1, True)
        return DecoderImage(src, pos, self.transformer.project_image(src, pos))

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        repeat_image: bool = True,
        high_res_features: list[Tensor] | None = None,
        prepared: DecoderImage | None = None,
    ) -> tuple[Tensor, ...]:
        """Predict masks.

        Args:
            image_embeddings: 1xCxHxW (repeated for every prompt when `repeat_image`) or BxCxHxW.
            image_pe: 1xCxHxW positional encoding.
            sparse_prompt_embeddings: BxTxC.
            dense_prompt_embeddings: BxCxHxW.
            multimask_output: return the 3 multimask outputs instead of the single mask.
            repeat_image: repeat the image embedding for each of the B prompts.
            high_res_features: SAM 2's [Bx(C/8)x4Hx4W, Bx(C/4)x2Hx2W] features (after conv_s0/s1).
            prepared: `prepare_image(image_embeddings, image_pe, dense_prompt_embeddings)` of
                these same tensors, when the caller keeps it across batches of prompts on one
                image (it only saves work); computed here when None.

        Returns:
            BxMx4Hx4W mask logits and BxM IoU predictions (M = 3 or 1); with `sam2_outputs` also the
            SAM output tokens and Bx1 object-score logits.
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
            prepared,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if not self.sam2_outputs:
            return masks, iou_pred
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        repeat_image: bool = True,
        high_res_features: list[Tensor] | None = None,
        prepared: DecoderImage | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """All mask tokens' masks (BxNmx4Hx4W), IoU (BxNm), mask tokens and object scores;
        arguments as `forward`."""
        token_weights = [self.iou_token.weight, self.mask_tokens.weight]
        s = 0
        if self.pred_obj_scores:
            token_weights.insert(0, self.obj_score_token.weight)
            s = 1
        output_tokens = torch.cat(token_weights, dim=0)
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = output_tokens.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)  # (B, T, C)

        if prepared is not None:
            src, pos_src, key_proj = prepared
        else:
            src, pos_src = self._image_side(
                image_embeddings, image_pe, dense_prompt_embeddings, b, repeat_image
            )
            key_proj = None
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens, key_proj)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens, :]

        src = src.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last view
        if not self.use_high_res_features or high_res_features is None:
            upscaled = self.output_upscaling(src)
        else:
            dc1, ln1, act1, dc2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            upscaled = act1(ln1(dc1(src) + feat_s1))
            upscaled = act2(dc2(upscaled) + feat_s0)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, Nm, C/8)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, uh * uw)).reshape(b, -1, uh, uw)
        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def _image_side(
        self, image_embeddings: Tensor, image_pe: Tensor, dense: Tensor, b: int, repeat_image: bool
    ) -> tuple[Tensor, Tensor]:
        """(image embedding + dense prompt, its positional encoding), channels-last."""
        if repeat_image and image_embeddings.shape[0] != 1:
            src = torch.repeat_interleave(image_embeddings, b, dim=0)
        elif not repeat_image and image_embeddings.shape[0] != b:
            raise ValueError(
                f"{image_embeddings.shape[0]} image embeddings for {b} prompts; "
                "expected one per prompt when repeat_image=False"
            )
        else:  # one per prompt, or a single one that the add below broadcasts over b prompts
            src = image_embeddings
        if one_image_side(src, dense):
            # One image and the same dense prompt (no mask input) for every prompt: keep the image
            # side at batch 1; the transformer broadcasts it until the first image->token update.
            src = src + dense[:1]
        else:
            src = src + dense
            if src.shape[0] != b:
                src = src.expand(b, -1, -1, -1)
        # Channels-last layout makes the transformer's (B, HW, C) token views contiguous, so its
        # adds and projections do not stride through memory; image_pe broadcasts over the batch.
        src = src.contiguous(memory_format=torch.channels_last)
        pos_src = image_pe.contiguous(memory_format=torch.channels_last)
        return src, pos_src

    def _get_stability_scores(self, mask_logits: Tensor) -> Tensor:
        mask_logits = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        area_i = torch.sum(mask_logits > delta, dim=-1).float()
        area_u = torch.sum(mask_logits > -delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: Tensor, all_iou_scores: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Keep the single-mask output when it is stable, else the best multimask output."""
        multimask_logits = all_mask_logits[:, 1:]
        multimask_iou = all_iou_scores[:, 1:]
        best = torch.argmax(multimask_iou, dim=-1)
        batch = torch.arange(multimask_iou.shape[0], device=all_iou_scores.device)
        best_logits = multimask_logits[batch, best].unsqueeze(1)
        best_iou = multimask_iou[batch, best].unsqueeze(1)
        single_logits = all_mask_logits[:, 0:1]
        single_iou = all_iou_scores[:, 0:1]
        is_stable = self._get_stability_scores(single_logits) >= (
            self.dynamic_multimask_stability_thresh
        )
        logits = torch.where(
            is_stable[..., None, None].expand_as(single_logits), single_logits, best_logits
        )
        iou = torch.where(is_stable.expand_as(single_iou), single_iou, best_iou)
        return logits, iou


def one_image_side(image: Tensor, dense: Tensor) -> bool:
    """One image embedding and the same dense prompt (no mask input) for every prompt: the case
    `MaskDecoder.prepare_image` serves."""
    return image.shape[0] == 1 and (dense.shape[0] == 1 or dense.stride(0) == 0)
