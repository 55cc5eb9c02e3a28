"""The traceable torch modules `samkit.export.sam2_video` exports, one per part of a SAM 2-style
video model, and their seeded example inputs (interface: that module's docstring).

Each wraps the float32 model and calls its own modules (`forward_image`, the prompt encoder and
mask decoder, `memory_attention`, `memory_encoder`, `obj_ptr_proj`, ...), with the tracker's
Python choices (multimask or not, clicks or not) turned into inputs and `torch.where`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.export.sam2 import hiera_levels, hiera_pos_embed
from samkit.layers.attention import sdpa
from samkit.layers.rope import RoPEAttention, rotate
from samkit.modeling.hiera import Hiera
from samkit.modeling.memory_conditioning import sine_pe_1d
from samkit.modeling.sam2_video import NO_OBJ_SCORE, Sam2Video
from samkit.runtime.accel import plain_float32_copy

HIGH_RES_NAMES = ("high_res_feats_0", "high_res_feats_1")


def traceable_copy(model: Any) -> Sam2Video:
    """A float32 copy of a video model, or a ValueError saying what is expected."""
    if not isinstance(model, Sam2Video):
        raise ValueError(
            "video export needs a SAM 2-style video model (Sam2Video: SAM 2 / 2.1, EfficientTAM "
            f"built from a checkpoint with the memory tensors), got {type(model).__name__}"
        )
    if model.num_maskmem < 1:
        raise ValueError("video export needs a model with memories (num_maskmem >= 1)")
    if model.non_overlap_masks_for_mem_enc:
        raise ValueError(
            "video export does not support non_overlap_masks_for_mem_enc=True (no official "
            "config sets it): export the model with it off"
        )
    traced = plain_float32_copy(model)
    if traced is model:
        traced = copy.deepcopy(model)  # the attention classes are swapped below
    for m in traced.modules():
        if isinstance(m, RoPEAttention) and not isinstance(m, _TraceableRoPE):
            cls = type(m)
            bases = (_TraceableRoPE,) if cls is RoPEAttention else (cls, _TraceableRoPE)
            m.__class__ = type(f"Traceable{cls.__name__}", bases, {})
    return traced


class _TraceableRoPE(RoPEAttention):
    """`RoPEAttention.forward` as the exporter can trace it: the rotated keys and the object
    pointer keys are concatenated. (The torch forward writes the rotated keys into a slice of a
    preallocated tensor, `rotate(..., out=view)`; the TorchScript ONNX exporter drops that write.)
    Subclasses that call `super().forward` (EfficientTAM's one-frame case) get this one."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        q = self._separate_heads(self.q_proj(q))  # (B, nh, Nq, hs)
        k = self._separate_heads(self.k_proj(k))  # (B, nh, Nk, hs)
        v = self._separate_heads(self.v_proj(v))
        n_rope = k.shape[-2] - num_k_exclude_rope
        cos2, sin2 = self.rope_tables(q.shape[-2], q.device)
        q = rotate(q, cos2, sin2)
        k = torch.cat([rotate(k[:, :, :n_rope], cos2, sin2), k[:, :, n_rope:]], dim=2)
        out = sdpa(q, k, v)  # (B, nh, Nq, hs)
        b, nh, n, hs = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hs))


class VideoImageEncoder(nn.Module):
    """`image` -> (image_embed, image_pos, *high-res features): `Sam2.forward_image`'s levels.

    A Hiera trunk's position embedding (a bicubic resize and a tiling that depend only on the
    weights and the fixed input size) is computed once in torch and stored as a constant, as
    `samkit.export.sam2.Sam2OnnxEncoder` does: traced, `Tensor.tile` becomes an If whose branch
    outputs differ in length (5 / 4), which onnxruntime warns about on every load ("Error merging
    shape info for output '/image_encoder/trunk/Concat_3_output_0'").
    """

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model
        pos = hiera_pos_embed(model) if isinstance(model.image_encoder.trunk, Hiera) else None
        self.register_buffer("trunk_pos_embed", pos, persistent=False)  # None: another trunk

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        if self.trunk_pos_embed is None:
            out = model.forward_image(image)
            fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        else:  # Sam2.forward_image
            fpn, pos = hiera_levels(model, image, self.trunk_pos_embed)
            if model.use_high_res_features_in_sam:
                fpn[0] = model.sam_mask_decoder.conv_s0(fpn[0])
                fpn[1] = model.sam_mask_decoder.conv_s1(fpn[1])
        n = model.num_feature_levels
        return (fpn[-1], pos[-1], *fpn[-n:-1])


