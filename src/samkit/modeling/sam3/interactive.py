"""SAM 3's interactive (SAM 1-style click / box) head: the tracker's SAM 2 prompt encoder and mask
decoder on the SAM 2 pyramid of the dual neck, with `no_mem_embed` added to the coarsest level.

samkit's shared `PromptEncoder` / `MaskDecoder` (SAM 2 options: high-res features through
`conv_s0` / `conv_s1`, object-score MLP, sigmoid IoU, dynamic multimask via stability; SAM 1-style
`lin1` / `lin2` MLP names in the two-way transformer) are the same computation as the official
tracker's. State-dict names are the official tracker's (`sam_prompt_encoder.*`,
`sam_mask_decoder.*`, `no_mem_embed`), so the checkpoint's `tracker.<key>` entries load after the
prefix is stripped; the video memory modules of the tracker are not built
(`Sam3TrackerHeads.is_used_tracker_key` tells a loader which keys to keep).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.two_way_transformer import TwoWayTransformer

_USED_PREFIXES = ("sam_prompt_encoder.", "sam_mask_decoder.")
_USED_KEYS = ("no_mem_embed",)


class Sam3TrackerHeads(nn.Module):
    """The SAM heads of SAM 3's tracker, for image prompts.

    Args:
        sam_prompt_encoder: prompt encoder on the (image_size / backbone_stride)^2 grid.
        sam_mask_decoder: SAM 2-style mask decoder (`sam2_outputs=True`, high-res features).
        image_size: model input side (1008).
    """

    def __init__(
        self,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        image_size: int = 1008,
    ) -> None:
        super().__init__()
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.image_size = image_size
        self.hidden_dim = sam_prompt_encoder.embed_dim
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    @property
    def bb_feat_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of the three decoder levels, finest first ((288, 288), (144, 144), (72, 72))."""
        h, w = self.sam_prompt_encoder.image_embedding_size
        return [(4 * h, 4 * w), (2 * h, 2 * w), (h, w)]

    @staticmethod
    def is_used_tracker_key(key: str) -> bool:
        """Whether a checkpoint key (with its `tracker.` prefix removed) belongs to these heads;
        the others (memory attention, memory encoder, object pointers) are video-only."""
        return key.startswith(_USED_PREFIXES) or key in _USED_KEYS

    def load_tracker_state(self, tracker_state: dict[str, Tensor]) -> None:
        """Load the head's entries of a `tracker.`-stripped state dict strictly (every key of
        this module must be present; the video-only keys are skipped).

        Raises:
            ValueError: keys are missing or tensors have other shapes.
        """
        own = {k: v for k, v in tracker_state.items() if self.is_used_tracker_key(k)}
        missing = sorted(set(self.state_dict()) - set(own))
        if missing:
            raise ValueError(f"the checkpoint lacks tracker keys {missing[:5]} ({len(missing)})")
        try:
            self.load_state_dict(own, strict=True)
        except RuntimeError as e:
            raise ValueError(f"tracker weights do not fit the interactive head: {e}") from e

    def project_sam2_levels(self, sam2_backbone_out: dict[str, Any]) -> dict[str, Any]:
        """The SAM 2 pyramid with levels 0 and 1 passed through `conv_s0` / `conv_s1` (what the
        official processor's `set_image` does once per image). Returns a new dict; the input is
        not modified.

        Args:
            sam2_backbone_out: `SAM3VLBackbone.forward_image(...)["sam2_backbone_out"]`.
        """
        fpn = list(sam2_backbone_out["backbone_fpn"])
        fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        return {**sam2_backbone_out, "backbone_fpn": fpn}

    def features(self, sam2_backbone_out: dict[str, Any]) -> dict[str, Any]:
        """Decoder inputs from a projected SAM 2 pyramid (`project_sam2_levels`).

        Returns:
            {"image_embed": Bx256x72x72 coarsest level + `no_mem_embed`, "high_res_feats":
            [Bx32x288x288, Bx64x144x144]} (the official predictor's `_features`).

        Raises:
            ValueError: the pyramid does not have the three levels of `bb_feat_sizes`.
        """
        fpn = sam2_backbone_out["backbone_fpn"]
        sizes = [tuple(f.shape[-2:]) for f in fpn]
        if sizes != self.bb_feat_sizes:
            raise ValueError(
                f"the SAM 2 pyramid has levels {sizes}; the interactive head needs "
                f"{self.bb_feat_sizes}"
            )
        image_embed = fpn[-1] + self.no_mem_embed.view(1, -1, 1, 1)
        return {"image_embed": image_embed, "high_res_feats": list(fpn[:-1])}


def build_tracker_heads(
    d_model: int = 256, image_size: int = 1008, backbone_stride: int = 14
) -> Sam3TrackerHeads:
    """The official tracker's SAM heads (`Sam3TrackerBase._build_sam_heads` with the SAM 3 video
    builder's decoder options); random weights."""
    grid = image_size // backbone_stride
    prompt_encoder = PromptEncoder(
        embed_dim=d_model,
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        transformer_dim=d_model,
        transformer=TwoWayTransformer(
            depth=2, embedding_dim=d_model, num_heads=8, mlp_dim=2048, mlp_keys="lin"
        ),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        sam2_outputs=True,
    )
    return Sam3TrackerHeads(prompt_encoder, decoder, image_size)
