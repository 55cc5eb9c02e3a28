"""ONNX export of SAM 2 / 2.1 image models: the image encoder and the prompt-encoder + mask decoder.

`encoder.onnx`: input `image` (1x3xSxS, resized to SxS and normalised as
`Sam2ImagePredictor.set_image` does), outputs the predictor's features: `image_embed` (1xCxhxw,
`no_mem_embed` already added), `high_res_feats_0` (1x(C/8)x4hx4w, after `conv_s0`) and
`high_res_feats_1` (1x(C/4)x2hx2w, after `conv_s1`). For the official models S = 1024, C = 256,
h = w = 64.

`decoder.onnx` has the interface of the community SAM 2 ONNX decoders (the SAM 1 official
decoder's, plus the two high-res feature inputs):

| input | shape | meaning |
|---|---|---|
| `image_embed` | 1xCxhxw float | encoder output |
| `high_res_feats_0` | 1x(C/8)x4hx4w float | encoder output |
| `high_res_feats_1` | 1x(C/4)x2hx2w float | encoder output |
| `point_coords` | BxNx2 float | (x, y) in the model input frame (below); any N |
| `point_labels` | BxN float | 1 fg, 0 bg, -1 padding, 2 / 3 box top-left / bottom-right |
| `mask_input` | Bmx1x4hx4w float | low-res logits of an earlier prediction; Bm = 1 or B |
| `has_mask_input` | (1,) float | 1 to use `mask_input`, 0 to ignore it |
| `orig_im_size` | (2,) float | original (H, W) |

The model input frame is the SxS resized image: an original pixel (x, y) of an HxW image is
(x * S / W, y * S / H), as `Sam2ImagePredictor._prep_prompts` maps it. A box goes in as its two
corners with labels 2 and 3, before the points (as the predictor does). Unlike the official SAM 1
decoder, the client never appends a padding point: SAM 2 appends one to every point prompt and
the decoder does it itself (N = 0 with `has_mask_input` = 1 is a mask-only prompt, without one).
Labels are not checked in the graph (it cannot raise): other values than the five above give
garbage, so validate prompts before the call.

Outputs: `masks` (BxMxHxW logits at `orig_im_size`, bilinearly resized from the unclamped low-res
logits as `samkit.predict.postprocess.postprocess_masks` does without hole / sprinkle filling),
`iou_predictions` (BxM) and `low_res_masks` (BxMx4hx4w, clamped to [-32, 32] like the
predictor's, ready to feed back as `mask_input`). M = 4: the single-mask token first, then the 3
multimask outputs (`Sam2ImagePredictor.predict(multimask_output=True)` returns outputs 1..3). With
`return_single_mask`, M = 1 and the mask is what `predict(multimask_output=False)` returns: with
the model's dynamic multimask selection (official SAM 2.1 default) the single-mask token when its
stability score reaches the threshold, else the multimask output with the highest predicted IoU;
without it the single-mask token.

Both files carry `samkit_*` metadata (family "sam2", image size, pixel mean / std of a [0, 1] RGB
image, mask threshold, feature shapes).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
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
from samkit.io.provenance import of_model
from samkit.modeling.sam2 import Sam2
from samkit.runtime.accel import plain_float32_copy

ENCODER_OUTPUTS = ["image_embed", "high_res_feats_0", "high_res_feats_1"]
DECODER_INPUTS = [
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
# The predictor's clamp of the returned low-res logits (official SAM2ImagePredictor).
LOW_RES_CLAMP = 32.0


def _check_model(model: Sam2, what: str) -> None:
    """A ValueError unless `model` is a `Sam2` with high-res features."""
    if not isinstance(model, Sam2):
        raise ValueError(
            f"{what} expects a SAM 2 `Sam2` model (samkit.build_sam2), got {type(model).__name__}"
        )
    if not model.use_high_res_features_in_sam:
        raise ValueError(
            f"{what} needs a SAM 2 model with high-res features (use_high_res_features_in_sam), "
            "as in every official SAM 2 / 2.1 variant"
        )


def _checked_float32(model: Sam2, what: str) -> Sam2:
    """The checked model as plain float32 (a copy without the hooks of a low-precision model)."""
    _check_model(model, what)
    return plain_float32_copy(model)


def hiera_pos_embed(model: Sam2) -> Tensor:
    """The Hiera trunk's position embedding at the model's fixed input size, 1 x S/4 x S/4 x C
    (a bicubic resize and a tiling that depend only on the weights), for an export to store as a
    constant: traced, `Tensor.tile` becomes an If whose branch outputs differ in length (5 / 4),
    which onnxruntime warns about on every load."""
    trunk = model.image_encoder.trunk
    proj = trunk.patch_embed.proj
    grid = (model.image_size + 2 * proj.padding[0] - proj.kernel_size[0]) // proj.stride[0] + 1
    with torch.no_grad():
        return trunk._get_pos_embed((grid, grid))


def hiera_levels(
    model: Sam2, image: Tensor, trunk_pos_embed: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """`Hiera.forward` + `ImageEncoder.forward` with the trunk's position embedding given
    (`hiera_pos_embed`): the neck's (feature levels, position encodings), finest first."""
    encoder, trunk = model.image_encoder, model.image_encoder.trunk
    x = trunk.patch_embed(image) + trunk_pos_embed  # (1, S/4, S/4, C)
    stages = []
    for i, block in enumerate(trunk.blocks):
        x = block(x)
        if i in trunk.stage_ends:
            stages.append(x.permute(0, 3, 1, 2))
    fpn, pos = encoder.neck(stages, num_levels=len(stages) - encoder.scalp)
    return list(fpn), list(pos)