class VideoMaskDecoder(nn.Module):
    """Prompt encoder + mask decoder + object pointer (`Sam2Video.forward_sam_heads`),
    with the multimask choice an input instead of a Python branch."""

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embed: Tensor,
        *rest: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m = self.model
        *high_res, coords, labels, mask_input, has_mask_input, multimask = rest
        pe, decoder = m.sam_prompt_encoder, m.sam_mask_decoder
        b = image_embed.shape[0]
        sparse = pe._embed_points(coords, labels, pad=True)
        h, w = pe.image_embedding_size
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        dense = torch.where(has_mask_input > 0.5, pe.mask_downscaling(mask_input), no_mask)
        masks, ious, tokens, obj_scores = decoder.predict_masks(
            image_embed, pe.get_dense_pe(), sparse, dense, False, high_res or None
        )
        rows = torch.arange(b, device=masks.device)
        best = torch.argmax(ious[:, 1:], dim=-1)
        multi_mask = masks[:, 1:][rows, best].unsqueeze(1)
        multi_token = tokens[:, 1:][rows, best] if decoder.use_multimask_token_for_obj_ptr else None
        if decoder.dynamic_multimask_via_stability:
            single_mask, _ = decoder._dynamic_multimask_via_stability(masks, ious)
        else:
            single_mask = masks[:, 0:1]
        use_multi = multimask.reshape(1, 1) > 0.5
        mask = torch.where(use_multi.reshape(1, 1, 1, 1), multi_mask, single_mask)
        token = tokens[:, 0]
        if multi_token is not None:
            token = torch.where(use_multi, multi_token, token)
        if m.pred_obj_scores:
            present = obj_scores > 0
            mask = torch.where(present[:, :, None, None], mask, NO_OBJ_SCORE)
        mask = mask.float()
        high_res = F.interpolate(
            mask, size=(m.image_size, m.image_size), mode="bilinear", align_corners=False
        )
        obj_ptr = m.obj_ptr_proj(token)
        if m.pred_obj_scores:
            lam = obj_scores.sigmoid() if m.soft_no_obj_ptr else present.to(obj_ptr.dtype)
            if m.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * m.no_obj_ptr
        return mask, high_res, obj_ptr.float(), obj_scores.float()


class VideoMemoryAttention(nn.Module):
    """`condition_on_memory` with the memory bank as stacked tensors (see the module docstring)."""

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        feat: Tensor,
        feat_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        memory_tpos_index: Tensor,
        obj_ptrs: Tensor,
        obj_ptr_pos: Tensor,
    ) -> Tensor:
        m = self.model
        b, c, h, w = feat.shape
        cm = m.mem_dim
        # (B, F, C_mem, h, w) -> (B, F*h*w, C_mem): the torch code's per-frame flatten + cat
        mem = memory.permute(0, 1, 3, 4, 2).reshape(b, -1, cm)
        tpos = m.maskmem_tpos_enc.reshape(m.num_maskmem, cm)[memory_tpos_index]  # (F, C_mem)
        mem_pos = memory_pos + tpos.reshape(1, -1, cm, 1, 1)
        mem_pos = mem_pos.permute(0, 1, 3, 4, 2).reshape(b, -1, cm)
        ptrs, ppos = pointer_tokens(m, obj_ptrs, obj_ptr_pos)
        tokens = m.memory_attention(
            feat.flatten(2).transpose(1, 2),
            torch.cat([mem, ptrs], dim=1),
            feat_pos.flatten(2).transpose(1, 2),
            torch.cat([mem_pos, ppos], dim=1),
            num_obj_ptr_tokens=ptrs.shape[1],
        )
        return tokens.transpose(1, 2).reshape(b, c, h, w)


