"""The EfficientTAM video predictor: the shared `Sam2VideoPredictor` on an EfficientTAM model."""

from __future__ import annotations

import os

import torch

from samkit.build.efficienttam import EfficientTamConfigLike, build_efficienttam
from samkit.video.build import video_predictor_for
from samkit.video.predictor import Sam2VideoPredictor


def build_efficienttam_video_predictor(
    variant_or_config: EfficientTamConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    fill_hole_area: int = 8,
    non_overlap_masks: bool = False,
    clear_non_cond_mem_around_input: bool = False,
    add_all_frames_to_correct_as_cond: bool = True,
) -> Sam2VideoPredictor:
    """Build an EfficientTAM model (as `build_efficienttam`, with the official video settings:
    dynamic multimask and binarised click masks for the memory) and its video predictor.

    Args:
        variant_or_config, checkpoint, device, dtype: as for `build_efficienttam`; the
            checkpoint must hold the memory tensors (every official EfficientTAM file does).
            Name the `_1` / `_2` variants: their pooled cross-attention is not in the tensors.
        fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond: as for `samkit.video.build.build_sam2_video_predictor`
            (False for the last one is the official default, for parity with its numbers).

    Raises:
        ValueError: a checkpoint without the memory modules, or any `build_efficienttam` error.
    """
    model = build_efficienttam(
        variant_or_config, checkpoint, device=device, dtype=dtype, apply_postprocessing=True
    )
    return video_predictor_for(
        model,
        checkpoint,
        "EfficientTAM",
        dtype=dtype,
        fill_hole_area=fill_hole_area,
        non_overlap_masks=non_overlap_masks,
        clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
        add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
    )
