"""SamPredictor: encode an image once, then predict masks for many prompts (SAM 1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from samkit.modeling.sam import Sam
from samkit.transforms import ResizeLongestSide

VALID_LABELS = (-1, 0, 1, 2, 3)


def as_rgb_uint8(image: Any, image_format: str = "RGB") -> np.ndarray:
    """Convert a PIL image or an HxW / HxWx{1,3,4} uint8 array to an HxWx3 uint8 RGB array."""
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
        image_format = "RGB"
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"expected an HxWx3 uint8 numpy array or a PIL image, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (0-255), got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape HxW or HxWx{{1,3,4}}, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {image.shape})")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _finite_array(name: str, value: Any, dtype: type = np.float64) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, got {value!r:.80}") from e
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: np.ndarray) -> None:
    bad = ~np.isin(labels, VALID_LABELS)
    if bad.any():
        raise ValueError(
            f"point_labels must be in {{-1, 0, 1, 2, 3}} (1 foreground, 0 background, -1 padding, "
            f"2/3 box corners); got {sorted(set(labels[bad].tolist()))}"
        )


def check_boxes(boxes: np.ndarray) -> None:
    if (boxes[..., 2] < boxes[..., 0]).any() or (boxes[..., 3] < boxes[..., 1]).any():
        raise ValueError("boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")


class SamPredictor:
    """Interactive predictor with the official `segment_anything.SamPredictor` interface.

    Beyond the official API, `predict` takes several boxes at once (`box` of shape Nx4, with or
    without per-box points) and runs them through the decoder in one batch.
    """

    def __init__(self, sam_model: Sam) -> None:
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

    def get_image_embedding(self) -> Tensor:
        """The current image's 1xCxhxw embedding."""
        self._require_image()
        return self.features

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
        if point_coords is None and point_labels is not None:
            raise ValueError("point_labels were given without point_coords")
        if point_coords is not None and point_labels is None:
            raise ValueError("point_coords need point_labels (1 foreground, 0 background)")
        if point_coords is None and box is None and mask_input is None:
            raise ValueError("no prompt: give point_coords + point_labels, a box, or a mask_input")

        n_boxes, batched = 1, False
        boxes_t = None
        if box is not None:
            b = _finite_array("box", box)
            if b.ndim == 1:
                b = b[None]
            if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
                raise ValueError(f"box must have shape (4,) or (B, 4), got {np.shape(box)}")
            check_boxes(b)
            n_boxes, batched = b.shape[0], b.shape[0] > 1
            b = self.transform.apply_boxes(b, self.original_size)
            boxes_t = torch.as_tensor(b, dtype=torch.float, device=self.device)

        coords_t = labels_t = None
        if point_coords is not None:
            c = _finite_array("point_coords", point_coords)
            lab = np.asarray(point_labels)
            if lab.dtype.kind not in "iuf" or not np.isfinite(lab).all():
                raise ValueError(f"point_labels must be integers, got dtype {lab.dtype}")
            if lab.dtype.kind == "f" and not np.equal(np.round(lab), lab).all():
                raise ValueError("point_labels must be whole numbers")
            lab = lab.astype(np.int64)
            if c.ndim == 2:
                c, lab = c[None], lab[None] if lab.ndim == 1 else lab
            if c.ndim != 3 or c.shape[-1] != 2 or c.shape[1] == 0:
                raise ValueError(
                    f"point_coords must have shape (N, 2) (or (B, N, 2) with B boxes), "
                    f"got {np.shape(point_coords)}"
                )
            if lab.shape != c.shape[:2]:
                raise ValueError(
                    f"point_labels shape {np.shape(point_labels)} does not match point_coords "
                    f"shape {np.shape(point_coords)}: one label per point"
                )
            check_labels(lab)
            if c.shape[0] == 1 and n_boxes > 1:
                c, lab = np.repeat(c, n_boxes, 0), np.repeat(lab, n_boxes, 0)
            if c.shape[0] != n_boxes:
                raise ValueError(f"{c.shape[0]} point sets for {n_boxes} boxes")
            c = self.transform.apply_coords(c, self.original_size)
            coords_t = torch.as_tensor(c, dtype=torch.float, device=self.device)
            labels_t = torch.as_tensor(lab, dtype=torch.int, device=self.device)

        masks_t = None
        if mask_input is not None:
            m = _finite_array("mask_input", mask_input, np.float32)
            h, w = self.mask_input_size
            if m.shape == (1, h, w):
                m = np.repeat(m[None], n_boxes, 0)
            if m.shape != (n_boxes, 1, h, w):
                raise ValueError(
                    f"mask_input must have shape (1, {h}, {w}) (low-res logits of an earlier "
                    f"predict) or ({n_boxes}, 1, {h}, {w}); got {m.shape}"
                )
            masks_t = torch.as_tensor(m, dtype=torch.float, device=self.device)
        return coords_t, labels_t, boxes_t, masks_t, batched

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
        low_res, iou = model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self._get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )[:2]
        masks = model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > model.mask_threshold
        return masks, iou, low_res
