"""SamHQPredictor: `SamPredictor` for HQ-SAM models, with the official `hq_token_only` option."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from samkit.modeling.sam_hq import SamHQ, combine_hq
from samkit.predict.sam import FEATURE_KEY, SamPredictor
from samkit.runtime.decoding import PromptDecoder
from samkit.runtime.precision import decoder_autocast

INTERM_KEY = "interm_embedding"  # the early encoder feature, in get_image_features


class HQPromptDecoder(PromptDecoder):
    """`PromptDecoder` for `MaskDecoderHQ`: passes the image's HQ features to every call and
    returns `(masks, iou)` like the SAM 1 decoder, combined by `hq_token_only`.

    `hq_features` (1x(C/8)x4hx4w) is set by the predictor per image; `hq_token_only` is False
    (the official default, and what the official automatic mask generator uses) unless the
    predictor's `predict(..., hq_token_only=True)` sets it for one call.
    """

    def __init__(self, decoder: Any, prompt_chunk: int | None = None) -> None:
        super().__init__(decoder, prompt_chunk)
        self.hq_features: Tensor | None = None
        self.hq_token_only = False

    def __call__(  # type: ignore[override]
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        repeat_image: bool = True,
        high_res_features: list[Tensor] | None = None,
        no_mask_embed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if high_res_features is None:
            if self.hq_features is None:
                raise ValueError("no image is set: call set_image(...) before predicting")
            high_res_features = [self.hq_features]
        sam_masks, iou, hq_masks = super().__call__(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
            repeat_image,
            high_res_features,
            no_mask_embed,
        )
        return combine_hq(sam_masks, hq_masks, self.hq_token_only), iou


class SamHQPredictor(SamPredictor):
    """The official `segment_anything_hq.SamPredictor`: as `SamPredictor`, with one mask per
    prompt (multimask: the best of SAM's three by predicted IoU, plus the HQ mask) and
    `hq_token_only` on `predict` / `predict_torch`.

    Raises:
        ValueError: the model is not an HQ-SAM model (`samkit.build_sam_hq`).
    """

    family = "sam_hq"

    def __init__(self, sam_model: SamHQ) -> None:
        if not isinstance(sam_model, SamHQ):
            raise ValueError(
                f"SamHQPredictor needs an HQ-SAM model (samkit.build_sam_hq), got "
                f"{type(sam_model).__name__}; SAM 1 and MobileSAM models use SamPredictor"
            )
        super().__init__(sam_model)

    def reset_image(self) -> None:
        super().reset_image()
        self._prompt_decoder = HQPromptDecoder(self.model.mask_decoder)
        self.interm_features: Tensor | None = None

    @torch.inference_mode()
    def set_torch_image(
        self, transformed_image: Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """As `SamPredictor.set_torch_image`; also keeps the encoder's early feature
        (`interm_features`, 1xhxwxC) and the decoder's HQ features of this image."""
        with self.model.capture_interm() as got:
            super().set_torch_image(transformed_image, original_image_size)
        self._set_hq(got[-1])

    def set_embedding(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError(
            "HQ-SAM needs the image encoder's early feature as well as the embedding: use "
            "set_image, or set_image_features with both (get_image_features gives them)"
        )

    def get_image_features(self) -> dict[str, Tensor]:
        """{"image_embedding": 1xCxhxw, "interm_embedding": 1x`vit_dim`xhxw}: the embedding and
        the encoder's early feature (channels first), what an embedding file stores.

        Raises:
            ValueError: no image is set.
        """
        out = super().get_image_features()
        out[INTERM_KEY] = self.interm_features.permute(0, 3, 1, 2)
        return out

    @torch.inference_mode()
    def set_image_features(
        self,
        features: dict[str, Tensor],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Take stored `get_image_features` output as if `set_image` had run (skips the encoder).

        Raises:
            ValueError: a tensor is missing or has another shape than this model's.
        """
        if FEATURE_KEY not in features or INTERM_KEY not in features:
            raise ValueError(
                f"HQ-SAM features need {FEATURE_KEY!r} and {INTERM_KEY!r}, got {sorted(features)}"
            )
        _, h, w = self.model.image_embedding_shape
        expected = (1, self.model.mask_decoder.vit_dim, h, w)
        interm = features[INTERM_KEY]
        if tuple(interm.shape) != expected:
            raise ValueError(f"{INTERM_KEY} must have shape {expected}, got {tuple(interm.shape)}")
        SamPredictor.set_embedding(self, features[FEATURE_KEY], original_size, input_size)
        self._set_hq(interm.to(self.device).permute(0, 2, 3, 1))

    def image_feature_bytes(self) -> int:
        """Bytes of one image's `get_image_features` (embedding and early feature)."""
        c, h, w = self.model.image_embedding_shape
        size = torch.empty((), dtype=self.model.dtype).element_size()
        return size * (c + self.model.mask_decoder.vit_dim) * h * w

    def _set_hq(self, interm: Tensor) -> None:
        decoder = self.model.mask_decoder
        self.interm_features = interm.to(self.model.dtype)
        with decoder_autocast(decoder):
            hq = decoder.hq_features(self.features, self.interm_features)
        self._prompt_decoder.hq_features = hq

    @contextmanager
    def _hq_only(self, hq_token_only: bool | None) -> Iterator[None]:
        decode = self._prompt_decoder
        before = decode.hq_token_only
        if hq_token_only is not None:
            decode.hq_token_only = bool(hq_token_only)
        try:
            yield
        finally:
            decode.hq_token_only = before

    def predict(  # type: ignore[override]
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `SamPredictor.predict`, returning one mask per prompt (1xHxW, scores (1,),
        low-res 1xhxw); `hq_token_only`: the HQ mask alone instead of SAM mask + HQ mask."""
        with self._hq_only(hq_token_only):
            return super().predict(
                point_coords, point_labels, box, mask_input, multimask_output, return_logits
            )

    def predict_torch(  # type: ignore[override]
        self,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """As `SamPredictor.predict_torch` (Bx1xHxW masks); `hq_token_only` None keeps the
        current setting (False unless called from `predict(..., hq_token_only=True)`)."""
        with self._hq_only(hq_token_only):
            return super().predict_torch(
                point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
            )
