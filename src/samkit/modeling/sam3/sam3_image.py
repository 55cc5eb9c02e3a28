"""The assembled SAM 3 image detector (`Sam3Image`): prompts -> every matching instance.

Data flow of one grounding pass (the official `Sam3Image.forward_grounding`):
prompt tokens = [text features (32), geometry-encoder tokens] -> fusion encoder over the coarsest
image level (72x72 at 1008 px) -> DETR decoder (queries, boxes, presence) -> dot-product scores ->
segmentation head (masks at the finest level, 288x288, and semantic logits).

Everything is batch-first and stateless: `forward_grounding` takes tensors (image features, text
features, an optional `GeometricPrompt`) and returns a `GroundingOutput`; nothing is cached.
Several prompts (concepts) on the same image are one batch with `img_ids` pointing at the image.

Attribute names (`backbone`, `geometry_encoder`, `transformer.encoder`, `transformer.decoder`,
`segmentation_head`, `dot_prod_scoring`) are the official ones, so the official checkpoint's
`detector.<key>` entries load 1:1 after the prefix is stripped; the SAM-style interactive heads
are `tracker` (the checkpoint's `tracker.<key>` entries). Reference: `sam3/model/sam3_image.py`
(official `sam3` 0.1.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from samkit.modeling.sam3.decoder import TransformerDecoder
from samkit.modeling.sam3.encoder import TransformerEncoderFusion
from samkit.modeling.sam3.geometry_encoder import SequenceGeometryEncoder, box_cxcywh_to_xyxy
from samkit.modeling.sam3.scoring import DotProductScoring
from samkit.modeling.sam3.segmentation_head import UniversalSegmentationHead


@dataclass
class GeometricPrompt:
    """Box (exemplar) and point prompts of a batch of B prompts, batch-first.

    Attributes:
        boxes: (B, N, 4) normalised cx, cy, w, h (N may be 0).
        box_labels: (B, N) bool, True = positive exemplar.
        box_mask: (B, N) bool, True = padding (prompts with fewer boxes pad on the right).
        points: (B, M, 2) normalised x, y, or None; point_labels / point_mask as for boxes.
    """

    boxes: Tensor
    box_labels: Tensor
    box_mask: Tensor
    points: Tensor | None = None
    point_labels: Tensor | None = None
    point_mask: Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes.dim() != 3 or self.boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, N, 4) cx, cy, w, h; got {tuple(self.boxes.shape)}")
        for name in ("box_labels", "box_mask"):
            if tuple(getattr(self, name).shape) != tuple(self.boxes.shape[:2]):
                raise ValueError(
                    f"{name} must be (B, N) = {tuple(self.boxes.shape[:2])}; got "
                    f"{tuple(getattr(self, name).shape)}"
                )
        if self.points is not None:
            if self.points.dim() != 3 or self.points.shape[-1] != 2:
                raise ValueError(f"points must be (B, M, 2) x, y; got {tuple(self.points.shape)}")
            for name in ("point_labels", "point_mask"):
                t = getattr(self, name)
                if t is None or tuple(t.shape) != tuple(self.points.shape[:2]):
                    raise ValueError(f"{name} must be (B, M) = {tuple(self.points.shape[:2])}")

    @classmethod
    def empty(cls, batch: int = 1, device: torch.device | str = "cpu") -> GeometricPrompt:
        """No boxes and no points (the official dummy prompt of a text-only query)."""
        return cls(
            boxes=torch.zeros(batch, 0, 4, device=device),
            box_labels=torch.zeros(batch, 0, dtype=torch.bool, device=device),
            box_mask=torch.zeros(batch, 0, dtype=torch.bool, device=device),
        )

    @property
    def batch_size(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_boxes(self) -> int:
        return self.boxes.shape[1]

    def with_boxes(self, boxes: Tensor, labels: Tensor) -> GeometricPrompt:
        """A new prompt with (B, k, 4) `boxes` / (B, k) bool `labels` appended (no padding)."""
        mask = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
        return GeometricPrompt(
            boxes=torch.cat([self.boxes, boxes.to(self.boxes)], dim=1),
            box_labels=torch.cat([self.box_labels, labels.to(torch.bool)], dim=1),
            box_mask=torch.cat([self.box_mask, mask], dim=1),
            points=self.points,
            point_labels=self.point_labels,
            point_mask=self.point_mask,
        )

    def expand(self, batch: int) -> GeometricPrompt:
        """The same (batch-1) prompt repeated for `batch` prompts."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot expand a prompt of batch {self.batch_size} to {batch}")

        def rep(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.expand(batch, *t.shape[1:])

        return GeometricPrompt(
            *(rep(getattr(self, f.name)) for f in fields(self))  # type: ignore[arg-type]
        )


@dataclass
class GroundingOutput:
    """Per-query outputs of one grounding pass (official key names; index it like the official
    dict: `out["pred_logits"]`).

    Attributes:
        pred_logits: (B, Q, 1) class logits of the last decoder layer.
        presence_logit_dec: (B, 1) presence logit.
        pred_boxes: (B, Q, 4) normalised cx, cy, w, h.
        pred_boxes_xyxy: (B, Q, 4) normalised x0, y0, x1, y1.
        pred_masks: (B, Q, H0, W0) mask logits at the finest level (288x288 at 1008 px), or
            None without a segmentation head.
        semantic_seg: (B, 1, H0, W0) semantic logits, or None.
        queries: (B, Q, C) last-layer query features.
        encoder_hidden_states: (B, HW, C) fusion-encoder memory (the official is (HW, B, C)).
        prompt: (B, P, C) prompt tokens; prompt_mask: (B, P) bool, True = padding.
    """

    pred_logits: Tensor
    presence_logit_dec: Tensor
    pred_boxes: Tensor
    pred_boxes_xyxy: Tensor
    pred_masks: Tensor | None
    semantic_seg: Tensor | None
    queries: Tensor
    encoder_hidden_states: Tensor
    prompt: Tensor
    prompt_mask: Tensor

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    @property
    def scores(self) -> Tensor:
        """(B, Q) probabilities: sigmoid(pred_logits) * sigmoid(presence_logit_dec) (official)."""
        return self.pred_logits[..., 0].sigmoid() * self.presence_logit_dec.sigmoid()


class Sam3Transformer(nn.Module):
    """Holds the fusion encoder and the decoder (official keys `transformer.encoder/decoder`)."""

    def __init__(self, encoder: TransformerEncoderFusion, decoder: TransformerDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


class Sam3Image(nn.Module):
    """SAM 3 image model (detector + optional interactive heads).

    Args:
        backbone: the vision-language backbone (`forward_image(images)` and
            `forward_tokens(token_ids)` returning the official dicts), or None for a heads-only
            model that is given features directly.
        geometry_encoder, transformer, segmentation_head, dot_prod_scoring: the detector heads
            (`segmentation_head` may be None: no masks).
        tracker: the SAM-style interactive heads, or None. Clicks and boxes on them are
            `Sam3Processor.predict_inst` (`samkit.predict`; the official model has the method).

    Like every samkit model it says what it is (`samkit.build.registry`): `family` ("sam3"),
    `image_size`, `variant`, `image_embedding_shape` (the last three need the backbone).
    """

    family: str = "sam3"

    def __init__(
        self,
        backbone: nn.Module | None,
        geometry_encoder: SequenceGeometryEncoder,
        transformer: Sam3Transformer,
        segmentation_head: UniversalSegmentationHead | None,
        dot_prod_scoring: DotProductScoring,
        tracker: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.geometry_encoder = geometry_encoder
        self.transformer = transformer
        self.segmentation_head = segmentation_head
        self.dot_prod_scoring = dot_prod_scoring
        self.tracker = tracker

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.decoder.norm.weight.dtype

    @property
    def image_size(self) -> int:
        """The square input side in pixels (1008 for the official model)."""
        return int(self.backbone.vision_backbone.trunk.img_size)

    @property
    def variant(self) -> str:
        """`sam3` for the official architecture, else e.g. `SAM 3 ViT 64 wide x 2 blocks`."""
        trunk = self.backbone.vision_backbone.trunk
        width, depth = int(trunk.embed_dim), len(trunk.blocks)
        if (width, depth, self.image_size) == (1024, 32, 1008):
            return "sam3"
        return f"SAM 3 ViT {width} wide x {depth} blocks"

    @property
    def image_embedding_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of the detector's coarsest level (256x72x72 for the official model)."""
        vb = self.backbone.vision_backbone
        grid = self.image_size // int(vb.trunk.patch_size)
        return int(vb.convs[2][-1].out_channels), grid, grid

    def image_side_terms(self, backbone_fpn: Sequence[Tensor]) -> list[Tensor] | None:
        """The prompt-independent part of the segmentation head for these images (the pixel
        decoder's convolutions of the finer backbone levels), to pass to `forward_grounding`
        as `pixel_terms` when several passes run on the same images; None without masks.

        Args:
            backbone_fpn: the detector levels, finest first, each (B_img, C, Hi, Wi).
        """
        if self.segmentation_head is None:
            return None
        return self.segmentation_head.pixel_decoder.image_terms(list(backbone_fpn)[:-1])

    def forward_grounding(
        self,
        backbone_fpn: Sequence[Tensor],
        vision_pos_enc: Tensor,
        text_features: Tensor,
        text_mask: Tensor,
        geometric_prompt: GeometricPrompt | None = None,
        img_ids: Tensor | None = None,
        pixel_terms: Sequence[Tensor] | None = None,
    ) -> GroundingOutput:
        """One grounding pass for B prompts.

        Args:
            backbone_fpn: the detector levels of the images, finest first, each
                (B_img, C, Hi, Wi) (288, 144, 72 at 1008 px).
            vision_pos_enc: (B_img, C, H, W) position encoding of the coarsest level.
            text_features: (B, P, C) text tokens per prompt (batch-first).
            text_mask: (B, P) bool, True = padding.
            geometric_prompt: boxes / points per prompt (batch B or 1), or None (text only).
            img_ids: (B,) long, the image of each prompt; default `arange(B)` (B_img == B), or
                all zeros when there is one image.
            pixel_terms: `image_side_terms(backbone_fpn)` of the same images, when a caller
                computed them once for several passes (the processor does); they only save work.

        Returns:
            A `GroundingOutput` with B rows.

        Raises:
            ValueError: inconsistent shapes or image ids.
        """
        feats = list(backbone_fpn)
        if not feats or any(f.dim() != 4 for f in feats):
            raise ValueError("backbone_fpn must be a non-empty list of (B, C, H, W) tensors")
        if text_features.dim() != 3 or text_mask.shape != text_features.shape[:2]:
            raise ValueError(
                f"text_features must be (B, P, C) and text_mask (B, P); got "
                f"{tuple(text_features.shape)} and {tuple(text_mask.shape)}"
            )
        b = text_features.shape[0]
        if b == 0:
            raise ValueError("forward_grounding needs at least one prompt (text_features has B=0)")
        n_img = feats[0].shape[0]
        if img_ids is None:
            if n_img not in (1, b):
                raise ValueError(f"{b} prompts for {n_img} images: pass img_ids")
            img_ids = torch.arange(b) if n_img == b else torch.zeros(b, dtype=torch.long)
        img_ids = torch.as_tensor(img_ids, dtype=torch.long).reshape(-1)
        if img_ids.numel() != b or (img_ids < 0).any() or (img_ids >= n_img).any():
            raise ValueError(f"img_ids must be {b} indices in [0, {n_img}), got {img_ids.tolist()}")
        img_ids = img_ids.to(feats[0].device)
        terms = list(pixel_terms) if pixel_terms is not None else None
        if bool((img_ids == img_ids[0]).all()):
            # one image for every prompt (several concepts): views, no copies of the pyramid,
            # and the image-only part of the pixel decoder once for all of them
            i = int(img_ids[0])
            if terms is not None:
                terms = [t[i : i + 1] for t in terms]
            elif b > 1:
                terms = self.image_side_terms([f[i : i + 1] for f in feats])
            feats = [f[i : i + 1].expand(b, -1, -1, -1) for f in feats]
            vision_pos_enc = vision_pos_enc[i : i + 1].expand(b, -1, -1, -1)
        elif not (n_img == b and torch.equal(img_ids, torch.arange(b, device=img_ids.device))):
            feats = [f[img_ids] for f in feats]
            vision_pos_enc = vision_pos_enc[img_ids]
            terms = [t[img_ids] for t in terms] if terms is not None else None
        if geometric_prompt is None:
            geometric_prompt = GeometricPrompt.empty(b, device=text_features.device)
        geometric_prompt = geometric_prompt.expand(b)

        h, w = feats[-1].shape[-2:]
        img_tokens = feats[-1].flatten(2).transpose(1, 2)  # (B, HW, C)
        img_pos = vision_pos_enc.flatten(2).transpose(1, 2).to(img_tokens.dtype)
        gp = geometric_prompt
        geo, geo_mask = self.geometry_encoder(
            img_tokens,
            img_pos,
            (h, w),
            gp.boxes,
            gp.box_labels,
            gp.box_mask,
            gp.points,
            gp.point_labels,
            gp.point_mask,
        )
        prompt = torch.cat([text_features.to(geo.dtype), geo], dim=1)
        prompt_mask = torch.cat([text_mask.to(torch.bool), geo_mask], dim=1)

        memory = self.transformer.encoder(img_tokens, img_pos, prompt, prompt_mask)
        dec = self.transformer.decoder(memory, img_pos, (h, w), prompt, prompt_mask)
        queries = dec.hs[-1]
        logits = self.dot_prod_scoring(queries, prompt, prompt_mask)
        if dec.presence_logits is None:
            raise ValueError("this decoder has no presence token; SAM 3 image models need one")
        masks = semantic = None
        if self.segmentation_head is not None:
            masks, semantic = self.segmentation_head(
                feats, queries, memory, prompt, prompt_mask, image_terms=terms
            )
        return GroundingOutput(
            pred_logits=logits,
            presence_logit_dec=dec.presence_logits[-1],
            pred_boxes=dec.boxes,
            pred_boxes_xyxy=box_cxcywh_to_xyxy(dec.boxes),
            pred_masks=masks,
            semantic_seg=semantic,
            queries=queries,
            encoder_hidden_states=memory,
            prompt=prompt,
            prompt_mask=prompt_mask,
        )

    def forward(
        self,
        images: Tensor,
        token_ids: Tensor,
        geometric_prompt: GeometricPrompt | None = None,
        img_ids: Tensor | None = None,
    ) -> GroundingOutput:
        """Backbone + grounding in one call (no caching; the processor caches).

        Args:
            images: (B_img, 3, R, R) normalised images (R = 1008 for the official model).
            token_ids: (B, 32) long token ids, one row per prompt.
            geometric_prompt, img_ids: as `forward_grounding`.
        """
        if self.backbone is None:
            raise ValueError("this Sam3Image has no backbone: call forward_grounding with features")
        vis = self.backbone.forward_image(images)
        txt = self.backbone.forward_tokens(token_ids)
        return self.forward_grounding(
            vis["backbone_fpn"],
            vis["vision_pos_enc"][-1],
            txt["language_features"].transpose(0, 1),
            txt["language_mask"],
            geometric_prompt,
            img_ids,
        )
