"""ONNX export of HQ-SAM: the image encoder with its early feature, and the HQ prompt decoder.

HQ-SAM's decoder needs, besides the image embedding, the image encoder's early feature (the first
global-attention ViT block's output, or TinyViT's second stage; `samkit.modeling.sam_hq`). The
files follow the official `segment_anything_hq` ONNX decoder for that input:

`encoder.onnx`: input `image` (1x3xSxS, normalised and padded as `Sam.preprocess` does), outputs
`image_embeddings` (1xCxhxw) and `interm_embeddings` (1x1xhxwxV, V = the early feature's
channels: the official layout Kx1xhxwxV with K = 1, the only level the decoder reads).

`decoder.onnx`: the SAM 1 decoder inputs (`samkit.export.sam`) plus `interm_embeddings`
(Kx1xhxwxV, any K >= 1; the decoder uses the first, as the official one does), in the official
order: `image_embeddings`, `interm_embeddings`, `point_coords`, `point_labels`, `mask_input`,
`has_mask_input`, `orig_im_size`. Where the official exporter fixes `multimask_output` and
`hq_token_only` when it writes the file (one mask out), samkit's file answers every call of
`SamHQPredictor.predict`: its outputs `masks` (Bx4xHxW logits), `iou_predictions` (Bx4) and
`low_res_masks` (Bx4x4hx4w) hold, in this order,

| index | `multimask_output` | `hq_token_only` | mask | IoU |
|---|---|---|---|---|
| 0 | False | False | single-mask token + HQ mask | the single-mask token's |
| 1 | True | False | best of the 3 multimask outputs (by IoU) + HQ mask | that output's |
| 2 | False | True | HQ mask | the single-mask token's |
| 3 | True | True | HQ mask | the best multimask output's |

(`OUTPUT_INDEX`), the rule of `MaskDecoderHQ.forward`. `return_single_mask` is refused: the
4-output file serves every call.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from samkit.export.sam import (
    DECODER_DYNAMIC_AXES,
    DECODER_FILE,
    DEFAULT_OPSET,
    ENCODER_FILE,
    SamOnnxDecoder,
    _add_metadata,
    _check_opset,
    _export,
    _float32_copy,
    _metadata,
    decoder_example_inputs,
)
from samkit.modeling.sam_hq import SamHQ

# (multimask_output, hq_token_only) -> index of the decoder's outputs (module docstring)
OUTPUT_INDEX = {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}
INTERM_INPUT = "interm_embeddings"


class SamHQOnnxEncoder(nn.Module):
    """`image` (1x3xSxS normalised, padded) -> (`image_embeddings` 1xCxhxw, `interm_embeddings`
    1x1xhxwxV)."""

    def __init__(self, model: SamHQ) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        embedding, interm = self.model.encode_image(image)
        return embedding, interm.unsqueeze(0)


class SamHQOnnxDecoder(SamOnnxDecoder):
    """The SAM 1 ONNX decoder with HQ-SAM's fusion and HQ token; 4 outputs (`OUTPUT_INDEX`)."""

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self,
        image_embeddings: Tensor,
        interm_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        decoder = self.model.mask_decoder
        hq = decoder.hq_features(image_embeddings, interm_embeddings[0])
        masks, iou, hq_masks = decoder.predict_masks_hq(
            image_embeddings,
            self.model.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            hq,
        )
        # the best multimask output by predicted IoU (tokens 1..3), as MaskDecoderHQ.forward
        best = torch.argmax(iou[:, 1:], dim=1) + 1
        rows = torch.arange(masks.shape[0], device=masks.device)
        sam = torch.cat([masks[:, :1], masks[rows, best].unsqueeze(1)], dim=1)  # (B, 2, h, w)
        sam_iou = torch.cat([iou[:, :1], iou[rows, best].unsqueeze(1)], dim=1)  # (B, 2)
        low = torch.cat([sam + hq_masks, hq_masks.expand(-1, 2, -1, -1)], dim=1)  # (B, 4, h, w)
        scores = torch.cat([sam_iou, sam_iou], dim=1)
        return self._postprocess(low, orig_im_size), scores, low


