"""ONNX export of EfficientTAM image models: SAM 2's files without the high-res features.

EfficientTAM's decoder takes the image embedding alone (`use_high_res_features_in_sam` is off in
every official model), so its files are SAM 2's (`samkit.export.sam2`, same preprocessing,
prompts, outputs and metadata) with the two `high_res_feats_*` tensors left out:

`encoder.onnx`: input `image` (1x3xSxS, resized to SxS and normalised as
`Sam2ImagePredictor.set_image` does), output `image_embed` (1xCxhxw, `no_mem_embed` added).

`decoder.onnx`: inputs `image_embed`, `point_coords`, `point_labels`, `mask_input`,
`has_mask_input`, `orig_im_size` as in `samkit.export.sam2`; outputs `masks`, `iou_predictions`,
`low_res_masks` (4 masks, or 1 with `return_single_mask`: SAM 2's rule).

`samkit.export.ort_efficienttam.OnnxEfficientTamPredictor` serves them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from samkit import __version__
from samkit.export.sam import (
    DECODER_FILE,
    DEFAULT_OPSET,
    ENCODER_FILE,
    _add_metadata,
    _check_opset,
    _export,
    export_prompt_decoder,
)
from samkit.export.sam2 import Sam2OnnxDecoder
from samkit.io.provenance import of_model
from samkit.modeling.efficienttam import EfficientTam
from samkit.runtime.accel import plain_float32_copy


def _checked_float32(model: EfficientTam, what: str) -> EfficientTam:
    if not isinstance(model, EfficientTam):
        raise ValueError(
            f"{what} expects an EfficientTAM model (samkit.build_efficienttam), got "
            f"{type(model).__name__}; SAM 2 models export with samkit.export.sam2.export_sam2_onnx"
        )
    if model.use_high_res_features_in_sam:
        raise ValueError(
            f"{what}: this EfficientTAM model uses high-res features (no official one does); "
            "these files have no high-res inputs"
        )
    return plain_float32_copy(model)


def _meta(model: EfficientTam, **extra: object) -> dict[str, str]:
    """The `samkit_*` metadata of SAM 2's files (`samkit.export.sam2`), without the high-res
    feature shapes, with this model's family and provenance."""
    pe = model.sam_prompt_encoder
    h, w = model.bb_feat_sizes[-1]
    decoder = model.sam_mask_decoder
    meta = {
        "samkit_version": __version__,
        "samkit_family": model.family,
        "samkit_provenance": dataclasses.asdict(of_model(model)),
        "samkit_img_size": int(model.image_size),
        "samkit_pixel_mean": model.pixel_mean.flatten().tolist(),
        "samkit_pixel_std": model.pixel_std.flatten().tolist(),
        "samkit_pixel_scale": "rgb01",
        "samkit_resize": "square_bilinear_antialias",
        "samkit_mask_threshold": 0.0,
        "samkit_embedding_shape": [1, pe.embed_dim, h, w],
        "samkit_mask_input_size": list(pe.mask_input_size),
        "samkit_dynamic_multimask_via_stability": bool(decoder.dynamic_multimask_via_stability),
        "samkit_dynamic_multimask_stability_delta": float(
            decoder.dynamic_multimask_stability_delta
        ),
        "samkit_dynamic_multimask_stability_thresh": float(
            decoder.dynamic_multimask_stability_thresh
        ),
        **{f"samkit_{k}": v for k, v in extra.items()},
    }
    return {k: json.dumps(v) for k, v in meta.items()}


class EfficientTamOnnxEncoder(nn.Module):
    """`image` (1x3xSxS normalised) -> `image_embed` (`EfficientTam.encode_image`)."""

    def __init__(self, model: EfficientTam) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return self.model.encode_image(image)["image_embed"]


class EfficientTamOnnxDecoder(Sam2OnnxDecoder):
    """SAM 2's ONNX decoder (`samkit.export.sam2.Sam2OnnxDecoder`) without high-res inputs."""

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self,
        image_embed: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self._decode(
            image_embed,
            None,
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            orig_im_size,
        )


def decoder_example_inputs(
    model: EfficientTam, num_points: int = 5, num_prompts: int = 1, num_mask_inputs: int = 1
) -> dict[str, Tensor]:
    """Random example inputs of the exported decoder, in input order (point labels -1..3)."""
    pe = model.sam_prompt_encoder
    s = model.image_size
    h, w = model.bb_feat_sizes[-1]
    g = torch.Generator().manual_seed(0)
    b, n = num_prompts, num_points
    return {
        "image_embed": torch.randn(1, pe.embed_dim, h, w, generator=g),
        "point_coords": torch.randint(0, s, (b, n, 2), generator=g).float(),
        "point_labels": torch.randint(-1, 4, (b, n), generator=g).float(),
        "mask_input": torch.randn(num_mask_inputs, 1, *pe.mask_input_size, generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }


def export_efficienttam_onnx(
    model: EfficientTam,
    out_dir: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
    encoder: bool = True,
) -> dict[str, Path]:
    """Write `out_dir/encoder.onnx` (unless `encoder=False`) and `out_dir/decoder.onnx` of an
    EfficientTAM model (the registry's `exporter` slot; `samkit export onnx`).

    Args:
        model: an EfficientTAM image or video model (exported in float32 whatever its dtype).
        out_dir: output folder (created if missing).
        return_single_mask: one mask, what `Sam2ImagePredictor.predict(multimask_output=False)`
            returns, instead of all 4.
        opset: ONNX opset (14..20).
        encoder: also write the encoder.

    Returns:
        {"encoder": path, "decoder": path} for the files written.

    Raises:
        ValueError: not an EfficientTAM model, one with high-res features, a non-bool
            `return_single_mask`, or an opset outside 14..20.
    """
    _check_opset(opset)
    if not isinstance(return_single_mask, bool):
        raise ValueError(f"return_single_mask must be a bool, got {return_single_mask!r}")
    model = _checked_float32(model, "export_efficienttam_onnx")
    out = Path(out_dir)
    paths = {}
    if encoder:
        s = model.image_size
        image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
        path = out / ENCODER_FILE
        with torch.no_grad():
            _export(
                EfficientTamOnnxEncoder(model),
                (image,),
                path,
                ["image"],
                ["image_embed"],
                None,
                opset,
            )
        _add_metadata(path, _meta(model, component="encoder"))
        paths["encoder"] = path
    # 2 prompts and 2 mask inputs, as SAM 2's decoder: no batch-1 shortcut in the graph
    inputs = decoder_example_inputs(model, num_prompts=2, num_mask_inputs=2)
    meta = _meta(model, component="decoder", return_single_mask=return_single_mask)
    decoder = EfficientTamOnnxDecoder(model, return_single_mask)
    paths["decoder"] = export_prompt_decoder(decoder, inputs, out / DECODER_FILE, meta, opset)
    return paths
