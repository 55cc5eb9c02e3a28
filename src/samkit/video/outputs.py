"""Per-frame outputs of all objects at video resolution, and the hole filling of low-res logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam2_video import NO_OBJ_SCORE, apply_non_overlapping_constraints
from samkit.video.session import InferenceSession


def consolidate(s: InferenceSession, frame_idx: int, is_cond: bool) -> Tensor:
    """Ox1xHxW video-res logits of every object on a frame (-1024 where it has none); an
    object's pending output of that kind comes first, then its stored one."""
    h, w = s.video_height, s.video_width
    n = len(s.objects)
    out = torch.full((n, 1, h, w), NO_OBJ_SCORE, dtype=torch.float32, device=s.device)
    for idx, obj in enumerate(s.objects):
        o = obj.output(frame_idx, is_cond)
        if o is None:
            continue
        m = o.pred_masks.to(s.device)
        if m.shape[-2:] != (h, w):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        out[idx : idx + 1] = m
    return out


def video_res(s: InferenceSession, non_overlap_masks: bool, masks: Tensor) -> Tensor:
    """Ox1xhxw logits at the video's HxW (bilinear), one object per pixel with
    `non_overlap_masks`."""
    h, w = s.video_height, s.video_width
    masks = masks.to(s.device)
    if masks.shape[-2:] != (h, w):
        masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
    if non_overlap_masks:
        masks = apply_non_overlapping_constraints(masks)
    return masks


def fill_holes_in_mask_scores(masks: Tensor, max_area: int) -> Tensor:
    """Set background components (logit <= 0, 8-connected) of at most `max_area` pixels of
    Bx1xhxw logits to 0.1, like the official CUDA post-processing (here scipy on the CPU)."""
    from samkit.predict.postprocess import connected_components, require_scipy

    require_scipy("fill_hole_area")
    _, areas = connected_components(masks.detach().float().cpu().numpy() <= 0)
    hole = torch.from_numpy((areas > 0) & (areas <= max_area)).to(masks.device)
    return torch.where(hole, torch.tensor(0.1, dtype=masks.dtype, device=masks.device), masks)
