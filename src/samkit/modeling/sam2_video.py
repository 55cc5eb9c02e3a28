"""SAM 2 with its video memory: memory attention, memory encoder, object pointers, tracking step.

`Sam2Video` extends the image model `Sam2` with the official `SAM2Base` video modules, under the
official state-dict names (`memory_attention.*`, `memory_encoder.*`, `maskmem_tpos_enc`,
`no_mem_pos_enc`, `no_obj_ptr`, `no_obj_embed_spatial`, `obj_ptr_proj.*`, `obj_ptr_tpos_proj.*`,
`mask_downsample.*`), so every tensor of an official checkpoint loads. Which past frames a
frame attends to is chosen in `samkit.modeling.memory_selection`, how it reads them in
`samkit.modeling.memory_conditioning`; `track_step` runs one frame.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers import MLP
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.memory_attention import MemoryAttention
from samkit.modeling.memory_conditioning import condition_on_memory
from samkit.modeling.memory_conditioning import sine_pe_1d as sine_pe_1d  # re-exported
from samkit.modeling.memory_encoder import MemoryEncoder
from samkit.modeling.memory_keys import MemoryKeyCache
from samkit.modeling.memory_selection import select_memories
from samkit.modeling.neck import ImageEncoder
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.sam2 import Sam2
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory

# mask logits written on frames where the object is predicted absent
NO_OBJ_SCORE = -1024.0


class SamHeads(NamedTuple):
    """What the prompt encoder + mask decoder give for B objects (`Sam2Video.forward_sam_heads`).

    low_res_masks: Bx1x4Hx4W and high_res_masks: Bx1xSxS float32 logits of the best mask
    (NO_OBJ_SCORE where the object score is negative); obj_ptr: BxC; object_score_logits: Bx1.
    """

    low_res_masks: Tensor
    high_res_masks: Tensor
    obj_ptr: Tensor
    object_score_logits: Tensor


class Sam2Video(Sam2):
    """SAM 2 for images and videos (official `SAM2Base` in evaluation mode).

    Args:
        image_encoder, sam_prompt_encoder, sam_mask_decoder, image_size,
            directly_add_no_mem_embed, pixel_mean, pixel_std: as for `Sam2`.
        memory_attention: conditions a frame's stride-16 tokens on memories and pointers.
        memory_encoder: encodes a frame's features and mask into a memory.
        num_maskmem: memories attended to (1 conditioning slot + num_maskmem - 1 past frames).
        sigmoid_scale_for_mem_enc, sigmoid_bias_for_mem_enc: mask logits -> memory-encoder input.
        binarize_mask_from_pts_for_mem_enc: use (logits > 0) on frames with clicks.
        use_mask_input_as_output_without_sam: a mask prompt is the output (no decoder pass).
        max_cond_frames_in_attn: at most this many conditioning frames in attention (-1: all).
        multimask_output_in_sam, multimask_min_pt_num, multimask_max_pt_num,
            multimask_output_for_tracking: when the decoder gives 3 masks (best one kept).
        memory_temporal_stride_for_eval: stride r between past memory frames.
        non_overlap_masks_for_mem_enc: keep only the top object per pixel before encoding.
        use_obj_ptrs_in_encoder, max_obj_ptrs_in_encoder, only_obj_ptrs_in_the_past_for_eval:
            object pointers (decoder output tokens) of past frames in cross-attention.
        add_tpos_enc_to_obj_ptrs, proj_tpos_enc_in_obj_ptrs, use_signed_tpos_enc_to_obj_ptrs:
            their temporal encoding.
        fixed_no_obj_ptr, soft_no_obj_ptr: pointer of frames without the object.
        use_mlp_for_obj_ptr_proj: 3-layer MLP (else a Linear) from token to pointer.
        no_obj_embed_spatial: add a learned embedding to memories of frames without the object.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        memory_attention: MemoryAttention,
        memory_encoder: MemoryEncoder,
        *,
        image_size: int = 1024,
        directly_add_no_mem_embed: bool = True,
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        num_maskmem: int = 7,
        sigmoid_scale_for_mem_enc: float = 20.0,
        sigmoid_bias_for_mem_enc: float = -10.0,
        binarize_mask_from_pts_for_mem_enc: bool = True,
        use_mask_input_as_output_without_sam: bool = True,
        max_cond_frames_in_attn: int = -1,
        multimask_output_in_sam: bool = True,
        multimask_min_pt_num: int = 0,
        multimask_max_pt_num: int = 1,
        multimask_output_for_tracking: bool = True,
        memory_temporal_stride_for_eval: int = 1,
        non_overlap_masks_for_mem_enc: bool = False,
        use_obj_ptrs_in_encoder: bool = True,
        max_obj_ptrs_in_encoder: int = 16,
        only_obj_ptrs_in_the_past_for_eval: bool = True,
        add_tpos_enc_to_obj_ptrs: bool = True,
        proj_tpos_enc_in_obj_ptrs: bool = True,
        use_signed_tpos_enc_to_obj_ptrs: bool = True,
        fixed_no_obj_ptr: bool = True,
        soft_no_obj_ptr: bool = False,
        use_mlp_for_obj_ptr_proj: bool = True,
        no_obj_embed_spatial: bool = True,
    ) -> None:
        super().__init__(
            image_encoder,
            sam_prompt_encoder,
            sam_mask_decoder,
            image_size=image_size,
            directly_add_no_mem_embed=directly_add_no_mem_embed,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
        if proj_tpos_enc_in_obj_ptrs and not add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        if fixed_no_obj_ptr and not (sam_mask_decoder.pred_obj_scores and use_obj_ptrs_in_encoder):
            raise ValueError("fixed_no_obj_ptr needs object scores and object pointers")
        c = self.hidden_dim
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        self.mem_dim = memory_encoder.out_dim
        self.num_maskmem = num_maskmem
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, self.mem_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.pred_obj_scores = sam_mask_decoder.pred_obj_scores
        self.use_obj_ptrs_in_encoder = use_obj_ptrs_in_encoder
        if use_obj_ptrs_in_encoder:
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        if self.pred_obj_scores and use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = (
            nn.Parameter(torch.zeros(1, self.mem_dim)) if no_obj_embed_spatial else None
        )
        self.obj_ptr_proj: nn.Module = nn.Identity()
        if use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = MLP(c, c, c, 3) if use_mlp_for_obj_ptr_proj else nn.Linear(c, c)
        self.obj_ptr_tpos_proj: nn.Module = (
            nn.Linear(c, self.mem_dim) if proj_tpos_enc_in_obj_ptrs else nn.Identity()
        )
        self.sigmoid_scale_for_mem_enc = sigmoid_scale_for_mem_enc
        self.sigmoid_bias_for_mem_enc = sigmoid_bias_for_mem_enc
        self.binarize_mask_from_pts_for_mem_enc = binarize_mask_from_pts_for_mem_enc
        self.use_mask_input_as_output_without_sam = use_mask_input_as_output_without_sam
        self.max_cond_frames_in_attn = max_cond_frames_in_attn
        self.multimask_output_in_sam = multimask_output_in_sam
        self.multimask_min_pt_num = multimask_min_pt_num
        self.multimask_max_pt_num = multimask_max_pt_num
        self.multimask_output_for_tracking = multimask_output_for_tracking
        self.memory_temporal_stride_for_eval = memory_temporal_stride_for_eval
        self.non_overlap_masks_for_mem_enc = non_overlap_masks_for_mem_enc
        self.max_obj_ptrs_in_encoder = max_obj_ptrs_in_encoder
        self.only_obj_ptrs_in_the_past_for_eval = only_obj_ptrs_in_the_past_for_eval
        self.add_tpos_enc_to_obj_ptrs = add_tpos_enc_to_obj_ptrs
        self.proj_tpos_enc_in_obj_ptrs = proj_tpos_enc_in_obj_ptrs
        self.use_signed_tpos_enc_to_obj_ptrs = use_signed_tpos_enc_to_obj_ptrs
        self.fixed_no_obj_ptr = fixed_no_obj_ptr
        self.soft_no_obj_ptr = soft_no_obj_ptr

    # ------------------------------------------------------------------ SAM heads
    def forward_sam_heads(
        self,
        backbone_features: Tensor,
        point_inputs: Clicks | None = None,
        mask_inputs: Tensor | None = None,
        high_res_features: list[Tensor] | None = None,
        multimask_output: bool = False,
    ) -> SamHeads:
        """Prompt encoder + mask decoder on BxCxHxW (conditioned) features.

        Args:
            point_inputs: B objects' clicks (BxPx2 in model-input pixels, BxP labels).
            mask_inputs: Bx1xhxw mask prompt (resized to the decoder's mask input size).
            high_res_features: [Bx(C/8)x4Hx4W, Bx(C/4)x2Hx2W] projected high-res features.

        Returns:
            `SamHeads` (low- and high-res logits of the best mask, pointer, object score).
        """
        b = backbone_features.shape[0]
        device = backbone_features.device
        if point_inputs is not None:
            coords, labels = point_inputs.coords, point_inputs.labels
        else:
            coords = torch.zeros(b, 1, 2, device=device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        sam_mask = None
        if mask_inputs is not None:
            sam_mask = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != self.sam_prompt_encoder.mask_input_size:
                sam_mask = F.interpolate(
                    mask_inputs.float(),
                    size=self.sam_prompt_encoder.mask_input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
        sparse, dense = self.sam_prompt_encoder((coords, labels), None, sam_mask)
        masks, ious, tokens, obj_scores = self.sam_mask_decoder(
            backbone_features,
            self.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        if self.pred_obj_scores:
            present = obj_scores > 0
            masks = torch.where(present[:, None, None], masks, NO_OBJ_SCORE)
        masks = masks.float()
        token = tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=device)
            masks = masks[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        high_res = F.interpolate(
            masks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        obj_ptr = self.obj_ptr_proj(token)
        if self.pred_obj_scores:
            lam = obj_scores.sigmoid() if self.soft_no_obj_ptr else present.to(obj_ptr.dtype)
            if self.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * self.no_obj_ptr
        return SamHeads(masks, high_res, obj_ptr.float(), obj_scores.float())

    def use_mask_as_output(
        self,
        backbone_features: Tensor,
        high_res_features: list[Tensor] | None,
        mask_inputs: Tensor,
    ) -> SamHeads:
        """A Bx1xSxS binary mask prompt used as the output (+/-10 logits); the pointer comes
        from a decoder pass on the downsampled mask."""
        m = mask_inputs.float()
        high_res = m * 20.0 - 10.0
        low_res = F.interpolate(
            high_res,
            size=(high_res.shape[-2] // 4, high_res.shape[-1] // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        if self.use_obj_ptrs_in_encoder:
            obj_ptr = self.forward_sam_heads(
                backbone_features,
                mask_inputs=self.mask_downsample(m.to(self.mask_downsample.weight.dtype)),
                high_res_features=high_res_features,
            ).obj_ptr
        else:
            obj_ptr = torch.zeros(m.shape[0], self.hidden_dim, device=m.device)
        present = torch.any(m.flatten(1) > 0.0, dim=1)[..., None].float()
        obj_scores = 20.0 * present - 10.0
        if self.pred_obj_scores:
            if self.fixed_no_obj_ptr:
                obj_ptr = present * obj_ptr
            obj_ptr = obj_ptr + (1 - present) * self.no_obj_ptr.float()
        return SamHeads(low_res, high_res, obj_ptr, obj_scores)

    # ------------------------------------------------------------------ memory
    def condition_on_memory(
        self,
        feat: Tensor,
        pos: Tensor,
        memories: list[tuple[int, Tensor, Tensor]],
        pointers: list[tuple[int, Tensor]],
        max_ptrs: int,
        key_cache: MemoryKeyCache | None = None,
    ) -> Tensor:
        """BxCxHxW features fused with memories and pointers (shapes and arguments: see
        `samkit.modeling.memory_conditioning.condition_on_memory`)."""
        return condition_on_memory(self, feat, pos, memories, pointers, max_ptrs, key_cache)

    def encode_new_memory(
        self,
        pix_feat: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[Tensor, Tensor]:
        """Memory of a frame: (BxC_memxHxW features, BxC_memxHxW position encoding).

        Args:
            pix_feat: BxCxHxW stride-16 image features (without memory conditioning).
            high_res_masks: Bx1xSxS mask logits.
            object_score_logits: Bx1; the no-object embedding is added where <= 0.
            is_mask_from_pts: the masks come from clicks (binarised when configured).
        """
        if self.non_overlap_masks_for_mem_enc:
            high_res_masks = apply_non_overlapping_constraints(high_res_masks)
        if self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts:
            m = (high_res_masks > 0).float()
        else:
            m = torch.sigmoid(high_res_masks)
        if self.sigmoid_scale_for_mem_enc != 1.0:
            m = m * self.sigmoid_scale_for_mem_enc
        if self.sigmoid_bias_for_mem_enc != 0.0:
            m = m + self.sigmoid_bias_for_mem_enc
        dt = self.memory_encoder.pix_feat_proj.weight.dtype
        feats, pos = self.memory_encoder(pix_feat.to(dt), m.to(dt))
        if self.no_obj_embed_spatial is not None:
            absent = 1 - (object_score_logits > 0).to(feats.dtype)
            feats = feats + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return feats.float(), pos.float()

    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Whether the decoder gives 3 masks (the official `_use_multimask`)."""
        return (
            self.multimask_output_in_sam
            and (is_init_cond_frame or self.multimask_output_for_tracking)
            and self.multimask_min_pt_num <= num_points <= self.multimask_max_pt_num
        )

    def track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        feats: FrameFeatures,
        point_inputs: Clicks | None,
        mask_inputs: Tensor | None,
        memory: ObjectMemory,
        num_frames: int,
        track_in_reverse: bool = False,
        run_mem_encoder: bool = True,
        prev_sam_mask_logits: Tensor | None = None,
    ) -> FrameOutput:
        """One frame of one object batch (official `track_step` in evaluation).

        Args:
            feats: the frame's image features for the B objects.
            point_inputs, mask_inputs: the frame's clicks / Bx1xSxS mask prompt, or None.
            memory: the objects' outputs of other frames (read, never changed here; its
                `key_cache`, when set, keeps the memories' key parts).
            num_frames: frames in the video (the pointer window is min(num_frames, 16)).
            prev_sam_mask_logits: Bx1x(S/4)x(S/4) logits of a corrected frame, as mask input.

        Returns:
            The frame's `FrameOutput` with `pred_masks_high_res`; `maskmem_features` /
            `maskmem_pos_enc` are the new memory (None when `run_mem_encoder` is False).

        Raises:
            ValueError: a non-initial frame of an object without conditioning frames.
        """
        pix = feats.image_embed
        high_res = feats.high_res_feats
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            out = self.use_mask_as_output(pix, high_res, mask_inputs)
        else:
            if is_init_cond_frame:
                cond = pix + self.no_mem_embed.reshape(1, -1, 1, 1)
            else:
                memories, pointers, max_ptrs = select_memories(
                    self, frame_idx, memory, num_frames, track_in_reverse
                )
                cache = getattr(memory, "key_cache", None)
                kw = {} if cache is None else {"key_cache": cache}
                cond = self.condition_on_memory(
                    pix, feats.image_pos, memories, pointers, max_ptrs, **kw
                )
            if prev_sam_mask_logits is not None:
                mask_inputs = prev_sam_mask_logits
            n_pts = 0 if point_inputs is None else len(point_inputs)
            multimask = self.use_multimask(is_init_cond_frame, n_pts)
            out = self.forward_sam_heads(cond, point_inputs, mask_inputs, high_res, multimask)
        result = FrameOutput(
            pred_masks=out.low_res_masks,
            obj_ptr=out.obj_ptr,
            object_score_logits=out.object_score_logits,
            pred_masks_high_res=out.high_res_masks,
        )
        if run_mem_encoder and self.num_maskmem > 0:
            result.maskmem_features, result.maskmem_pos_enc = self.encode_new_memory(
                pix, out.high_res_masks, out.object_score_logits, point_inputs is not None
            )
        return result


def apply_non_overlapping_constraints(pred_masks: Tensor) -> Tensor:
    """Keep the highest-scoring object per pixel of Bx1xHxW logits; others clamped to <= -10."""
    if pred_masks.shape[0] == 1:
        return pred_masks
    top = torch.argmax(pred_masks, dim=0, keepdim=True)
    idx = torch.arange(pred_masks.shape[0], device=pred_masks.device)[:, None, None, None]
    return torch.where(top == idx, pred_masks, torch.clamp(pred_masks, max=-10.0))
