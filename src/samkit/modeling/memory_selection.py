"""Which past frames a SAM 2 frame attends to (official `_prepare_memory_conditioned_features`).

A tracked frame attends to the memories of the conditioning frames (those with prompts; the
`max_cond_frames_in_attn` closest when limited) and of the `num_maskmem - 1` frames before it
(after it when tracking in reverse; every `memory_temporal_stride_for_eval`-th frame beyond
the previous one), and to the object pointers of the conditioning frames (only those not in
the future with `only_obj_ptrs_in_the_past_for_eval`) and of up to `max_obj_ptrs - 1`
previous frames.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from samkit.modeling.video_memory import FrameOutput, ObjectMemory


class _MemoryModel(Protocol):
    num_maskmem: int
    max_cond_frames_in_attn: int
    memory_temporal_stride_for_eval: int
    use_obj_ptrs_in_encoder: bool
    max_obj_ptrs_in_encoder: int
    only_obj_ptrs_in_the_past_for_eval: bool
    use_signed_tpos_enc_to_obj_ptrs: bool


Outputs = dict[int, FrameOutput]


def select_closest_cond_frames(
    frame_idx: int, cond_outputs: Outputs, max_cond_frame_num: int
) -> tuple[Outputs, Outputs]:
    """(selected, unselected) conditioning outputs: all when `max_cond_frame_num` is -1 or
    not exceeded, else the closest before, the closest at/after, then the nearest others."""
    if max_cond_frame_num == -1 or len(cond_outputs) <= max_cond_frame_num:
        return cond_outputs, {}
    if max_cond_frame_num < 2:
        raise ValueError("max_cond_frames_in_attn must be -1 or at least 2")
    selected: Outputs = {}
    before = max((t for t in cond_outputs if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond_outputs[before]
    after = min((t for t in cond_outputs if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond_outputs[after]
    remain = max_cond_frame_num - len(selected)
    rest = sorted((t for t in cond_outputs if t not in selected), key=lambda t: abs(t - frame_idx))
    selected.update((t, cond_outputs[t]) for t in rest[:remain])
    unselected = {t: v for t, v in cond_outputs.items() if t not in selected}
    return selected, unselected


def past_memory_frames(
    frame_idx: int, num_maskmem: int, stride: int, reverse: bool
) -> list[tuple[int, int]]:
    """(t_pos, frame index) of the non-conditioning memory slots, t_pos = 1..num_maskmem-1."""
    slots = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        slots.append((t_pos, prev))
    return slots


def select_memories(
    model: _MemoryModel,
    frame_idx: int,
    memory: ObjectMemory,
    num_frames: int,
    reverse: bool,
) -> tuple[list[tuple[int, Tensor, Tensor]], list[tuple[int, Tensor]], int]:
    """Memories and pointers for a non-initial frame.

    Returns:
        memories: (t_pos, maskmem_features, maskmem_pos_enc) in attention order;
        pointers: (signed or absolute temporal offset, obj_ptr);
        max_ptrs: min(num_frames, max_obj_ptrs_in_encoder), the pointer window.

    Raises:
        ValueError: no conditioning frame in `memory`.
    """
    cond = memory.cond_frame_outputs
    non_cond = memory.non_cond_frame_outputs
    if not cond:
        raise ValueError(f"frame {frame_idx}: no prompted (conditioning) frame to track from")
    selected, unselected = select_closest_cond_frames(
        frame_idx, cond, model.max_cond_frames_in_attn
    )
    prevs: list[tuple[int, FrameOutput | None]] = [(0, out) for out in selected.values()]
    for t_pos, t in past_memory_frames(
        frame_idx, model.num_maskmem, model.memory_temporal_stride_for_eval, reverse
    ):
        out = non_cond.get(t)
        if out is None:
            out = unselected.get(t)
        prevs.append((t_pos, out))
    memories = [
        (t_pos, out.maskmem_features, out.maskmem_pos_enc)
        for t_pos, out in prevs
        if out is not None and out.maskmem_features is not None
    ]
    pointers: list[tuple[int, Tensor]] = []
    max_ptrs = min(num_frames, model.max_obj_ptrs_in_encoder)
    if model.use_obj_ptrs_in_encoder:
        sign = -1 if reverse else 1
        if model.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = {
                t: o for t, o in selected.items() if (t >= frame_idx if reverse else t <= frame_idx)
            }
        else:
            ptr_cond = selected
        for t, out in ptr_cond.items():
            off = (
                (frame_idx - t) * sign
                if model.use_signed_tpos_enc_to_obj_ptrs
                else abs(frame_idx - t)
            )
            pointers.append((off, out.obj_ptr))
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            out = non_cond.get(t, unselected.get(t))
            if out is not None:
                pointers.append((t_diff, out.obj_ptr))
    return memories, pointers, max_ptrs
