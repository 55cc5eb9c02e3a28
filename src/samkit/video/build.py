"""`build_sam2_video_predictor`: a SAM 2 / 2.1 video predictor from a variant or config."""

from __future__ import annotations

import os

import torch

from samkit.build.sam2 import Sam2ConfigLike, build_sam2
from samkit.modeling.sam2_video import Sam2Video
from samkit.video.predictor import Sam2VideoPredictor


def build_sam2_video_predictor(
    variant_or_config: Sam2ConfigLike = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    fill_hole_area: int = 8,
    non_overlap_masks: bool = False,
    clear_non_cond_mem_around_input: bool = False,
    add_all_frames_to_correct_as_cond: bool = True,
) -> Sam2VideoPredictor:
    """Build the model (as `build_sam2`, with the official video post-processing settings:
    dynamic multimask and binarised click masks for the memory) and its video predictor.

    Args:
        variant_or_config, checkpoint, device: as for `samkit.build_sam2`; the checkpoint
            must hold the memory tensors (every official SAM 2 / 2.1 file does).
        dtype: float32 (default) or bfloat16 / float16: the image encoder, memory attention and
            memory encoder run in that dtype and the mask decoder under autocast (see
            BENCHMARKS.md for the speed and the drift from float32).
        fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input: see
            `Sam2VideoPredictor` (the official passes these as model attributes through
            `hydra_overrides_extra`, e.g. `"++model.fill_hole_area=0"`; here they are keywords).
        add_all_frames_to_correct_as_cond: True (samkit's default): a correction click on a
            tracked frame becomes a conditioning frame and survives the next propagation.
            False: the official default (`"++model.add_all_frames_to_correct_as_cond=true"`
            turns it on there), for parity with the official numbers; the next propagation
            recomputes a corrected frame from memory. See `samkit.video.corrections`.

    Raises:
        ValueError: a checkpoint without the memory modules, or any `build_sam2` error.
    """
    model = build_sam2(
        variant_or_config, checkpoint, device=device, dtype=dtype, apply_postprocessing=True
    )
    return video_predictor_for(
        model,
        checkpoint,
        "SAM 2",
        dtype=dtype,
        fill_hole_area=fill_hole_area,
        non_overlap_masks=non_overlap_masks,
        clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
        add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
    )


def video_predictor_for(
    model: object,
    checkpoint: str | os.PathLike | None,
    family_display: str,
    *,
    dtype: torch.dtype | None,
    fill_hole_area: int,
    non_overlap_masks: bool,
    clear_non_cond_mem_around_input: bool,
    add_all_frames_to_correct_as_cond: bool,
) -> Sam2VideoPredictor:
    """The `Sam2VideoPredictor` of a built SAM 2-style model (SAM 2, EfficientTAM), its memory
    modules cast to a low `dtype`.

    Raises:
        ValueError: the model is image-only (its checkpoint had no memory tensors).
    """
    if not isinstance(model, Sam2Video):
        raise ValueError(
            f"checkpoint {checkpoint} has no video memory tensors (memory_attention.*, "
            f"memory_encoder.*, ...); video tracking needs a full {family_display} checkpoint"
        )
    if dtype is not None and dtype != torch.float32:
        # the memory modules (memory attention dominates tracking on a CPU) run in that dtype;
        # pointers, scores, mask logits and stored memories stay as in float32 tracking
        model.memory_attention.to(dtype)
        model.memory_encoder.to(dtype)
    return Sam2VideoPredictor(
        model,
        fill_hole_area=fill_hole_area,
        non_overlap_masks=non_overlap_masks,
        clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
        add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
    )
