"""ONNX export of SAM 1 (and MobileSAM, whose decoder is SAM 1's): the image encoder and the
official-interface prompt-encoder + mask decoder. HQ-SAM: `samkit.export.sam_hq`.

`encoder.onnx`: input `image` (1x3xSxS, normalised and padded as `Sam.preprocess` does), output
`image_embeddings` (1xCxhxw).

`decoder.onnx` has the interface of the official `segment_anything` ONNX decoder, so its clients
can use samkit's file unchanged:

| input | shape | meaning |
|---|---|---|
| `image_embeddings` | 1xCxhxw float | the encoder output |
| `point_coords` | BxNx2 float | (x, y) in the resized (model input) frame; any N |
| `point_labels` | BxN float | 1 fg, 0 bg, -1 padding, 2 / 3 box top-left / bottom-right |
| `mask_input` | Bx1x4hx4w float | low-res logits of an earlier prediction (or 1x1x4hx4w for all) |
| `has_mask_input` | (1,) float | 1 to use `mask_input`, 0 to ignore it |
| `orig_im_size` | (2,) float | original (H, W) |

Outputs: `masks` (BxMxHxW logits at `orig_im_size`), `iou_predictions` (BxM) and `low_res_masks`
(BxMx4hx4w) with M = 4 (the single-mask token first, then the 3 multimask outputs), or M = 1 with
`return_single_mask`: like the official exporter, the single-mask token is picked when there are
more than 2 points (padding and box corners included), else the best of the 3 multimask outputs
by predicted IoU. That differs from `SamPredictor.predict(multimask_output=False)`, which always
returns the single-mask token: `OnnxSamPredictor` serves such a file only for prompts of more than
2 decoder points and refuses one point or a box alone with a ValueError (the 4-mask file serves
every call). As an extension, the prompt batch B is dynamic too (official files use B = 1).
Client code for the official model must append the padding point (0, 0) with label -1 when no
box is given, exactly as for the official file.

Both files carry metadata (`samkit_*` keys: image size, pixel mean / std, mask threshold) that
`samkit.export.ort_sam.OnnxSamPredictor` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit import __version__
from samkit.io.provenance import of_model
from samkit.modeling.sam import Sam
from samkit.modeling.sam_hq import MaskDecoderHQ
from samkit.runtime.accel import plain_float32_copy

DEFAULT_OPSET = 17
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
# Dynamic axes of the prompt decoders (SAM 1 and SAM 2): prompts, points, mask inputs, output size.
DECODER_DYNAMIC_AXES = {
    "point_coords": {0: "num_prompts", 1: "num_points"},
    "point_labels": {0: "num_prompts", 1: "num_points"},
    "mask_input": {0: "num_mask_inputs"},
    "masks": {0: "num_prompts", 2: "height", 3: "width"},
    "iou_predictions": {0: "num_prompts"},
    "low_res_masks": {0: "num_prompts"},
}


def _float32_copy(model: Sam) -> Sam:
    """The model itself when it is plain float32, else a float32 copy without the low-precision
    hooks of `build_sam(dtype=...)` / `samkit.runtime.accel.optimize` (exports are always float32)."""
    return plain_float32_copy(model)


class SamOnnxEncoder(nn.Module):
    """`image` (1x3xSxS normalised, padded) -> `image_embeddings`."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, image: Tensor) -> Tensor:
        return self.image_encoder(image)


class SamOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask postprocessing with traceable, branch-free code."""

    def __init__(self, model: Sam, return_single_mask: bool = False) -> None:
        super().__init__()
        self.model = model
        self.img_size = model.image_encoder.img_size
        self.return_single_mask = return_single_mask

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        pe = self.model.prompt_encoder
        # The encoder input is square, so x and y are both divided by img_size.
        emb = pe.pe_layer._pe_encoding((coords + 0.5) / self.img_size)  # (B, N, C)
        labels = labels.unsqueeze(-1)
        # Multiplying by 0/1 masks instead of branching gives the same bits as `torch.where`.
        emb = emb * (labels != -1).to(emb.dtype)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i, table in enumerate(pe.point_embeddings):
            emb = emb + table.weight * (labels == i).to(emb.dtype)
        return emb

    def _embed_masks(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        pe = self.model.prompt_encoder
        dense = has_mask_input * pe.mask_downscaling(mask_input)
        return dense + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _select_masks(
        self, masks: Tensor, iou: Tensor, num_points: int | Tensor
    ) -> tuple[Tensor, Tensor]:
        """Official `SamOnnxModel.select_masks`: the single-mask token for > 2 points, else the
        multimask output with the highest predicted IoU."""
        reweight = torch.zeros_like(iou[:1])
        reweight[:, 0] = 1000.0
        best = torch.argmax(iou + (num_points - 2.5) * reweight, dim=1)
        batch = torch.arange(masks.shape[0], device=masks.device)
        return masks[batch, best].unsqueeze(1), iou[batch, best].unsqueeze(1)

    def _postprocess(self, masks: Tensor, orig_im_size: Tensor) -> Tensor:
        s = self.img_size
        masks = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        # Same rounding as the official exporter: floor(size * s / max(size) + 0.5) in float32.
        size = orig_im_size.to(torch.float32)
        pre = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
        masks = masks[..., : pre[0], : pre[1]]
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        pe = self.model.prompt_encoder
        masks, iou = self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )[:2]
        if self.return_single_mask:
            masks, iou = self._select_masks(masks, iou, point_coords.shape[1])
        return self._postprocess(masks, orig_im_size), iou, masks


def _metadata(model: Sam, **extra: object) -> dict[str, str]:
    pe = model.prompt_encoder
    meta = {
        "samkit_version": __version__,
        "samkit_family": model.family,  # sam1, or a family with SAM 1's decoder (MobileSAM)
        "samkit_provenance": dataclasses.asdict(of_model(model)),
        "samkit_img_size": model.image_encoder.img_size,
        "samkit_pixel_mean": model.pixel_mean.flatten().tolist(),
        "samkit_pixel_std": model.pixel_std.flatten().tolist(),
        "samkit_mask_threshold": float(model.mask_threshold),
        "samkit_embedding_shape": [1, pe.embed_dim, *pe.image_embedding_size],
        "samkit_mask_input_size": list(pe.mask_input_size),
        **{f"samkit_{k}": v for k, v in extra.items()},
    }
    return {k: json.dumps(v) for k, v in meta.items()}


def _add_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    opset: int,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter traces in eval mode and then restores the wrapper's mode recursively: a fresh
    # wrapper is in training mode and would leave the wrapped model in training mode (SAM 2's
    # decoder then skips its dynamic multimask selection).
    module.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that traces data-dependent output sizes
        # (`orig_im_size`) like the official exporter; it warns about deprecation and tracing.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            export_params=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _check_sam1_decoder(model: Sam, what: str) -> None:
    """A ValueError unless `model` is a `Sam` (SAM 1, MobileSAM) with SAM 1's plain decoder:
    an HQ-SAM decoder needs the encoder's early feature, which this interface has no input for."""
    if not isinstance(model, Sam):
        raise ValueError(
            f"{what} expects a SAM 1 `Sam` model (build_sam, build_mobile_sam), got "
            f"{type(model).__name__}"
        )
    if isinstance(model.mask_decoder, MaskDecoderHQ):
        raise ValueError(
            f"{what}: an HQ-SAM model needs the HQ export (its decoder also takes the encoder's "
            "early feature): use samkit.export.sam_hq.export_sam_hq_onnx (`samkit export onnx` "
            "picks it)"
        )


def _check_opset(opset: int) -> None:
    if not isinstance(opset, int) or not 14 <= opset <= 20:
        raise ValueError(f"opset must be an integer from 14 to 20, got {opset!r}")


