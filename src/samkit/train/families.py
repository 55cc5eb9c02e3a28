"""The seam between the fine-tuning / evaluation code and a model family (SAM 1 or SAM 2).

The training loop and the evaluation protocol are written once; what differs between the families
goes through a `FamilyOps`:

* the input frame: SAM 1 resizes the longest side to the encoder size and pads the bottom / right
  (`prepare_sample`); SAM 2 resizes to the square `image_size` without keeping the aspect ratio,
  as `Sam2ImagePredictor` does (no padding, so every pixel of the frame is valid);
* the encoder outputs: SAM 1 an image embedding; SAM 2 the image embedding (with `no_mem_embed`)
  plus the two high-resolution feature levels the decoder fuses;
* prompts: SAM 2 gives boxes to the prompt encoder as two corner points (labels 2, 3) placed
  before the clicks, as the official predictor does; SAM 1 uses the box input;
* outputs: SAM 2's decoder also returns object-score logits (trained by `sam_loss`);
* upscaling to the original image: SAM 1 crops the padding (`Sam.postprocess_masks`), SAM 2
  resizes the low-res logits directly; SAM 2's low-res logits are clamped to [-32, 32] before
  they are fed back as a mask prompt, as `Sam2ImagePredictor` returns them.

Shapes: S is the encoder input side, low-res masks are (S/4)x(S/4) in both families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.build.family import checkpoint_family
from samkit.build.registry import DEFAULT_FAMILY, family_of, is_config_path, spec_family
from samkit.configs.sam import load_config_json
from samkit.predict.postprocess import postprocess_masks
from samkit.predict.transforms import apply_coords, sam2_input_coords
from samkit.train.datasets import PreparedSample, Sample, prepare_sample


@dataclass
class Features:
    """Image-encoder outputs of a batch of B images.

    Attributes:
        embed: BxCx(S/16)x(S/16) image embeddings.
        high_res: SAM 2's [Bx(C/8)x(S/4)x(S/4), Bx(C/4)x(S/8)x(S/8)] features, else None.
    """

    embed: Tensor
    high_res: list[Tensor] | None = None


class FamilyOps:
    """Family-specific steps of fine-tuning and evaluation (see the module docstring); SAM 1's.

    A family's registry entry (`samkit.build.registry`, slot `trainer`) names its ops class.

    Attributes:
        mask_threshold: logit threshold of the binary masks.
        iou_l1: the family's recipe regresses the IoU with L1 (SAM 2) instead of MSE (SAM 1).
    """

    mask_threshold = 0.0
    iou_l1 = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @property
    def family(self) -> str:
        """The model's family (`samkit.build.registry`)."""
        return self.model.family

    @property
    def img_size(self) -> int:
        return int(self.model.image_size)

    @property
    def image_encoder(self) -> nn.Module:
        return self.model.image_encoder

    @property
    def has_object_scores(self) -> bool:
        return False

    def prepare(self, sample: Sample) -> PreparedSample:
        """The sample in the model's input frame (image not normalised yet)."""
        return prepare_sample(sample, self.img_size)

    def encode(self, preps: list[PreparedSample]) -> Features:
        """Normalise and encode prepared images (keeps gradients when enabled)."""
        m = self.model
        images = torch.stack([m.preprocess(x.image.to(m.device)) for x in preps])
        return Features(m.image_encoder(images.to(m.dtype)))

    def decode(
        self,
        feats: Features,
        index: Tensor | None,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Prompt encoder + mask decoder.

        Args:
            feats: features of the images.
            index: B image index per prompt, or None when `feats` holds one image for all.
            points: (BxNx2 coordinates in the input frame, BxN labels) or None.
            boxes: Bx4 boxes (x0, y0, x1, y1) in the input frame, or None.
            mask_input: Bx1x(S/4)x(S/4) low-res logits or None.
            multimask: three masks per prompt instead of one.

        Returns:
            BxMx(S/4)x(S/4) mask logits, BxM predicted IoU, Bx1 object-score logits (SAM 2) or
            None (SAM 1).
        """
        m = self.model
        sparse, dense = m.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        pe = m.prompt_encoder.get_dense_pe()
        if index is None:
            low, iou = m.mask_decoder(feats.embed, pe, sparse, dense, multimask)
        else:
            low, iou = m.mask_decoder(
                feats.embed[index], pe, sparse, dense, multimask, repeat_image=False
            )
        return low, iou, None

    def to_input_frame(self, coords: np.ndarray, prep: PreparedSample) -> Tensor:
        """...x2 (x, y) pixel coordinates of the original image -> float32 input-frame tensor."""
        c = apply_coords(coords, prep.original_size, self.img_size)
        return torch.as_tensor(c, dtype=torch.float32, device=self.model.device)

    def upscale(self, low: Tensor, prep: PreparedSample) -> Tensor:
        """BxMx(S/4)x(S/4) logits -> BxMxHxW logits at the original image size."""
        return self.model.postprocess_masks(low, prep.input_size, prep.original_size)

    def as_mask_input(self, low: Tensor) -> Tensor:
        """Low-res logits as the next round's mask prompt."""
        return low


class Sam2Ops(FamilyOps):
    """SAM 2 / 2.1 image models (`samkit.build_sam2`)."""

    iou_l1 = True

    @property
    def has_object_scores(self) -> bool:
        return bool(self.model.sam_mask_decoder.pred_obj_scores)

    def prepare(self, sample: Sample) -> PreparedSample:
        h, w = sample.image.shape[:2]
        s = self.img_size
        # Sam2ImagePredictor: uint8 -> [0, 1] float, bilinear + antialias to SxS (Sam2.preprocess
        # skips the resize of an image that already has this size, so the values are the same).
        img = torch.tensor(sample.image).permute(2, 0, 1).float()  # a copy: inputs may be read-only
        img = img[None] / 255.0
        m = torch.tensor(sample.masks).float()[:, None]
        if (h, w) != (s, s):
            img = F.interpolate(img, (s, s), mode="bilinear", align_corners=False, antialias=True)
            m = F.interpolate(m, (s, s), mode="bilinear", align_corners=False, antialias=True)
        return PreparedSample(sample.name, img[0], m[:, 0] >= 0.5, (h, w), (s, s))

    def encode(self, preps: list[PreparedSample]) -> Features:
        m = self.model
        images = torch.cat([m.preprocess(x.image[None].to(m.device)) for x in preps])
        out = m.encode_image(images)
        return Features(out["image_embed"], out["high_res_feats"] or None)

    def decode(
        self,
        feats: Features,
        index: Tensor | None,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        m = self.model
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device)
            corner_labels = corner_labels.expand(corners.shape[0], 2)
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (
                    torch.cat([corners, points[0]], dim=1),
                    torch.cat([corner_labels, points[1].to(torch.int)], dim=1),
                )
        sparse, dense = m.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        pe = m.sam_prompt_encoder.get_dense_pe()
        embed, high = feats.embed, feats.high_res
        if index is not None:
            embed = embed[index]
            high = None if high is None else [f[index] for f in high]
        low, iou, _tokens, obj = m.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=index is None and sparse.shape[0] > 1,
            high_res_features=high,
        )
        return low, iou, obj if self.has_object_scores else None

    def to_input_frame(self, coords: np.ndarray, prep: PreparedSample) -> Tensor:
        c = torch.as_tensor(coords, dtype=torch.float, device=self.model.device)
        return sam2_input_coords(c, prep.original_size, self.img_size)

    def upscale(self, low: Tensor, prep: PreparedSample) -> Tensor:
        return postprocess_masks(low, prep.original_size, self.mask_threshold, 0.0, 0.0)

    def as_mask_input(self, low: Tensor) -> Tensor:
        return torch.clamp(low, -32.0, 32.0)


def family_ops(model: Any) -> FamilyOps:
    """The `FamilyOps` of a model: its family's registry `trainer` (`Sam2Ops` for SAM 2, the
    SAM 1 `FamilyOps` for SAM 1).

    Raises:
        ValueError: not a samkit model, or its family has no fine-tuning.
    """
    return family_of(model).load("trainer")(model)


def model_family(model: str | None, checkpoint: str | None = None) -> str:
    """The family of a command line's --model (variant name, family name or config.json) and,
    when --model is absent, of the checkpoint's tensor names (`samkit.build.registry`).

    Raises:
        ValueError: neither is given, an unknown variant, or a config that is not a JSON object.
    """
    if model is not None:
        if is_config_path(model) and not isinstance(load_config_json(model), dict):
            raise ValueError(f"{model}: expected a JSON object (a model config)")
        return spec_family(model)
    if checkpoint is None:
        raise ValueError("give a model (variant name or config.json) or a checkpoint")
    return checkpoint_family(checkpoint) or DEFAULT_FAMILY
