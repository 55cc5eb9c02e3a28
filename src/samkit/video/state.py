"""The inference state of `Sam2VideoPredictor`: a dict with the official keys.

User code reads `state["num_frames"]`, `state["video_height"]`, `state["video_width"]` and
`state["obj_ids"]`. The rest is internal. What is kept, and for how long:

- frames: the frame source (`samkit.video.frames.folder.VideoFrames`) decodes lazily and keeps a few
  preprocessed frames; image features of the last `FEATURE_CACHE_FRAMES` frames are cached
  here (repeated clicks on a frame and the memory encoder reuse them).
- per object and prompted frame: the prompts and that frame's output (memory features in
  bfloat16, low-res mask logits, object pointer, object score) for as long as the prompt exists.
- per object and tracked frame: the same output, but only while the frame is within
  `memory_window(model)` frames (15 for the official models) of the last frame tracked; farther
  frames keep only the fact that they were tracked (and in which direction), because no frame
  tracked next can attend to them. A later call that starts tracking or adds a correction more
  than that far away sees no memory of the dropped frames (the official predictor keeps every
  frame's output and grows by about 0.8 MB per frame and object).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

# image features (one frame's encoder output) kept for repeated work on recent frames
FEATURE_CACHE_FRAMES = 2


def memory_window(model: Any) -> int:
    """Frames on either side of the current one whose outputs a tracked frame may use."""
    stride = max(1, int(model.memory_temporal_stride_for_eval))
    return max(model.num_maskmem * stride, model.max_obj_ptrs_in_encoder - 1)


def new_state(
    frames: Any, device: torch.device, offload_video_to_cpu: bool, offload_state_to_cpu: bool
) -> dict[str, Any]:
    """An empty state over a frame source (official `init_state` keys and layout)."""
    return {
        "images": frames,
        "num_frames": len(frames),
        "is_live": bool(getattr(frames, "is_live", False)),
        "offload_video_to_cpu": offload_video_to_cpu,
        "offload_state_to_cpu": offload_state_to_cpu,
        "video_height": int(frames.video_height) if len(frames) else None,
        "video_width": int(frames.video_width) if len(frames) else None,
        "device": device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": OrderedDict(),
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "removed_obj_ids": set(),
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def refresh_frames(state: dict[str, Any]) -> None:
    """Update `num_frames` (and the size on the first frame) from a live source."""
    frames = state["images"]
    state["num_frames"] = len(frames)
    if state["video_height"] is None and len(frames):
        state["video_height"] = int(frames.video_height)
        state["video_width"] = int(frames.video_width)


def known_obj_idx(state: dict[str, Any], obj_id: Any) -> int | None:
    """Model-side index of a client object id, or None for an id not seen yet (nothing changes).

    Raises:
        ValueError: the id is not hashable (use an int or a str), or it was removed with
            `remove_object` (until `reset_state`).
    """
    try:
        hash(obj_id)
    except TypeError:
        raise ValueError(
            f"object id must be hashable (an int or a str), got {type(obj_id).__name__}"
        ) from None
    idx = state["obj_id_to_idx"].get(obj_id)
    if idx is None and obj_id in state["removed_obj_ids"]:
        raise ValueError(
            f"object id {obj_id!r} was removed with remove_object; use a new object id "
            "(or call reset_state to start over)"
        )
    return idx


def obj_idx(state: dict[str, Any], obj_id: Any, create: bool) -> int:
    """Model-side index of a client object id, creating its storage when `create`.

    Raises:
        ValueError: as `known_obj_idx`, or the id is unknown and `create` is False.
    """
    idx = known_obj_idx(state, obj_id)
    if idx is not None:
        return idx
    if not create:
        raise ValueError(f"unknown object id {obj_id!r}; known object ids: {state['obj_ids']}")
    idx = len(state["obj_id_to_idx"])
    state["obj_id_to_idx"][obj_id] = idx
    state["obj_idx_to_id"][idx] = obj_id
    state["obj_ids"] = list(state["obj_id_to_idx"])
    empty_object(state, idx)
    return idx


def empty_object(state: dict[str, Any], idx: int) -> None:
    """Give object `idx` empty prompts, outputs and tracked marks (a new object's storage)."""
    state["point_inputs_per_obj"][idx] = {}
    state["mask_inputs_per_obj"][idx] = {}
    state["output_dict_per_obj"][idx] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    state["temp_output_dict_per_obj"][idx] = {
        "cond_frame_outputs": {},
        "non_cond_frame_outputs": {},
    }
    state["frames_tracked_per_obj"][idx] = {}


def has_conditioning(state: dict[str, Any], idx: int) -> bool:
    """Whether object `idx` has a conditioning (prompted) frame, stored or not yet propagated."""
    stored = state["output_dict_per_obj"][idx]["cond_frame_outputs"]
    return bool(stored) or bool(state["temp_output_dict_per_obj"][idx]["cond_frame_outputs"])


def prune_outputs(state: dict[str, Any], frame_idx: int, window: int) -> None:
    """Drop non-conditioning outputs more than `window` frames from `frame_idx`."""
    for out in state["output_dict_per_obj"].values():
        non_cond = out["non_cond_frame_outputs"]
        for t in [t for t in non_cond if abs(t - frame_idx) > window]:
            del non_cond[t]


def state_nbytes(state: dict[str, Any]) -> int:
    """Bytes of the distinct tensors the state holds (outputs, prompts, cached features)."""
    seen: set[int] = set()
    total = 0

    def visit(x: Any) -> None:
        nonlocal total
        if isinstance(x, torch.Tensor):
            key = x.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += x.untyped_storage().nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    for k, v in state.items():
        if k != "images":
            visit(v)
    return total


def frame_features(model: Any, state: dict[str, Any], frame_idx: int, batch: int) -> dict[str, Any]:
    """A frame's image features through the cache of the last `FEATURE_CACHE_FRAMES` frames.

    Args:
        model: the `Sam2Video` (its `forward_image`, `dtype`, `num_feature_levels`).
        batch: B, the objects tracked together (the features are expanded, not copied).

    Returns:
        {"image_embed": BxCxHxW stride-16 float32 features, "image_pos": its BxCxHxW encoding,
        "high_res_feats": [Bx(C/8)x4Hx4W, Bx(C/4)x2Hx2W]}.
    """
    cache = state["cached_features"]
    entry = cache.get(frame_idx)
    if entry is None:
        image = state["images"][frame_idx].to(state["device"]).float().unsqueeze(0)
        out = model.forward_image(image.to(model.dtype))
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        n = model.num_feature_levels
        entry = {
            "image_embed": fpn[-1].float(),
            "image_pos": pos[-1].float(),
            "high_res_feats": [f.float() for f in fpn[-n:-1]],
        }
        cache[frame_idx] = entry
        while len(cache) > FEATURE_CACHE_FRAMES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(frame_idx)
    if batch == 1:
        return entry
    return {
        "image_embed": entry["image_embed"].expand(batch, -1, -1, -1),
        "image_pos": entry["image_pos"].expand(batch, -1, -1, -1),
        "high_res_feats": [f.expand(batch, -1, -1, -1) for f in entry["high_res_feats"]],
    }
