"""Build the SAM 3 video predictor from an official `sam3.pt` checkpoint.

`build_sam3_video_predictor` has the official name and `checkpoint_path` keyword
(`sam3.model_builder.build_sam3_video_predictor`, sam3 0.1.4); the checkpoint loads unchanged:
`detector.*` into the detector (`build_sam3_image_model`), `tracker.*` into the interactive heads
and the video tracker (`samkit.build.sam3_video.build_sam3_tracker`), the file read once for
both. The official heuristics are the defaults; keyword arguments override them by their
official names (`score_threshold_detection`, `det_nms_thresh`, `new_det_thresh`,
`assoc_iou_thresh`, `trk_assoc_iou_thresh`, `fill_hole_area`, `hotstart_delay`, ... :
`Sam3VideoSettings`).
samkit adds `dtype` (as `build_sam3_image_model(dtype=...)`): bfloat16 runs the detector in
bfloat16 and the tracker's memory modules in bfloat16 with its decoder under autocast
(`samkit.build.sam3_video.tracker_to_dtype`); outputs and postprocessing stay float32.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from samkit.build.sam3 import build_sam3_image_model
from samkit.build.sam3_video import build_sam3_tracker, tracker_to_dtype
from samkit.checkpoint import read_state_dict
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings


def build_sam3_video_predictor(
    checkpoint_path: str | os.PathLike,
    bpe_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    dtype: torch.dtype | None = None,
    **settings: Any,
) -> Sam3VideoPredictor:
    """The SAM 3 video predictor (official request API) on an official checkpoint.

    Args:
        dtype: float32 (default), `torch.bfloat16` or `torch.float16` (see the module doc).

    Raises:
        ValueError: no checkpoint, a checkpoint without the tracker's tensors, an unknown
            setting name, a threshold out of its range (`Sam3VideoSettings`), or another
            dtype.
    """
    if checkpoint_path is None:
        raise ValueError("build_sam3_video_predictor needs checkpoint_path (an official sam3.pt)")
    known = {f.name for f in dataclasses.fields(Sam3VideoSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown SAM 3 video settings {unknown}; known: {sorted(known)}")
    video_settings = Sam3VideoSettings(**settings)  # thresholds checked before the file is read
    state = read_state_dict(checkpoint_path)
    model = build_sam3_image_model(
        bpe_path=bpe_path,
        device=device,
        checkpoint_path=checkpoint_path,
        enable_inst_interactivity=True,
        dtype=dtype,
        checkpoint_state=state,
    )
    tracker = build_sam3_tracker(state, device=device)
    tracker = tracker_to_dtype(tracker, dtype)
    return Sam3VideoPredictor(model, tracker, video_settings)
