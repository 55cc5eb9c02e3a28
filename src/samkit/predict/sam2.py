"""Sam2ImagePredictor: encode an image once, then predict masks for many prompts (SAM 2 / 2.1)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from samkit.modeling.sam2 import Sam2
from samkit.predict.embedding_file import EmbeddingFiles
from samkit.predict.inputs import ImageNotSetError as ImageNotSetError
from samkit.predict.inputs import as_rgb_uint8, validate_prompts
from samkit.predict.postprocess import check_postprocess_settings as check_postprocess_settings
from samkit.predict.postprocess import postprocess_masks, require_scipy
from samkit.predict.sam import FEATURE_KEY
from samkit.predict.transforms import sam2_input_coords, threshold_masks
from samkit.runtime.decoding import PromptDecoder

_Prompts = tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]


class Sam2ImagePredictor(EmbeddingFiles):
    """Interactive predictor with the official `sam2.SAM2ImagePredictor` interface.

    Args:
        sam_model: a `Sam2` image model (`samkit.build_sam2`).
        mask_threshold: logit threshold for binary masks.
        max_hole_area: fill background holes up to this many low-res pixels (0 = off).
        max_sprinkle_area: remove foreground specks up to this many low-res pixels (0 = off).

    `predict` returns the official `(masks, iou_predictions, low_res_masks)`: masks CxHxW float32
    0/1 (or logits with `return_logits`), scores C, low-res logits Cx256x256 clamped to
    [-32, 32]; several boxes give a leading B axis.
    """

    def __init__(
        self,
        sam_model: Sam2,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        if not isinstance(sam_model, Sam2):
            raise ValueError(
                f"Sam2ImagePredictor needs a SAM 2 model (samkit.build_sam2), got "
                f"{type(sam_model).__name__}"
            )
        check_postprocess_settings(mask_threshold, max_hole_area, max_sprinkle_area)
        if max_hole_area > 0 or max_sprinkle_area > 0:
            require_scipy("Sam2ImagePredictor(max_hole_area / max_sprinkle_area > 0)")
        self.model = sam_model
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self._bb_feat_sizes = sam_model.bb_feat_sizes
        self.reset_predictor()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return tuple(self.model.sam_prompt_encoder.mask_input_size)

    def reset_predictor(self) -> None:
        """Forget the current image(s) and their features."""
        self._is_image_set = False
        self._features: dict[str, Any] | None = None
        self._orig_hw: list[tuple[int, int]] | None = None
        self._is_batch = False
        # the decoder's image-side work, kept across calls on this image (no mask inputs)
        self._prompt_decoder = PromptDecoder(self.model.sam_mask_decoder)

    # ----------------------------------------------------------------------------------------
    # images

    def _to_input(self, images: list[np.ndarray]) -> Tensor:
        """HxWx3 uint8 images -> Bx3xSxS normalised batch (each resized on its own)."""
        out = []
        for img in images:
            if not img.flags.writeable:  # e.g. np.asarray of a PIL image
                img = img.copy()
            x = torch.from_numpy(img).to(self.device).permute(2, 0, 1).float() / 255.0
            out.append(self.model.preprocess(x[None]))
        return torch.cat(out, dim=0)

    @torch.inference_mode()
    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Compute the features of an image.

        Args:
            image: HxWx3 uint8 array (HxW grey and HxWx4 RGBA are converted) or a PIL image.
            image_format: channel order of an array, 'RGB' or 'BGR'.
        """
        self.reset_predictor()
        img = as_rgb_uint8(image, image_format)
        self._orig_hw = [(int(img.shape[0]), int(img.shape[1]))]
        self._features = self.model.encode_image(self._to_input([img]))
        self._is_image_set = True

    @torch.inference_mode()
    def set_image_batch(
        self, image_list: list[np.ndarray | Image.Image], image_format: str = "RGB"
    ) -> None:
        """Compute the features of several images in one encoder batch (for `predict_batch`)."""
        self.reset_predictor()
        if not isinstance(image_list, (list, tuple)) or len(image_list) == 0:
            raise ValueError("set_image_batch expects a non-empty list of HxWx3 uint8 images")
        imgs = [as_rgb_uint8(im, image_format) for im in image_list]
        self._orig_hw = [(int(im.shape[0]), int(im.shape[1])) for im in imgs]
        self._features = self.model.encode_image(self._to_input(imgs))
        self._is_image_set = True
        self._is_batch = True

    def _embedding_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        self._require_image()
        if len(self._orig_hw) != 1:
            raise ValueError("an embedding file holds one image: set_image, not set_image_batch")
        return self._orig_hw[0], (self.model.image_size, self.model.image_size)

    def get_image_embedding(self) -> Tensor:
        """The current image embedding, BxCxhxw (B = 1 after `set_image`; C=256, h=w=64)."""
        self._require_image()
        return self._features["image_embed"]

    # ---------------------------------------------------- the surface every family's predictor has

    @property
    def family(self) -> str:
        """The model's family ("sam2"; `samkit.build.registry`)."""
        return self.model.family

    def get_image_features(self) -> dict[str, Tensor]:
        """The image's encoder output as an embedding file stores it: {"image_embedding":
        1xCxhxw (with `no_mem_embed`), "high_res_feats_0": 1x(C/8)x4hx4w, "high_res_feats_1":
        1x(C/4)x2hx2w} (no high-res entries without high-res features). ValueError: no image."""
        self._require_image()
        feats = self._features
        out = {FEATURE_KEY: feats["image_embed"]}
        for i, t in enumerate(feats["high_res_feats"]):
            out[f"high_res_feats_{i}"] = t
        return out

    def set_image_features(
        self,
        features: dict[str, Tensor],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Take `get_image_features` output of an (H, W) = `original_size` image as if
        `set_image` had run (`input_size` is unused: SAM 2 resizes to the square `image_size`).
        ValueError: a tensor of this model's features is missing."""
        high = [f"high_res_feats_{i}" for i in range(len(self._bb_feat_sizes) - 1)]
        missing = {FEATURE_KEY, *high} - set(features)
        if missing:
            raise ValueError(f"SAM 2 features need {sorted(missing)}")
        device = self.device
        self.reset_predictor()
        self._features = {
            "image_embed": features[FEATURE_KEY].to(device),
            "high_res_feats": [features[k].to(device) for k in high],
        }
        self._orig_hw = [(int(original_size[0]), int(original_size[1]))]
        self._is_image_set = True

    @torch.inference_mode()
    def decode_low_res(
        self,
        point_coords: np.ndarray | Tensor,
        point_labels: np.ndarray | Tensor,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Prompt encoder and mask decoder without upscaling (automatic mask generation's step).

        `point_coords` BxNx2 (x, y) pixels of the `set_image` image (float32, divided by its size
        and scaled to the model input, as the official generator does), `point_labels` BxN,
        `mask_input` Bx1xhxw logits or None. Returns raw BxCxhxw low-res logits (not clamped, no
        hole filling) and BxC IoU predictions. ValueError: no image is set.
        """
        self._require_image()
        coords = torch.as_tensor(point_coords, dtype=torch.float, device=self.device)
        coords = self._transform_coords(coords, True, self._orig_hw[0])
        labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
        return self._decode_low_res(mask_input, coords, labels, None, multimask_output, 0)

    def image_feature_bytes(self) -> int:
        """Bytes of one image's `get_image_features` (decoder dtype; the web app's cache unit)."""
        elt = torch.empty((), dtype=self.model.dtype).element_size()
        d = self.model.sam_mask_decoder.transformer_dim
        sizes = self._bb_feat_sizes  # finest first; the last is the image embedding's
        channels = [*[d // 8, d // 4][: len(sizes) - 1], d]
        return elt * sum(c * h * w for c, (h, w) in zip(channels, sizes))

    def _require_image(self) -> None:
        if not self._is_image_set or self._features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before predicting")

    # ----------------------------------------------------------------------------------------
    # prompts

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image.

        Args:
            point_coords: Nx2 (x, y) points in pixels (in [0, 1] with `normalize_coords=False`),
                or BxNx2 with B boxes.
            point_labels: N (or BxN) labels: 1 foreground, 0 background (-1 padding, 2/3 corners).
            box: (4,) box (x0, y0, x1, y1), or Bx4 boxes predicted in one batch.
            mask_input: 1x256x256 low-res logits from an earlier call (or Bx1x256x256).
            multimask_output: three candidate masks instead of one.
            return_logits: logits instead of 0/1 masks.
            normalize_coords: coordinates are pixels of the original image (True) or already
                normalised to [0, 1] (False).

        Returns:
            masks CxHxW, IoU predictions C, low-res logits Cx256x256 (float32; leading B axis
            for several boxes).
        """
        self._require_image()
        if len(self._orig_hw) != 1:
            raise ValueError(
                f"{len(self._orig_hw)} images are set (set_image_batch): use predict_batch"
            )
        prompts = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords, img_idx=0
        )
        masks, iou, low_res = self._predict(
            *prompts, multimask_output=multimask_output, return_logits=return_logits, img_idx=0
        )
        return _numpy(masks), _numpy(iou), _numpy(low_res)

    def predict_batch(
        self,
        point_coords_batch: list[Any] | None = None,
        point_labels_batch: list[Any] | None = None,
        box_batch: list[Any] | None = None,
        mask_input_batch: list[Any] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """`predict` for each image of `set_image_batch`; each argument is a per-image list."""
        if not self._is_batch or self._features is None:
            raise ImageNotSetError("predict_batch needs images set with set_image_batch(...)")
        n = len(self._orig_hw)
        args = {
            "point_coords_batch": point_coords_batch,
            "point_labels_batch": point_labels_batch,
            "box_batch": box_batch,
            "mask_input_batch": mask_input_batch,
        }
        for name, value in args.items():
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) != n):
                raise ValueError(f"{name} must be a list with one entry per image ({n})")
        out_masks, out_iou, out_low = [], [], []
        for i in range(n):
            pick = [None if v is None else v[i] for v in args.values()]
            prompts = self._prep_prompts(*pick, normalize_coords, img_idx=i)
            masks, iou, low_res = self._predict(
                *prompts, multimask_output=multimask_output, return_logits=return_logits, img_idx=i
            )
            out_masks.append(_numpy(masks))
            out_iou.append(_numpy(iou))
            out_low.append(_numpy(low_res))
        return out_masks, out_iou, out_low

    def _prep_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_logits: Any,
        normalize_coords: bool = True,
        img_idx: int = -1,
    ) -> _Prompts:
        """Validate prompts and map them to the model input frame.

        Returns:
            (mask_input Bx1xhxw, coords BxNx2, labels BxN, box Bx2x2), each None when absent,
            as float32 / int32 tensors (the official `_prep_prompts` output).
        """
        p = validate_prompts(point_coords, point_labels, box, mask_logits, self.mask_input_size)
        orig_hw = self._orig_hw[img_idx]
        as_tensor = partial(torch.as_tensor, device=self.device)
        mask_t = coords_t = labels_t = box_t = None
        if p.boxes is not None:
            box_t = as_tensor(p.boxes, dtype=torch.float).reshape(-1, 2, 2)
            box_t = self._transform_coords(box_t, normalize_coords, orig_hw)
        if p.coords is not None:
            coords_t = as_tensor(p.coords, dtype=torch.float)
            coords_t = self._transform_coords(coords_t, normalize_coords, orig_hw)
            labels_t = as_tensor(p.labels, dtype=torch.int)
        if p.mask_input is not None:
            mask_t = as_tensor(p.mask_input, dtype=torch.float)
        return mask_t, coords_t, labels_t, box_t

    def _transform_coords(
        self, coords: Tensor, normalize: bool, orig_hw: tuple[int, int]
    ) -> Tensor:
        """...x2 (x, y) -> model input frame (`sam2_input_coords`)."""
        return sam2_input_coords(coords, orig_hw, self.model.image_size, normalize)

    @torch.inference_mode()
    def _predict(
        self,
        mask_input: Tensor | None,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the decoder on prompts already in the input frame (see `_prep_prompts`).

        Returns:
            masks BxCxHxW (original size; float32 0/1, or logits with `return_logits`), IoU
            predictions BxC, low-res logits BxCxhxw clamped to [-32, 32].
        """
        low_res, iou = self._decode_low_res(
            mask_input, point_coords, point_labels, boxes, multimask_output, img_idx
        )
        masks = postprocess_masks(
            low_res,
            self._orig_hw[img_idx],
            self.mask_threshold,
            self.max_hole_area,
            self.max_sprinkle_area,
        )
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            masks = threshold_masks(masks.float(), self.mask_threshold, dtype=torch.float32)
        return masks, iou, low_res

    def _decode_low_res(
        self,
        mask_input: Tensor | None,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None,
        multimask_output: bool,
        img_idx: int,
    ) -> tuple[Tensor, Tensor]:
        """The decoder on prompts in the input frame: raw BxCxhxw low-res logits (not clamped,
        no hole filling) and BxC IoU predictions (`decode_low_res` is the public form)."""
        self._require_image()
        points = None if point_coords is None else (point_coords, point_labels)
        if boxes is not None:
            box_coords = boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device)
            box_labels = box_labels.repeat(box_coords.shape[0], 1)
            if points is not None:  # box corners go first, as in the official predictor
                points = (
                    torch.cat([box_coords, points[0]], dim=1),
                    torch.cat([box_labels, points[1]], dim=1),
                )
            else:
                points = (box_coords, box_labels)
        model = self.model
        sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        feats = self._features
        high_res = [f[img_idx].unsqueeze(0) for f in feats["high_res_feats"]]
        image_embed = feats["image_embed"][img_idx].unsqueeze(0)
        # The decoder's image-side work is kept across calls on this image without mask inputs.
        no_mask = model.sam_prompt_encoder.no_mask_embed.weight if mask_input is None else None
        low_res, iou, _, _ = self._prompt_decoder(
            image_embed,
            model.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            multimask_output,
            repeat_image=sparse.shape[0] > 1,
            high_res_features=high_res or None,
            no_mask_embed=no_mask,
        )
        return low_res, iou


def _numpy(x: Tensor) -> np.ndarray:
    """Official output conversion: drop a leading batch axis of 1, float32 numpy."""
    return x.squeeze(0).float().detach().cpu().numpy()