def pointer_tokens(m: Sam2Video, obj_ptrs: Tensor, obj_ptr_pos: Tensor) -> tuple[Tensor, Tensor]:
    """BxPxC object pointers and their (P,) normalised offsets -> (BxMxC_mem tokens, BxMxC_mem
    encodings), M = P x C / C_mem (`memory_conditioning.object_pointer_tokens` on tensors)."""
    b, n_ptr = obj_ptrs.shape[:2]
    c, cm = m.hidden_dim, m.mem_dim
    if m.add_tpos_enc_to_obj_ptrs:
        tpos_dim = c if m.proj_tpos_enc_in_obj_ptrs else cm
        ppos = sine_pe_1d(obj_ptr_pos, tpos_dim)
        if isinstance(m.obj_ptr_tpos_proj, nn.Linear):
            ppos = m.obj_ptr_tpos_proj(ppos)
        ppos = ppos.unsqueeze(0).expand(b, -1, -1)
    else:
        ppos = obj_ptrs.new_zeros(b, n_ptr, cm)
    ptrs = obj_ptrs
    if cm < c:  # each pointer becomes C / C_mem tokens
        split = c // cm
        ptrs = ptrs.reshape(b, n_ptr * split, cm)
        ppos = ppos.repeat_interleave(split, dim=1)
    return ptrs, ppos


class VideoMemoryEncoder(nn.Module):
    """The model's `encode_new_memory` with `is_mask_from_pts` an input."""

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        pix_feat: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: Tensor,
    ) -> tuple[Tensor, Tensor]:
        m = self.model
        masks = high_res_masks
        if m.binarize_mask_from_pts_for_mem_enc:
            # The model binarises click masks (logits > 0) for a Python flag; here the flag is an
            # input: +-inf logits, whose sigmoid is exactly 1 / 0 (torch and onnxruntime), stand
            # for the binary mask, and the model's own method (with any family override, e.g. a
            # perceiver) runs on them.
            inf = torch.full_like(masks, float("inf"))
            binary = torch.where(masks > 0, inf, -inf)
            masks = torch.where(is_mask_from_pts.reshape(1, 1, 1, 1) > 0.5, binary, masks)
        return m.encode_new_memory(pix_feat, masks, object_score_logits, False)


class MaskDownsample(nn.Module):
    """`Sam2Video.mask_downsample`: a Bx1xSxS mask prompt -> Bx1x(S/4)x(S/4) decoder mask input."""

    def __init__(self, model: Sam2Video) -> None:
        super().__init__()
        self.model = model

    def forward(self, mask: Tensor) -> Tensor:
        return self.model.mask_downsample(mask)


def example_inputs(model: Sam2Video, frames: int = 2, pointers: int = 3) -> dict[str, Any]:
    """Seeded example inputs of every part (2 objects, so no batch-1 shortcut is traced)."""
    g = torch.Generator().manual_seed(0)
    s, c = model.image_size, model.hidden_dim
    (h, w) = model.sam_prompt_encoder.image_embedding_size
    b = 2

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g)

    high = [r(b, c // 8, 4 * h, 4 * w), r(b, c // 4, 2 * h, 2 * w)]
    # a memory's shape (C_mem x mh x mw: the stride-16 grid, or a family's compressed tokens)
    with torch.no_grad():
        mem, _ = model.encode_new_memory(r(1, c, h, w), r(1, 1, s, s), torch.ones(1, 1), True)
    cm, mh, mw = mem.shape[1:]
    high = high[: model.num_feature_levels - 1]
    return {
        "image": r(1, 3, s, s),
        "decoder": {
            "image_embed": r(b, c, h, w),
            **dict(zip(HIGH_RES_NAMES, high)),
            "point_coords": torch.randint(0, s, (b, 3, 2), generator=g).float(),
            "point_labels": torch.tensor([[1, 0, 2], [3, 1, -1]], dtype=torch.int32),
            "mask_input": r(b, 1, 4 * h, 4 * w),
            "has_mask_input": torch.tensor([1.0]),
            "multimask_output": torch.tensor([1.0]),
        },
        "attention": {
            "feat": r(b, c, h, w),
            "feat_pos": r(b, c, h, w),
            "memory": r(b, frames, cm, mh, mw),
            "memory_pos": r(b, frames, cm, mh, mw),
            "memory_tpos_index": torch.arange(frames, dtype=torch.int64),
            "obj_ptrs": r(b, pointers, c),
            "obj_ptr_pos": torch.arange(pointers, dtype=torch.float32) / 15,
        },
        "memory_encoder": {
            "pix_feat": r(b, c, h, w),
            "high_res_masks": r(b, 1, s, s) * 10,
            "object_score_logits": torch.tensor([[1.0], [-1.0]]),
            "is_mask_from_pts": torch.tensor([1.0]),
        },
        "mask_downsample": {"mask": (r(b, 1, s, s) > 0).float()},
    }