def _check_hq(model: SamHQ, what: str) -> None:
    if not isinstance(model, SamHQ):
        raise ValueError(
            f"{what} expects an HQ-SAM model (samkit.build_sam_hq), got {type(model).__name__}; "
            "SAM 1 and MobileSAM models export with samkit.export.sam.export_sam_onnx"
        )


def export_hq_encoder(model: SamHQ, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export the image encoder with its early feature (outputs `image_embeddings`,
    `interm_embeddings`; module docstring).

    Raises:
        ValueError: not an HQ-SAM model, or an opset outside 14..20.
    """
    _check_opset(opset)
    _check_hq(model, "export_hq_encoder")
    model = _float32_copy(model)
    s = model.image_encoder.img_size
    path = Path(path)
    with torch.no_grad():
        _export(
            SamHQOnnxEncoder(model),
            (torch.randn(1, 3, s, s),),
            path,
            ["image"],
            ["image_embeddings", INTERM_INPUT],
            None,
            opset,
        )
    _add_metadata(path, _metadata(model, component="encoder", vit_dim=model.mask_decoder.vit_dim))
    return path


def export_hq_decoder(model: SamHQ, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export prompt encoder + HQ mask decoder + postprocessing (module docstring).

    Raises:
        ValueError: not an HQ-SAM model, or an opset outside 14..20.
    """
    _check_opset(opset)
    _check_hq(model, "export_hq_decoder")
    model = _float32_copy(model)
    # 2 prompts and 2 mask inputs, as the SAM 1 decoder: no batch-1 shortcut in the graph
    base = decoder_example_inputs(model, num_prompts=2, num_mask_inputs=2)
    _, h, w = model.image_embedding_shape
    g = torch.Generator().manual_seed(1)
    interm = torch.randn(1, 1, h, w, model.mask_decoder.vit_dim, generator=g)
    inputs = {"image_embeddings": base.pop("image_embeddings"), INTERM_INPUT: interm, **base}
    path = Path(path)
    _export(
        SamHQOnnxDecoder(model),
        tuple(inputs.values()),
        path,
        list(inputs),
        ["masks", "iou_predictions", "low_res_masks"],
        {**DECODER_DYNAMIC_AXES, INTERM_INPUT: {0: "num_interm"}},
        opset,
    )
    meta = _metadata(
        model,
        component="decoder",
        return_single_mask=False,
        vit_dim=model.mask_decoder.vit_dim,
        output_index={f"{int(m)}{int(h)}": i for (m, h), i in OUTPUT_INDEX.items()},
    )
    _add_metadata(path, meta)
    return path


def export_sam_hq_onnx(
    model: SamHQ,
    out_dir: str | os.PathLike,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
    encoder: bool = True,
) -> dict[str, Path]:
    """Write `out_dir/encoder.onnx` (unless `encoder=False`) and `out_dir/decoder.onnx` of an
    HQ-SAM model (the registry's `exporter` slot; `samkit export onnx`).

    Returns:
        {"encoder": path, "decoder": path} for the files written.

    Raises:
        ValueError: `return_single_mask` (the HQ decoder's 4 outputs serve every call; the
            official single-mask files fix `multimask_output` and `hq_token_only` instead), not
            an HQ-SAM model, or an opset outside 14..20.
    """
    if return_single_mask:
        raise ValueError(
            "HQ-SAM decoders are exported with all 4 outputs (single / multimask x SAM+HQ / HQ "
            "only), which serve every predict call: export without --return-single-mask"
        )
    _check_hq(model, "export_sam_hq_onnx")
    out = Path(out_dir)
    paths = {}
    if encoder:
        paths["encoder"] = export_hq_encoder(model, out / ENCODER_FILE, opset)
    paths["decoder"] = export_hq_decoder(model, out / DECODER_FILE, opset)
    return paths
