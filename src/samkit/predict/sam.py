"""SamPredictor: encode an image once, then predict masks for many prompts (SAM 1)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from samkit.modeling.sam import Sam
from samkit.predict.embedding_file import EmbeddingFiles
from samkit.predict.inputs import as_rgb_uint8, validate_prompts
from samkit.predict.transforms import ResizeLongestSide, threshold_masks
from samkit.runtime.decoding import PromptDecoder

FEATURE_KEY = "image_embedding"  # the name of the image embedding in every family's features


class SamPredictor(EmbeddingFiles):
    """Interactive predictor with the official `segment_anything.SamPredictor` interface.

    Beyond the official API, `predict` takes several boxes at once (`box` of shape Nx4, with or
    without per-box points) and runs them through the decoder in one batch.
    """

    def __init__(self, sam_model: Sam) -> None:
        if not hasattr(getattr(sam_model, "image_encoder", None), "img_size"):
            family = getattr(sam_model, "family", None)
            raise ValueError(
                "SamPredictor needs a SAM 1-style model (samkit.build_sam, build_mobile_sam, "
                f"build_sam_hq), got {type(sam_model).__name__}"
                + (
                    f" of family {family!r}: use its own predictor (e.g. Sam2ImagePredictor)"
                    if family
                    else ""
                )
            )
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return tuple(self.model.prompt_encoder.mask_input_size)

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: Tensor | None = None
        self._dense_pe: Tensor | None = None  # prompt-independent: computed once per image
        # the decoder's image-side work, kept across calls on this image (no mask inputs)
        self._prompt_decoder = PromptDecoder(self.model.mask_decoder)
        self.orig_h = self.orig_w = self.input_h = self.input_w = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Compute the embedding of an image.

        Args:
            image: HxWx3 uint8 array (HxW grey and HxWx4 RGBA are converted) or a PIL image.
            image_format: channel order of an array, 'RGB' or 'BGR'.
        """
        image = as_rgb_uint8(image, image_format)
        input_image = self.transform.apply_image(image)
        input_torch = torch.from_numpy(np.array(input_image)).to(self.device)
        input_torch = input_torch.permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(input_torch, image.shape[:2])

    @torch.inference_mode()
    def set_torch_image(
        self, transformed_image: Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Compute the embedding of a 1x3xHxW image already resized so its long side is img_size."""
        img_size = self.model.image_encoder.img_size
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[0] != 1
            or transformed_image.shape[1] != 3
            or max(transformed_image.shape[2:]) != img_size
        ):
            raise ValueError(
                f"set_torch_image expects a 1x3xHxW tensor with long side {img_size}, "
                f"got {tuple(transformed_image.shape)}"
            )
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[-2]), int(transformed_image.shape[-1]))
        x = self.model.preprocess(transformed_image.to(self.device))
        self.features = self.model.image_encoder(x.to(self.model.dtype))
        self._mark_set()

    def set_embedding(
        self,
        embedding: Tensor,
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Use a precomputed 1xCxhxw image embedding (e.g. from `samkit embed`), skipping the encoder."""
        pe = self.model.prompt_encoder
        expected = (1, pe.embed_dim, *pe.image_embedding_size)
        if tuple(embedding.shape) != expected:
            raise ValueError(f"embedding must have shape {expected}, got {tuple(embedding.shape)}")
        self.reset_image()
        self.original_size = (int(original_size[0]), int(original_size[1]))
        if input_size is None:
            input_size = self.transform.get_preprocess_shape(
                *self.original_size, self.transform.target_length
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.features = embedding.to(self.device, self.model.dtype)
        self._mark_set()

    def _mark_set(self) -> None:
        self.orig_h, self.orig_w = self.original_size
        self.input_h, self.input_w = self.input_size
        self.is_image_set = True

    def _embedding_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        self._require_image()
        return self.original_size, self.input_size

    def get_image_embedding(self) -> Tensor:
        """The current image's 1xCxhxw embedding (`save_embedding(path)` writes it to a file)."""
        self._require_image()
        return self.features

    # ---------------------------------------------------- the surface every family's predictor has

    @property
    def family(self) -> str:
        """The model's family ("sam1"; `samkit.build.registry`)."""
        return self.model.family

    def get_image_features(self) -> dict[str, Tensor]:
        """The current image's encoder output by name, what an embedding file stores
        (`samkit.io.embeddings`): {"image_embedding": 1xCxhxw}.

        Raises:
            ValueError: no image is set.
        """
        return {FEATURE_KEY: self.get_image_embedding()}

    def set_image_features(
        self,
        features: dict[str, Tensor],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Take stored `get_image_features` output as if `set_image` had run (skips the encoder).

        Args:
            features: {"image_embedding": 1xCxhxw}.
            original_size: (H, W) of the image.
            input_size: (H, W) of the resized image before padding (default: from the rule).

        Raises:
            ValueError: the tensor is missing or has another shape than this model's embedding.
        """
        if FEATURE_KEY not in features:
            raise ValueError(f"SAM 1 features need {FEATURE_KEY!r}, got {sorted(features)}")
        self.set_embedding(features[FEATURE_KEY], original_size, input_size)

    @torch.inference_mode()
    def decode_low_res(
        self,
        point_coords: np.ndarray | Tensor,
        point_labels: np.ndarray | Tensor,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """The prompt encoder and mask decoder on points, without upscaling: what automatic mask
        generation runs per batch of grid points.

        Args:
            point_coords: BxNx2 (x, y) points in pixels of the set image. A numpy array is
                mapped to the model frame in float64 (as the official generator does), a tensor
                in float32.
            point_labels: BxN labels (1 foreground, 0 background).
            mask_input: Bx1xhxw low-res logits, or None.
            multimask_output: 3 masks per prompt instead of 1.

        Returns:
            BxCxhxw low-res logits and BxC IoU predictions (the decoder's dtype).

        Raises:
            ValueError: no image is set.
        """
        self._require_image()
        if isinstance(point_coords, Tensor):
            coords = self.transform.apply_coords_torch(point_coords, self.original_size)
        else:
            coords = torch.as_tensor(
                self.transform.apply_coords(np.asarray(point_coords), self.original_size)
            )
        labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
        if mask_input is not None:
            mask_input = mask_input.to(self.device)
        prompt_encoder = self.model.prompt_encoder
        sparse, dense = prompt_encoder(
            points=(coords.to(self.device), labels), boxes=None, masks=mask_input
        )
        no_mask = prompt_encoder.no_mask_embed.weight if mask_input is None else None
        low_res, iou = self._prompt_decoder(
            self.features,
            self._get_dense_pe(),
            sparse,
            dense,
            multimask_output=multimask_output,
            no_mask_embed=no_mask,
        )[:2]
        return low_res, iou

    def image_feature_bytes(self) -> int:
        """Bytes of one image's `get_image_features` (in the model's dtype): what a cache of
        encoded images holds per image (the web app sizes its cache with it)."""
        c, h, w = self.model.image_embedding_shape
        return torch.empty((), dtype=self.model.dtype).element_size() * c * h * w

    def _get_dense_pe(self) -> Tensor:
        if self._dense_pe is None:
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def _require_image(self) -> None:
        if not self.is_image_set or self.features is None:
            raise ValueError("no image is set: call set_image(...) before predicting")

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts given in original-image pixels.

        Args:
            point_coords: Nx2 (x, y) points, or BxNx2 with B boxes.
            point_labels: N (or BxN) labels: 1 foreground, 0 background (-1 padding, 2/3 corners).
            box: a box (4,) as (x0, y0, x1, y1), or Bx4 boxes decoded in one batch.
            mask_input: 1xhxw low-res logits from an earlier call (h = w = 256 for 1024 px models),
                or Bx1xhxw with B boxes.
            multimask_output: return 3 candidate masks instead of 1.
            return_logits: return logits instead of boolean masks.

        Returns:
            masks CxHxW, scores C, low-res logits Cxhxw; with B > 1 boxes a leading B axis.
        """
        self._require_image()
        coords, labels, boxes, masks_in, batched = self._validate_prompts(
            point_coords, point_labels, box, mask_input
        )
        masks, iou, low_res = self.predict_torch(
            coords, labels, boxes, masks_in, multimask_output, return_logits
        )
        if not batched:
            masks, iou, low_res = masks[0], iou[0], low_res[0]
        return (
            masks.detach().cpu().numpy(),
            iou.float().detach().cpu().numpy(),
            low_res.float().detach().cpu().numpy(),
        )

    def _validate_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_input: Any,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, bool]:
        p = validate_prompts(point_coords, point_labels, box, mask_input, self.mask_input_size)
        as_tensor = partial(torch.as_tensor, device=self.device)
        boxes = coords = labels = masks = None
        if p.boxes is not None:
            boxes = as_tensor(
                self.transform.apply_boxes(p.boxes, self.original_size), dtype=torch.float
            )
        if p.coords is not None:
            coords = as_tensor(
                self.transform.apply_coords(p.coords, self.original_size), dtype=torch.float
            )
            labels = as_tensor(p.labels, dtype=torch.int)
        if p.mask_input is not None:
            masks = as_tensor(p.mask_input, dtype=torch.float)
        return coords, labels, boxes, masks, p.batched

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predict for batched prompts already in the model input frame.

        Args:
            point_coords: BxNx2 points (transformed with `self.transform.apply_coords_torch`).
            point_labels: BxN labels.
            boxes: Bx4 boxes (transformed with `apply_boxes_torch`).
            mask_input: Bx1xhxw low-res logits.
            multimask_output: 3 masks per prompt instead of 1.
            return_logits: return logits instead of boolean masks.

        Returns:
            masks BxCxHxW (original size), IoU predictions BxC, low-res logits BxCxhxw.
        """
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        points = None
        if point_coords is not None:
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2:
                raise ValueError(f"point_coords must be BxNx2, got {tuple(point_coords.shape)}")
            if point_labels.shape != point_coords.shape[:2]:
                raise ValueError(
                    f"point_labels must be BxN = {tuple(point_coords.shape[:2])}, "
                    f"got {tuple(point_labels.shape)}"
                )
            points = (point_coords.to(self.device), point_labels.to(self.device))
        if boxes is not None and (boxes.ndim != 2 or boxes.shape[-1] != 4):
            boxes = boxes.reshape(-1, 4) if boxes.shape[-1] == 4 else boxes
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes must be Bx4, got {tuple(boxes.shape)}")
        model = self.model
        sparse, dense = model.prompt_encoder(
            points=points,
            boxes=None if boxes is None else boxes.to(self.device),
            masks=None if mask_input is None else mask_input.to(self.device),
        )
        # Decode and upsample a chunk of prompts at a time (see samkit.runtime.decoding): the
        # full-size logits of a chunk are thresholded while they are still in the cache.
        b = sparse.shape[0]
        decode = self._prompt_decoder
        chunk = decode.chunk_size(self.features, b)
        no_mask = model.prompt_encoder.no_mask_embed.weight if mask_input is None else None
        masks = None
        iou_parts, low_parts = [], []
        for i in range(0, b, chunk):
            low_res, iou = decode(
                self.features,
                self._get_dense_pe(),
                sparse[i : i + chunk],
                dense[i : i + chunk] if dense.shape[0] == b else dense,
                multimask_output,
                no_mask_embed=no_mask,
            )[:2]
            logits = model.postprocess_masks(low_res, self.input_size, self.original_size)
            if chunk >= b and return_logits:
                masks = logits
            else:
                if masks is None:
                    dtype = logits.dtype if return_logits else torch.bool
                    masks = logits.new_empty((b, *logits.shape[1:]), dtype=dtype)
                if return_logits:
                    masks[i : i + chunk] = logits
                else:
                    threshold_masks(logits, model.mask_threshold, out=masks[i : i + chunk])
            iou_parts.append(iou)
            low_parts.append(low_res)
        iou, low_res = torch.cat(iou_parts), torch.cat(low_parts)
        return masks, iou, low_res