class Sam2OnnxEncoder(nn.Module):
    """`image` (1x3xSxS normalised) -> (`image_embed`, `high_res_feats_0`, `high_res_feats_1`).

    The computation of `Sam2.encode_image` (what `Sam2ImagePredictor.set_image` runs), with the
    trunk's position embedding (a bicubic resize and tiling that depend only on the weights and
    the fixed input size) computed once in torch and stored as a constant: the graph then has no
    shape arithmetic for it, which onnxruntime otherwise warns about when loading the file.
    """

    def __init__(self, model: Sam2) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("trunk_pos_embed", hiera_pos_embed(model), persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        fpn, _ = hiera_levels(model, image, self.trunk_pos_embed)
        # Sam2.forward_image, then encode_image's choice of levels
        fpn = list(fpn)
        fpn[0] = model.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = model.sam_mask_decoder.conv_s1(fpn[1])
        hr0, hr1, image_embed = fpn[-model.num_feature_levels :]
        if model.directly_add_no_mem_embed:
            image_embed = image_embed + model.no_mem_embed.view(1, -1, 1, 1)
        return image_embed, hr0, hr1


class Sam2OnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask resizing of SAM 2 with traceable, branch-free code."""

    def __init__(self, model: Sam2, return_single_mask: bool = False) -> None:
        super().__init__()
        self.model = model
        self.img_size = model.image_size
        self.return_single_mask = return_single_mask

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """BxNx2 input-frame coords, BxN labels -> Bx(N+1)xC with SAM 2's padding point appended
        (Bx0xC for N = 0).

        Same bits as `PromptEncoder._embed_points(pad=True)`: 0/1 masks instead of `torch.where`.
        """
        pe = self.model.sam_prompt_encoder
        b = coords.shape[0]
        coords = torch.cat([coords + 0.5, coords.new_zeros(b, 1, 2)], dim=1)
        labels = torch.cat([labels, -labels.new_ones(b, 1)], dim=1)
        # The input frame is square, so x and y are both divided by the image size.
        emb = pe.pe_layer._pe_encoding(coords / self.img_size)  # (B, N+1, C)
        labels = labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(emb.dtype)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i, table in enumerate(pe.point_embeddings):
            emb = emb + table.weight * (labels == i).to(emb.dtype)
        # SAM 2 pads actual points only: a mask-only prompt (N = 0) gets no token at all. The
        # count is computed from the input, so the exported graph keeps it dynamic.
        n_tokens = torch.ones_like(labels[0, :, 0], dtype=torch.int64).sum()  # N + 1
        keep = torch.arange(n_tokens - (n_tokens == 1).to(torch.int64), device=emb.device)
        return emb.index_select(1, keep)

    def _embed_masks(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """Bmx1x4hx4w logits -> BmxCxhxw dense embedding (`no_mask_embed` when has_mask_input=0)."""
        pe = self.model.sam_prompt_encoder
        dense = has_mask_input * pe.mask_downscaling(mask_input)
        return dense + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _select_single(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """BxMx4hx4w, BxM (M = 4) -> the mask `MaskDecoder(multimask_output=False)` returns."""
        decoder = self.model.sam_mask_decoder
        if decoder.dynamic_multimask_via_stability:
            # torch.where on the stability test: branch-free in the graph.
            return decoder._dynamic_multimask_via_stability(masks, iou)
        return masks[:, 0:1], iou[:, 0:1]

    @torch.no_grad()
    def forward(
        self,
        image_embed: Tensor,
        high_res_feats_0: Tensor,
        high_res_feats_1: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """See the module docstring for the shapes; returns (masks, iou_predictions, low_res)."""
        return self._decode(
            image_embed,
            [high_res_feats_0, high_res_feats_1],
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            orig_im_size,
        )

    def _decode(
        self,
        image_embed: Tensor,
        high_res_features: list[Tensor] | None,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The decoder graph, with the high-res features or without them (None: EfficientTAM)."""
        pe = self.model.sam_prompt_encoder
        masks, iou = self.model.sam_mask_decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=self._embed_points(point_coords, point_labels),
            dense_prompt_embeddings=self._embed_masks(mask_input, has_mask_input),
            repeat_image=True,
            high_res_features=high_res_features,
        )[:2]
        if self.return_single_mask:
            masks, iou = self._select_single(masks, iou)
        hw = orig_im_size.to(torch.int64)
        full = F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)
        return full, iou, torch.clamp(masks, -LOW_RES_CLAMP, LOW_RES_CLAMP)


