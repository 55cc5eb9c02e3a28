"""ONNX export of a SAM 2-style video model (SAM 2 / 2.1, EfficientTAM, EdgeTAM) as its parts.

`export_sam2_video_onnx(model, out_dir)` writes one graph per learned module of the tracking step
and a manifest, `video.json`, that `samkit.export.ort_video.OnnxSam2VideoPredictor` (EdgeTAM:
`OnnxEdgeTamVideoPredictor`) reads. B is the number of objects run together (the tracker runs 1,
EdgeTAM's consolidation all), C the model width, h = w = S/16 the stride-16 grid (S the input
size, 1024 for the official models), C_mem x mh x mw one memory (h x w; EdgeTAM: 1 x 512
perceiver latents):

| file | inputs | outputs |
|---|---|---|
| `image_encoder.onnx` | `image` 1x3xSxS (normalised) | `image_embed` 1xCxhxw (no `no_mem_embed`), `image_pos` 1xCxhxw, `high_res_feats_0` 1x(C/8)x4hx4w, `high_res_feats_1` 1x(C/4)x2hx2w (SAM 2 only) |
| `mask_decoder.onnx` | `image_embed` BxCxhxw (memory-conditioned), the high-res features, `point_coords` BxNx2 (model pixels, N >= 1), `point_labels` BxN int32, `mask_input` Bx1x4hx4w, `has_mask_input` (1,), `multimask_output` (1,) | `low_res_masks` Bx1x4hx4w, `high_res_masks` Bx1xSxS, `obj_ptr` BxC, `object_score_logits` Bx1 |
| `memory_attention.onnx` | `feat`, `feat_pos` BxCxhxw, `memory`, `memory_pos` BxFxC_memxmhxmw, `memory_tpos_index` (F,) int64, `obj_ptrs` BxPxC, `obj_ptr_pos` (P,) | `conditioned` BxCxhxw |
| `memory_encoder.onnx` | `pix_feat` BxCxhxw, `high_res_masks` Bx1xSxS, `object_score_logits` Bx1, `is_mask_from_pts` (1,) | `maskmem_features`, `maskmem_pos_enc` BxC_memxmhxmw |
| `mask_downsample.onnx` | `mask` Bx1xSxS | `mask_low_res` Bx1x4hx4w |

What each computes, in the torch code's terms: the encoder is `Sam2.forward_image` (levels kept
as the tracker keeps them); the decoder is `Sam2Video.forward_sam_heads` (prompt encoder with
SAM 2's padding point, mask decoder, the multimask choice of `multimask_output` > 0.5 else the
dynamic single-mask choice, -1024 logits where the object score is <= 0, the bilinear SxS
upsampling, `obj_ptr_proj` and the no-object pointer); memory attention is
`condition_on_memory` (the F memory frames' temporal encodings `maskmem_tpos_enc[index]`, the P
object pointers' 1-D sine encoding of `obj_ptr_pos` = offset / (window - 1) through
`obj_ptr_tpos_proj`, split into C / C_mem tokens each); the memory encoder is the
model's own `encode_new_memory` (with EdgeTAM's perceiver), click masks (`is_mask_from_pts` >
0.5) binarised; `mask_downsample` is the conv a mask prompt passes before the decoder
gives its pointer. F, P, N and B are dynamic axes (the memory bank grows to
`num_maskmem` frames and `max_obj_ptrs_in_encoder` pointers).

A model whose torch tracker keeps its memories' keys between frames (SAM 2 / 2.1: see
`samkit.export.video_keys`) also gets `memory_keys.onnx` (run once per stored memory) and
`memory_attention_keys.onnx` (the attention on those keys), listed under the manifest's
`memory_key_files`; without them (EfficientTAM, EdgeTAM, exports of an older samkit) the
predictor runs `memory_attention.onnx`, which every export has.

A model whose memory attention takes another path for one memory frame than for several
(EfficientTAM's pooled cross-attention pools only from two frames on) gets a second graph,
`memory_attention_1.onnx`, traced with one frame: the exporter traces both and keeps the
second only when the two graphs differ. The manifest holds the tracking settings, the two
vectors the host adds itself (`no_mem_embed`, `no_obj_ptr`, float32 as decimal numbers that
round-trip exactly), the pixel normalisation and the model's provenance. Exported from float32
whatever the model's dtype; opset 14..20 (default 17, which onnxruntime's CPU provider runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from samkit import __version__
from samkit.export.sam import DEFAULT_OPSET, _add_metadata, _check_opset, _export
from samkit.export.video_keys import (
    KEYS_FILES,
    VideoKeyedMemoryAttention,
    VideoMemoryKeys,
    example_key_inputs,
    reuses_memory_keys,
)
from samkit.export.video_parts import (
    HIGH_RES_NAMES,
    MaskDownsample,
    VideoImageEncoder,
    VideoMaskDecoder,
    VideoMemoryAttention,
    VideoMemoryEncoder,
    example_inputs,
    traceable_copy,
)
from samkit.io.atomic import atomic_write_text
from samkit.io.provenance import of_model
from samkit.modeling.sam2_video import Sam2Video

MANIFEST_FILE = "video.json"
MANIFEST_FORMAT = 1
FILES = {
    "image_encoder": "image_encoder.onnx",
    "mask_decoder": "mask_decoder.onnx",
    "memory_attention": "memory_attention.onnx",
    "memory_encoder": "memory_encoder.onnx",
    "mask_downsample": "mask_downsample.onnx",
}
SINGLE_FRAME_ATTENTION_FILE = "memory_attention_1.onnx"
DECODER_OUTPUTS = ["low_res_masks", "high_res_masks", "obj_ptr", "object_score_logits"]
ATTENTION_INPUTS = [
    "feat",
    "feat_pos",
    "memory",
    "memory_pos",
    "memory_tpos_index",
    "obj_ptrs",
    "obj_ptr_pos",
]
MEMORY_ENCODER_INPUTS = ["pix_feat", "high_res_masks", "object_score_logits", "is_mask_from_pts"]
MEMORY_ENCODER_OUTPUTS = ["maskmem_features", "maskmem_pos_enc"]
# the tracking settings `Sam2Video.track_step` and `select_memories` read, kept in the manifest
SETTINGS = (
    "image_size",
    "hidden_dim",
    "mem_dim",
    "num_feature_levels",
    "num_maskmem",
    "max_cond_frames_in_attn",
    "memory_temporal_stride_for_eval",
    "use_obj_ptrs_in_encoder",
    "max_obj_ptrs_in_encoder",
    "only_obj_ptrs_in_the_past_for_eval",
    "use_signed_tpos_enc_to_obj_ptrs",
    "multimask_output_in_sam",
    "multimask_min_pt_num",
    "multimask_max_pt_num",
    "multimask_output_for_tracking",
    "use_mask_input_as_output_without_sam",
    "pred_obj_scores",
    "fixed_no_obj_ptr",
    "soft_no_obj_ptr",
)


def _node_types(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def _manifest(model: Sam2Video, files: dict[str, str], opset: int) -> dict[str, Any]:
    settings = {k: getattr(model, k) for k in SETTINGS}
    settings["multimask_output_in_sam"] = bool(model.multimask_output_in_sam)
    no_obj_ptr = getattr(model, "no_obj_ptr", None)
    return {
        "format": MANIFEST_FORMAT,
        "samkit_version": __version__,
        "family": model.family,
        "provenance": dataclasses.asdict(of_model(model)),
        "opset": opset,
        "files": files,
        "high_res_features": list(HIGH_RES_NAMES[: model.num_feature_levels - 1]),
        "settings": settings,
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "mask_input_size": list(model.sam_prompt_encoder.mask_input_size),
        "no_mem_embed": model.no_mem_embed.detach().flatten().tolist(),
        "no_obj_ptr": None if no_obj_ptr is None else no_obj_ptr.detach().flatten().tolist(),
    }


def _export_key_graphs(
    model: Sam2Video,
    out: Path,
    att: dict[str, Tensor],
    att_axes: dict[str, dict[int, str]],
    meta: dict[str, str],
    opset: int,
) -> dict[str, Path]:
    """`memory_keys.onnx` and `memory_attention_keys.onnx` (samkit.export.video_keys)."""
    ex = example_key_inputs(model, att)
    batch = {0: "objects"}
    keys_axes = {"memory": batch, "memory_pos": batch, "memory_keys": {1: "objects"}}
    keyed_axes = {k: v for k, v in att_axes.items() if k != "memory_pos"}
    keyed_axes["memory_keys"] = {1: "objects", 3: "memory_tokens"}
    jobs = [
        ("memory_keys", VideoMemoryKeys(model), ex["keys"], ["memory_keys"], keys_axes),
        (
            "memory_attention_keys",
            VideoKeyedMemoryAttention(model),
            ex["attention"],
            ["conditioned"],
            keyed_axes,
        ),
    ]
    paths = {}
    for part, module, inputs, outputs, axes in jobs:
        path = out / KEYS_FILES[part]
        _export(module, tuple(inputs.values()), path, list(inputs), outputs, axes, opset)
        _add_metadata(path, {**meta, "samkit_component": json.dumps(part)})
        paths[part] = path
    return paths


def export_sam2_video_onnx(
    model: Sam2Video, out_dir: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> dict[str, Path]:
    """Write the video parts and `video.json` to `out_dir` (interface: module docstring).

    Args:
        model: a `Sam2Video` (SAM 2 / 2.1, EfficientTAM, EdgeTAM with its memory modules),
            exported in float32 whatever its dtype.
        out_dir: output folder (created if missing); the manifest is written last, atomically.
        opset: ONNX opset (14..20).

    Returns:
        {part: path} of the written files, "manifest" included.

    Raises:
        ValueError: not a video model, `non_overlap_masks_for_mem_enc` set, or a bad opset.
    """
    _check_opset(opset)
    keyed = isinstance(model, Sam2Video) and reuses_memory_keys(model)
    model = traceable_copy(model)
    out = Path(out_dir)
    ex = example_inputs(model)
    paths: dict[str, Path] = {}
    high = list(HIGH_RES_NAMES[: model.num_feature_levels - 1])
    enc_out = ["image_embed", "image_pos", *high]
    dec, att, menc = ex["decoder"], ex["attention"], ex["memory_encoder"]
    batch = {0: "objects"}
    dec_axes = {k: dict(batch) for k in (*dec, *DECODER_OUTPUTS) if k not in ("has_mask_input",)}
    dec_axes.pop("multimask_output")
    dec_axes["point_coords"] = {0: "objects", 1: "points"}
    dec_axes["point_labels"] = {0: "objects", 1: "points"}
    mem_axes = {0: "objects", 1: "memory_frames"}
    att_axes = {
        "feat": batch,
        "feat_pos": batch,
        "memory": mem_axes,
        "memory_pos": mem_axes,
        "memory_tpos_index": {0: "memory_frames"},
        "obj_ptrs": {0: "objects", 1: "pointers"},
        "obj_ptr_pos": {0: "pointers"},
        "conditioned": batch,
    }
    menc_axes = {k: dict(batch) for k in (*MEMORY_ENCODER_INPUTS[:3], *MEMORY_ENCODER_OUTPUTS)}
    jobs: list[tuple[str, nn.Module, dict[str, Tensor], list[str], dict | None]] = [
        ("image_encoder", VideoImageEncoder(model), {"image": ex["image"]}, enc_out, None),
        ("mask_decoder", VideoMaskDecoder(model), dec, DECODER_OUTPUTS, dec_axes),
        ("memory_attention", VideoMemoryAttention(model), att, ["conditioned"], att_axes),
        ("memory_encoder", VideoMemoryEncoder(model), menc, MEMORY_ENCODER_OUTPUTS, menc_axes),
    ]
    if model.use_obj_ptrs_in_encoder:
        axes = {"mask": batch, "mask_low_res": batch}
        down = ex["mask_downsample"]
        jobs.append(("mask_downsample", MaskDownsample(model), down, ["mask_low_res"], axes))
    meta = {"samkit_version": json.dumps(__version__), "samkit_family": json.dumps(model.family)}
    with torch.no_grad():
        for part, module, inputs, outputs, axes in jobs:
            path = out / FILES[part]
            _export(module, tuple(inputs.values()), path, list(inputs), outputs, axes, opset)
            _add_metadata(path, {**meta, "samkit_component": json.dumps(part)})
            paths[part] = path
        # one memory frame: the same graph unless the attention branches on the frame count
        one = {**att, "memory": att["memory"][:, :1], "memory_pos": att["memory_pos"][:, :1]}
        one["memory_tpos_index"] = att["memory_tpos_index"][:1]
        single = out / SINGLE_FRAME_ATTENTION_FILE
        module = VideoMemoryAttention(model)
        _export(module, tuple(one.values()), single, list(one), ["conditioned"], att_axes, opset)
        if keyed:
            paths.update(_export_key_graphs(model, out, att, att_axes, meta, opset))
    files = {part: p.name for part, p in paths.items() if part not in KEYS_FILES}
    key_files = {part: p.name for part, p in paths.items() if part in KEYS_FILES}
    if _node_types(single) != _node_types(paths["memory_attention"]):
        _add_metadata(single, {**meta, "samkit_component": json.dumps("memory_attention_1")})
        files["memory_attention_1"] = single.name
        paths["memory_attention_1"] = single
    else:
        single.unlink()
    manifest = out / MANIFEST_FILE
    data = _manifest(model, files, opset)
    if key_files:
        data["memory_key_files"] = key_files
    atomic_write_text(manifest, json.dumps(data, indent=1))
    paths["manifest"] = manifest
    return paths


def read_manifest(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of an export folder or its `video.json`.

    Raises:
        FileNotFoundError: no such folder or manifest.
        ValueError: not a samkit video manifest of this format, or a listed part is missing.
    """
    p = Path(path)
    manifest = p / MANIFEST_FILE if p.is_dir() else p
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: no video manifest; export one with samkit.export.sam2_video."
            "export_sam2_video_onnx or `samkit export onnx --video`"
        )
    try:
        m = json.loads(manifest.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{manifest}: not a JSON video manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"{manifest}: manifest format {m.get('format') if isinstance(m, dict) else None!r}, "
            f"expected {MANIFEST_FORMAT} (re-export with this samkit)"
        )
    files = m.get("files", {})
    missing = [k for k in FILES if k != "mask_downsample" and k not in files]
    if missing or any(k not in m.get("settings", {}) for k in SETTINGS):
        raise ValueError(f"{manifest}: incomplete manifest (missing {missing or 'settings'})")
    for part, name in files.items():
        if not (manifest.parent / name).is_file():
            raise ValueError(f"{manifest}: part {part!r} ({name}) is missing from the folder")
    return manifest.parent, m
