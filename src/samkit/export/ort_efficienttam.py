"""onnxruntime backend of the EfficientTAM image predictor (numpy + PIL + onnxruntime only).

    from samkit.export.ort_efficienttam import OnnxEfficientTamPredictor
    p = OnnxEfficientTamPredictor("out/encoder.onnx", "out/decoder.onnx")
    p.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, low_res = p.predict(np.array([[500, 375]]), np.array([1]))

`OnnxSam2Predictor` on the files of `samkit.export.efficienttam` (SAM 2's without the high-res
features): the same preprocessing, prompts and outputs as `Sam2ImagePredictor` on an
EfficientTAM model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.export.ort_sam2 import DECODER_INPUTS, OnnxSam2Predictor

_HIGH_RES = ("high_res_feats_0", "high_res_feats_1")


class OnnxEfficientTamPredictor(OnnxSam2Predictor):
    """`Sam2ImagePredictor`'s `set_image` / `predict` for EfficientTAM's ONNX files.

    Args:
        encoder_path, decoder_path, mask_threshold, providers, threads: as `OnnxSam2Predictor`.

    Raises:
        ValueError: files of another family (the message names their predictor), of two
            different models, or a decoder with other inputs.
    """

    family = "efficienttam"
    encoder_outputs = ("image_embed",)
    decoder_inputs = tuple(n for n in DECODER_INPUTS if n not in _HIGH_RES)

    def set_features(  # type: ignore[override]
        self, image_embed: np.ndarray, original_size: tuple[int, int]
    ) -> None:
        """Use a precomputed 1xCxhxw `image_embed` for an image of `original_size` (H, W).

        Raises:
            ValueError: another shape than the files', NaN / inf values, or a bad size.
        """
        super().set_features(image_embed, None, None, original_size=original_size)

    def get_image_features(self) -> dict[str, Any]:
        """{"image_embedding": 1xCxhxw float32}, as `Sam2ImagePredictor` on EfficientTAM."""
        return super().get_image_features()
