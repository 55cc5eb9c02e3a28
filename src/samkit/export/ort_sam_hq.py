"""onnxruntime backend of the HQ-SAM predictor (numpy + PIL + onnxruntime; no torch import).

    from samkit.export.ort_sam_hq import OnnxSamHQPredictor
    p = OnnxSamHQPredictor("out/encoder.onnx", "out/decoder.onnx")
    p.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, low_res = p.predict(np.array([[500, 375]]), np.array([1]), hq_token_only=True)

The files come from `samkit export onnx` of an HQ-SAM model (`samkit.export.sam_hq`). `predict`
answers as `SamHQPredictor.predict` does (one mask per prompt) for every `multimask_output` /
`hq_token_only`, picking the decoder output of that combination. Stored features
(`get_image_features`: the embedding and the early feature, 1xCxhxw each) are those of
`SamHQPredictor`, so an embedding file of either predictor serves the other.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from samkit.export.ort_sam import OnnxSamPredictor, _array

INTERM_KEY = "interm_embedding"  # the early feature's name in get_image_features (torch: same)
# (multimask_output, hq_token_only) -> decoder output (samkit.export.sam_hq.OUTPUT_INDEX)
_OUTPUT_INDEX = {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}


class OnnxSamHQPredictor(OnnxSamPredictor):
    """`SamHQPredictor`'s `set_image` / `predict` (with `hq_token_only`) on onnxruntime.

    Args:
        encoder_path: `encoder.onnx` with outputs `image_embeddings`, `interm_embeddings` (None:
            only `set_image_features` can set an image).
        decoder_path: the HQ `decoder.onnx` (inputs: SAM 1's plus `interm_embeddings`).
        providers, intra_op_num_threads: as `OnnxSamPredictor`.

    Raises:
        ValueError: files of another family (the message names their predictor), of two
            different models, or a decoder without the HQ inputs.
    """

    family = "sam_hq"
    decoder_inputs = (
        "image_embeddings",
        "interm_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    )

    def __init__(
        self,
        encoder_path: str | os.PathLike | None,
        decoder_path: str | os.PathLike,
        providers: list[str] | None = None,
        intra_op_num_threads: int | None = None,
    ) -> None:
        super().__init__(encoder_path, decoder_path, providers, intra_op_num_threads)
        shape = next(i.shape for i in self.decoder.get_inputs() if i.name == "interm_embeddings")
        self.interm_shape = (1, 1, *(int(d) for d in shape[2:]))  # 1x1xhxwxV
        self._hq_token_only = False

    def reset_image(self) -> None:
        super().reset_image()
        self.interm: np.ndarray | None = None

    def _encode(self, x: np.ndarray, original_size: tuple[int, int]) -> None:
        emb, interm = self.encoder.run(["image_embeddings", "interm_embeddings"], {"image": x})
        self._set(emb, interm, original_size)

    def _set(self, embedding: Any, interm: Any, original_size: tuple[int, int]) -> None:
        interm = _array(interm)
        if interm.shape != self.interm_shape:
            raise ValueError(
                f"interm_embeddings must have shape {self.interm_shape}, got {interm.shape}"
            )
        super().set_embedding(embedding, original_size)  # resets, then sets the embedding
        self.interm = interm

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        """Refused: HQ-SAM also needs the encoder's early feature (`set_image_features`)."""
        raise ValueError(
            "HQ-SAM needs the image encoder's early feature as well as the embedding: use "
            "set_image, or set_image_features with both (get_image_features gives them)"
        )

    def get_image_features(self) -> dict[str, np.ndarray]:
        """{"image_embedding": 1xCxhxw, "interm_embedding": 1xVxhxw} float32, as
        `SamHQPredictor.get_image_features` (what an embedding file stores).

        Raises:
            ValueError: no image is set.
        """
        self._require_image()
        return {
            "image_embedding": self.features,
            INTERM_KEY: np.ascontiguousarray(self.interm[0].transpose(0, 3, 1, 2)),
        }

    def set_image_features(
        self,
        features: dict[str, Any],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Take stored `get_image_features` output (tensors or arrays) as if `set_image` had run.

        Raises:
            ValueError: a feature is missing or has another shape than the files'.
        """
        missing = [k for k in ("image_embedding", INTERM_KEY) if k not in features]
        if missing:
            raise ValueError(f"HQ-SAM features need {missing} as well, got {sorted(features)}")
        interm = _array(features[INTERM_KEY])
        if interm.ndim != 4:
            raise ValueError(f"{INTERM_KEY} must be 1xVxhxw, got shape {interm.shape}")
        self._set(features["image_embedding"], interm.transpose(0, 2, 3, 1)[None], original_size)

    def _image_feeds(self) -> dict[str, np.ndarray]:
        return {"image_embeddings": self.features, "interm_embeddings": self.interm}

    def _output_slice(self, multimask_output: bool) -> slice:
        i = _OUTPUT_INDEX[(bool(multimask_output), self._hq_token_only)]
        return slice(i, i + 1)

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
        """As `SamHQPredictor.predict`: one mask per prompt (1xHxW, scores (1,), low-res
        1xhxw; a leading B axis for B boxes); `hq_token_only` the HQ mask alone.

        Raises:
            ValueError: as `OnnxSamPredictor.predict` (bad prompts, no image set).
        """
        self._hq_token_only = bool(hq_token_only)
        try:
            return super().predict(
                point_coords, point_labels, box, mask_input, multimask_output, return_logits
            )
        finally:
            self._hq_token_only = False