def _metadata(model: Sam2, **extra: object) -> dict[str, str]:
    pe = model.sam_prompt_encoder
    c = pe.embed_dim
    (h0, w0), (h1, w1), (h, w) = model.bb_feat_sizes
    decoder = model.sam_mask_decoder
    meta = {
        "samkit_version": __version__,
        "samkit_family": "sam2",
        "samkit_provenance": dataclasses.asdict(of_model(model)),
        "samkit_img_size": int(model.image_size),
        "samkit_pixel_mean": model.pixel_mean.flatten().tolist(),
        "samkit_pixel_std": model.pixel_std.flatten().tolist(),
        "samkit_pixel_scale": "rgb01",  # mean / std apply to RGB / 255 (SAM 1: 0..255)
        "samkit_resize": "square_bilinear_antialias",
        "samkit_mask_threshold": 0.0,
        "samkit_embedding_shape": [1, c, h, w],
        "samkit_high_res_feats_shapes": [[1, c // 8, h0, w0], [1, c // 4, h1, w1]],
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


def export_sam2_encoder(model: Sam2, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export the image encoder (input `image`, outputs `ENCODER_OUTPUTS`; see module docstring).

    Args:
        model: a SAM 2 model (exported in float32 whatever its dtype).
        path: output `.onnx` file.
        opset: ONNX opset (14..20).

    Returns:
        The written path.
    """
    _check_opset(opset)
    model = _checked_float32(model, "export_sam2_encoder")
    s = model.image_size
    image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0)).to(model.device)
    path = Path(path)
    with torch.no_grad():
        _export(Sam2OnnxEncoder(model), (image,), path, ["image"], ENCODER_OUTPUTS, None, opset)
    _add_metadata(path, _metadata(model, component="encoder"))
    return path


def sam2_decoder_example_inputs(
    model: Sam2, num_points: int = 5, num_prompts: int = 1, num_mask_inputs: int = 1
) -> dict[str, Tensor]:
    """Random example inputs of the exported decoder (names, dtypes and shapes of the interface).

    Returns:
        {name: tensor} in `DECODER_INPUTS` order; point labels are drawn from -1..3.
    """
    pe = model.sam_prompt_encoder
    c, s = pe.embed_dim, model.image_size
    (h0, w0), (h1, w1), (h, w) = model.bb_feat_sizes
    g = torch.Generator().manual_seed(0)
    b, n = num_prompts, num_points
    inputs = {
        "image_embed": torch.randn(1, c, h, w, generator=g),
        "high_res_feats_0": torch.randn(1, c // 8, h0, w0, generator=g),
        "high_res_feats_1": torch.randn(1, c // 4, h1, w1, generator=g),
        "point_coords": torch.randint(0, s, (b, n, 2), generator=g).float(),
        "point_labels": torch.randint(-1, 4, (b, n), generator=g).float(),
        "mask_input": torch.randn(num_mask_inputs, 1, *pe.mask_input_size, generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    return {k: v.to(model.device) for k, v in inputs.items()}


def export_sam2_decoder(
    model: Sam2,
    path: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export prompt encoder + mask decoder + mask resizing (interface: module docstring).

    Args:
        model: a SAM 2 model (exported in float32 whatever its dtype).
        path: output `.onnx` file.
        return_single_mask: output the one mask `Sam2ImagePredictor.predict(
            multimask_output=False)` returns instead of all 4.
        opset: ONNX opset (14..20).

    Returns:
        The written path.
    """
    _check_opset(opset)
    if not isinstance(return_single_mask, bool):
        raise ValueError(f"return_single_mask must be a bool, got {return_single_mask!r}")
    model = _checked_float32(model, "export_sam2_decoder")
    # Traced with 2 prompts and 2 mask inputs: the decoder's shape-dependent fast paths for one
    # shared image side are then not taken, and the graph stays valid for any B and Bm in {1, B}.
    inputs = sam2_decoder_example_inputs(model, num_prompts=2, num_mask_inputs=2)
    meta = _metadata(model, component="decoder", return_single_mask=return_single_mask)
    decoder = Sam2OnnxDecoder(model, return_single_mask)
    return export_prompt_decoder(decoder, inputs, path, meta, opset)


def export_sam2_onnx(
    model: Sam2,
    out_dir: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
    encoder: bool = True,
) -> dict[str, Path]:
    """Write `out_dir/encoder.onnx` (unless `encoder=False`) and `out_dir/decoder.onnx`.

    Args:
        model: a SAM 2 model (exported in float32 whatever its dtype).
        out_dir: output folder (created if missing).
        return_single_mask: see `export_sam2_decoder`.
        opset: ONNX opset (14..20).
        encoder: also write the encoder.

    Returns:
        {"encoder": path, "decoder": path} for the files written.
    """
    _check_opset(opset)
    _check_model(model, "export_sam2_onnx")
    out = Path(out_dir)
    paths = {}
    if encoder:
        paths["encoder"] = export_sam2_encoder(model, out / ENCODER_FILE, opset)
    paths["decoder"] = export_sam2_decoder(model, out / DECODER_FILE, return_single_mask, opset)
    return paths
