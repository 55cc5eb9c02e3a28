"""The detector half of SAM 3 video: one frame, the session's prompt, joint scores, mask NMS.

Official path (sam3 0.1.4): `Sam3VideoBase.run_backbone_and_detection` ->
`Sam3ImageOnVideoMultiGPU.forward_video_grounding_multigpu` -> `forward_grounding`, with
`supervise_joint_box_scores=True`, so a query's logit is
`logit(sigmoid(class) * sigmoid(presence))` (eps 1e-3) clamped to [-10, 10]
(`Sam3Image._update_scores_and_boxes`); then `perflib.nms.nms_masks` (greedy by score over the
binary 288x288 masks of the queries above `score_threshold_detection`; a query whose mask IoU
with a kept one is > `det_nms_thresh` gets -1e4 added to its logit). Detections are the queries
with probability > `score_threshold_detection`, in query order. The tracker's image features
are the backbone's SAM 2 neck levels rounded to bfloat16 (the multi-GPU transport cast), then
`conv_s0` / `conv_s1` of the tracker's mask decoder on levels 0 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from samkit.modeling.sam3.sam3_image import GeometricPrompt, Sam3Image

NMS_SUPPRESSED = 1e4  # added (negated) to the logit of a query NMS drops
NO_DETECTION = 1e8  # subtracted from the probabilities when new detections are off


@dataclass
class FrameDetections:
    """One frame's detector outputs.

    Attributes:
        query_logits: (Q,) joint logits before NMS.
        presence_logit: (1,) presence logit.
        query_boxes_xyxy: (Q, 4) normalised boxes.
        nms_keep: (Q,) bool, kept by threshold + NMS.
        scores: (K,) probabilities of the detections (queries with prob > threshold).
        boxes_xyxy: (K, 4) normalised; mask_logits: (K, 288, 288).
        tracker_fpn: the tracker's three levels [(1, C/8, 4H, 4W), (1, C/4, 2H, 2W),
            (1, C, H, W)] (bfloat16-rounded, projected); tracker_pos: (1, C, H, W) of the
            coarsest level.
    """

    query_logits: Tensor
    presence_logit: Tensor
    query_boxes_xyxy: Tensor
    nms_keep: Tensor
    scores: Tensor
    boxes_xyxy: Tensor
    mask_logits: Tensor
    tracker_fpn: list[Tensor]
    tracker_pos: Tensor


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """log(x / (1 - x)) with both clamped to >= eps (official `model_misc.inverse_sigmoid`)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) IoU of (N, H, W) and (M, H, W) bool masks (official `perflib.masks_ops.mask_iou`:
    an empty union counts as 1 pixel)."""
    if a.dtype != torch.bool or b.dtype != torch.bool:
        raise ValueError("mask_iou needs bool masks")
    n, m = a.shape[0], b.shape[0]
    af = a.reshape(n, 1, -1)
    bf = b.reshape(1, m, -1)
    inter = (af & bf).sum(-1).float()
    union = (af | bf).sum(-1).float()
    return inter / union.clamp(min=1)


def nms_masks(probs: Tensor, masks: Tensor, prob_threshold: float, iou_threshold: float) -> Tensor:
    """(Q,) bool keep mask: queries above `prob_threshold`, greedy NMS on mask IoU.

    Args:
        probs: (Q,) probabilities; masks: (Q, H, W) logits (binarised at 0).
    """
    valid = probs > prob_threshold
    if not bool(valid.any()):
        return valid
    p = probs[valid].float().cpu().numpy()
    binary = masks[valid] > 0
    ious = mask_iou(binary, binary).cpu().numpy()
    order = p.argsort()[::-1]
    kept: list[int] = []
    while order.size > 0:
        i = int(order[0])
        kept.append(i)
        order = order[1:][ious[i, order[1:]] <= iou_threshold]
    valid_idx = np.flatnonzero(valid.cpu().numpy())
    keep = torch.zeros_like(valid)
    keep[torch.as_tensor(valid_idx[kept], dtype=torch.long)] = True
    return keep


class FrameDetector:
    """Runs the SAM 3 detector on single frames with a fixed prompt.

    Args:
        model: a `Sam3Image` with its backbone, segmentation head and tracker heads.
        score_threshold: `score_threshold_detection` (official build: 0.5).
        nms_threshold: `det_nms_thresh` (0.1); <= 0 turns NMS off.
    """

    def __init__(self, model: Sam3Image, score_threshold: float, nms_threshold: float) -> None:
        if model.tracker is None or model.segmentation_head is None:
            raise ValueError("SAM 3 video needs the detector's segmentation head and tracker heads")
        self.model = model
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self._text: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def image_size(self) -> int:
        """The model input side (1008)."""
        return int(self.model.image_size)

    def text_features(self, text: str) -> tuple[Tensor, Tensor]:
        """(1, P, C) features and (1, P) padding mask of a prompt (cached per string)."""
        from samkit.text.tokenizer import tokenize

        if text not in self._text:
            m = self.model
            ids = tokenize([text], context_length=m.backbone.language_backbone.context_length)
            out = m.backbone.forward_tokens(ids.to(m.device))
            self._text = {text: (out["language_features"].transpose(0, 1), out["language_mask"])}
        return self._text[text]

    def detect(
        self,
        frame: Tensor,
        text: str,
        geometric_prompt: GeometricPrompt | None,
        allow_new_detections: bool = True,
        score_threshold: float | None = None,
    ) -> FrameDetections:
        """Detections of one (3, R, R) normalised frame (any float dtype); `score_threshold`
        replaces the detector's own for this frame (a session's threshold)."""
        m = self.model
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        x = frame[None].to(m.device, m.dtype)
        vis = m.backbone.forward_image(x)
        feats, mask = self.text_features(text)
        out = m.forward_grounding(
            vis["backbone_fpn"], vis["vision_pos_enc"][-1], feats, mask, geometric_prompt
        )
        # the loop and the postprocess run in float32 whatever the detector's dtype
        presence = out.presence_logit_dec[0].float()
        boxes = out.pred_boxes_xyxy[0].float()
        joint = inverse_sigmoid(
            out.pred_logits[0, :, 0].float().sigmoid() * presence.sigmoid()
        ).clamp(-10.0, 10.0)
        masks = out.pred_masks[0].float()
        probs = joint.sigmoid()
        if self.nms_threshold > 0:
            keep = nms_masks(probs, masks, thr, self.nms_threshold)
            probs = (joint - NMS_SUPPRESSED * (~keep).float()).sigmoid()
        else:
            keep = probs > thr
        if not allow_new_detections:
            probs = probs - NO_DETECTION
        pos = probs > thr
        tracker_fpn, tracker_pos = self._tracker_levels(vis)
        return FrameDetections(
            query_logits=joint,
            presence_logit=presence,
            query_boxes_xyxy=boxes,
            nms_keep=keep,
            scores=probs[pos],
            boxes_xyxy=boxes[pos],
            mask_logits=masks[pos],
            tracker_fpn=tracker_fpn,
            tracker_pos=tracker_pos,
        )

    def _tracker_levels(self, vis: dict) -> tuple[list[Tensor], Tensor]:
        m = self.model
        sam2 = vis["sam2_backbone_out"]
        fpn = [f.to(torch.bfloat16).to(m.dtype) for f in sam2["backbone_fpn"]]
        dec = m.tracker.sam_mask_decoder
        levels = [dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1]), fpn[2]]
        # the tracker takes float32 features and casts them where its modules run lower
        return [f.float() for f in levels], sam2["vision_pos_enc"][-1].float()

    def tracker_features(self, frame: Tensor) -> tuple[list[Tensor], Tensor]:
        """The tracker's levels and position encoding of one (3, R, R) frame (the backbone
        alone: what the official `_prepare_backbone_feats` keeps of its detector pass)."""
        m = self.model
        vis = m.backbone.forward_image(frame[None].to(m.device, m.dtype))
        return self._tracker_levels(vis)