def export_encoder(model: Sam, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export the image encoder to `path` (input `image`, output `image_embeddings`).

    Args:
        model: a SAM 1 model (exported in float32 whatever its dtype).
        path: output `.onnx` file.
        opset: ONNX opset (14..20).

    Returns:
        The written path.
    """
    _check_opset(opset)
    _check_sam1_decoder(model, "export_encoder")
    model = _float32_copy(model)
    s = model.image_encoder.img_size
    path = Path(path)
    image = torch.randn(1, 3, s, s)
    with torch.no_grad():
        _export(SamOnnxEncoder(model), (image,), path, ["image"], ["image_embeddings"], None, opset)
    _add_metadata(path, _metadata(model, component="encoder"))
    return path


def decoder_example_inputs(
    model: Sam, num_points: int = 5, num_prompts: int = 1, num_mask_inputs: int = 1
) -> dict[str, Tensor]:
    """Example inputs of the exported decoder (official names, dtypes and shapes)."""
    pe = model.prompt_encoder
    s = model.image_encoder.img_size
    g = torch.Generator().manual_seed(0)
    b, n = num_prompts, num_points
    return {
        "image_embeddings": torch.randn(1, pe.embed_dim, *pe.image_embedding_size, generator=g),
        "point_coords": torch.randint(0, s, (b, n, 2), generator=g).float(),
        "point_labels": torch.randint(-1, 4, (b, n), generator=g).float(),
        "mask_input": torch.randn(num_mask_inputs, 1, *pe.mask_input_size, generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }


def export_decoder(
    model: Sam,
    path: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export prompt encoder + mask decoder + postprocessing with the official ONNX interface.

    Args:
        model: a SAM 1 model (exported in float32 whatever its dtype).
        path: output `.onnx` file.
        return_single_mask: output one mask chosen as the official exporter does (see the module
            docstring) instead of all 4.
        opset: ONNX opset (14..20).

    Returns:
        The written path.
    """
    _check_opset(opset)
    _check_sam1_decoder(model, "export_decoder")
    model = _float32_copy(model)
    # Traced with 2 prompts and 2 mask inputs: the decoder's shape-dependent shortcuts for one
    # shared image side (batch 1) must not be baked into a graph that takes any B prompts.
    inputs = decoder_example_inputs(model, num_prompts=2, num_mask_inputs=2)
    meta = _metadata(model, component="decoder", return_single_mask=return_single_mask)
    return export_prompt_decoder(
        SamOnnxDecoder(model, return_single_mask), inputs, path, meta, opset
    )


def export_prompt_decoder(
    decoder: nn.Module,
    inputs: dict[str, Tensor],
    path: str | os.PathLike,
    meta: dict[str, str],
    opset: int,
) -> Path:
    """Trace a prompt decoder (SAM 1 or SAM 2 interface) with `inputs` (names in order) to `path`
    with `DECODER_DYNAMIC_AXES` and outputs `masks`, `iou_predictions`, `low_res_masks`."""
    path = Path(path)
    _export(
        decoder,
        tuple(inputs.values()),
        path,
        list(inputs),
        ["masks", "iou_predictions", "low_res_masks"],
        DECODER_DYNAMIC_AXES,
        opset,
    )
    _add_metadata(path, meta)
    return path


def export_sam_onnx(
    model: Sam,
    out_dir: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
    encoder: bool = True,
) -> dict[str, Path]:
    """Write `out_dir/encoder.onnx` (unless `encoder=False`) and `out_dir/decoder.onnx`.

    Returns:
        {"encoder": path, "decoder": path} for the files written.
    """
    out = Path(out_dir)
    paths = {}
    if encoder:
        paths["encoder"] = export_encoder(model, out / ENCODER_FILE, opset)
    paths["decoder"] = export_decoder(model, out / DECODER_FILE, return_single_mask, opset)
    return paths
