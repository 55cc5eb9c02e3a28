"""`Sam2Tracker`: what `Sam2VideoPredictor` computes on an `InferenceSession`.

The session holds data; the tracker runs the model on it: the image encoder (through the
session's feature cache), one frame of one object (`run_frame`), the memories of frames prompted
since the last propagation (`preflight`), and one tracked frame of every object (`track`). The
predictor's public calls (`samkit.video.predictor`, `corrections`, `objects`) check their input,
then use these.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.memory_keys import MemoryKeyCache
from samkit.modeling.sam2_video import Sam2Video
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory
from samkit.video.outputs import consolidate, fill_holes_in_mask_scores, video_res
from samkit.video.session import InferenceSession, memory_window


class Sam2Tracker:
    """The model and the post-processing settings of a `Sam2VideoPredictor` (see there)."""

    def __init__(
        self,
        model: Sam2Video,
        fill_hole_area: int,
        non_overlap_masks: bool,
        clear_non_cond_mem_around_input: bool,
        add_all_frames_to_correct_as_cond: bool,
    ) -> None:
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        # track objects whose memories are on the same frames in one batch (`batches`): True
        # always, False never (the official order), None (default) off the CPU only: on a CPU
        # the batch was no faster (BENCHMARKS.md, issue 21: batch-3 activations miss the caches)
        self.batch_objects: bool | None = None
        # keep the memories' frame-independent key parts between frames
        # (`samkit.modeling.memory_keys`); False recomputes every key every frame
        self.cache_memory_keys = True

    @property
    def image_size(self) -> int:
        return self.model.image_size

    # ------------------------------------------------------------------ checks
    def check_frame(self, s: InferenceSession, frame_idx: Any) -> None:
        """ValueError unless `frame_idx` is an int frame of the video (a live iterator source
        is read up to it first)."""
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise ValueError(f"frame_idx must be an int, got {type(frame_idx).__name__}")
        s.refresh()
        if s.is_live and frame_idx >= s.num_frames:
            s.frames[frame_idx]  # an iterator source pulls up to the frame (or says it ended)
            s.refresh()
        n = s.num_frames
        if not 0 <= frame_idx < n:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (frames 0..{n - 1})")

    def check_prompts(self, s: InferenceSession) -> None:
        """ValueError unless every object has a conditioning frame (changes nothing)."""
        if not s.objects:
            raise ValueError("no prompts yet: add points, a box or a mask before propagating")
        for obj in s.objects:
            if not obj.has_conditioning():
                raise ValueError(
                    f"object id {obj.obj_id!r} has no prompts; add points, a box "
                    "or a mask for it (or remove it) before propagating"
                )

    # ------------------------------------------------------------------ model
    def features(self, s: InferenceSession, frame_idx: int, batch: int) -> FrameFeatures:
        """A frame's image features for `batch` objects, through the session's cache."""
        entry = s.cached_features(frame_idx)
        if entry is None:
            image = s.frames[frame_idx].to(s.device).float().unsqueeze(0)
            model = self.model
            out = model.forward_image(image.to(model.dtype))
            fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
            n = model.num_feature_levels
            entry = FrameFeatures(fpn[-1].float(), pos[-1].float(), [f.float() for f in fpn[-n:-1]])
            s.cache_features(frame_idx, entry)
        return entry.expand(batch)

    def run_frame(
        self,
        s: InferenceSession,
        memory: ObjectMemory,
        frame_idx: int,
        is_init: bool,
        points: Clicks | None,
        mask: Tensor | None,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits: Tensor | None,
        num_frames: int | None = None,
    ) -> tuple[FrameOutput, Tensor]:
        """One object on one frame: (the output to store, its 1x1xhxw low-res logits).

        Changes nothing in the session but its feature cache."""
        feats = self.features(s, frame_idx, 1)
        if num_frames is None:
            num_frames = s.num_frames
            if s.is_live:
                num_frames = max(num_frames, self.model.max_obj_ptrs_in_encoder)
        out = self.model.track_step(
            frame_idx,
            is_init,
            feats,
            points,
            mask,
            self._with_key_cache(s, memory),
            num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_logits,
        )
        return self._stored(s, out)

    def _stored(self, s: InferenceSession, out: FrameOutput) -> tuple[FrameOutput, Tensor]:
        """A 1-object `track_step` output as stored (holes filled, memory in bfloat16) and its
        1x1xhxw low-res logits."""
        masks = out.pred_masks
        if self.fill_hole_area > 0:
            masks = fill_holes_in_mask_scores(masks, self.fill_hole_area)
        mem = out.maskmem_features
        stored = FrameOutput(
            pred_masks=masks.to(s.storage_device),
            obj_ptr=out.obj_ptr,
            object_score_logits=out.object_score_logits,
            maskmem_features=None if mem is None else self._store_memory(s, mem),
            maskmem_pos_enc=None
            if out.maskmem_pos_enc is None
            else self._pos_constant(s, out.maskmem_pos_enc),
        )
        return stored, masks

    def preflight(self, s: InferenceSession) -> None:
        """Encode the memories of the frames prompted since the last propagation and store
        them (official `propagate_in_video_preflight`); all encoding precedes any change."""
        self.check_prompts(s)
        memories = []
        for obj in s.objects:
            for outs in (obj.pending.cond_frame_outputs, obj.pending.non_cond_frame_outputs):
                for t, out in outs.items():
                    if out.maskmem_features is None:
                        high = F.interpolate(
                            out.pred_masks.to(s.device),
                            size=(self.image_size, self.image_size),
                            mode="bilinear",
                            align_corners=False,
                        )
                        feats = self.features(s, t, 1)
                        mem, pos = self.model.encode_new_memory(
                            feats.image_embed, high, out.object_score_logits, True
                        )
                        memories.append((out, mem, pos))
        for out, mem, pos in memories:
            out.maskmem_features = self._store_memory(s, mem)
            out.maskmem_pos_enc = self._pos_constant(s, pos)
        for obj in s.objects:
            stored, pending = obj.memory, obj.pending
            for is_cond in (False, True):
                for t, out in pending.frames(is_cond).items():
                    stored.frames(is_cond)[t] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_around(stored, t)
            pending.clear()
            for t in stored.cond_frame_outputs:
                stored.non_cond_frame_outputs.pop(t, None)

    def track(self, s: InferenceSession, frame_idx: int, reverse: bool, num_frames: int) -> Tensor:
        """Track all objects on one frame (prompted objects reuse their stored output);
        returns Ox1xHxW video-res logits.

        Objects whose memories sit on the same frames may be tracked in one batch (`batches`,
        `track_objects`): the same numbers as one by one (up to float rounding)."""
        per_obj: list[Tensor | None] = [None] * len(s.objects)
        todo = []
        for i, obj in enumerate(s.objects):
            stored = obj.memory
            cond = stored.cond_frame_outputs.get(frame_idx)
            if cond is not None:
                per_obj[i] = cond.pred_masks.to(s.device)
                if self.clear_non_cond_mem_around_input:
                    self._clear_around(stored, frame_idx)
            else:
                todo.append(i)
        for group in self.batches(s, todo, frame_idx):
            memories = [s.objects[i].memory for i in group]
            outs = self.track_objects(s, memories, frame_idx, reverse, num_frames)
            for i, (out, masks) in zip(group, outs, strict=True):
                s.objects[i].memory.non_cond_frame_outputs[frame_idx] = out
                per_obj[i] = masks
        for obj in s.objects:
            obj.frames_tracked[frame_idx] = reverse
        s.prune_tracked(frame_idx, memory_window(self.model))
        if self.cache_memory_keys:
            s.key_cache.end_frame()
        return video_res(s, self.non_overlap_masks, torch.cat(per_obj, dim=0))

    def batches(self, s: InferenceSession, objs: list[int], frame_idx: int) -> list[list[int]]:
        """Object indices grouped so that each group can be tracked in one batch on a frame.

        Objects are batched when their memories within `memory_window` of the frame (and their
        conditioning frames) are on the same frames, so the memory selection picks the same
        frames for each. One by one with `batch_objects` False (or None on a CPU), or for a
        model with `non_overlap_masks_for_mem_enc` (its memory encoder couples the objects of a
        batch)."""
        batch = self.batch_objects
        if batch is None:
            batch = self.model.device.type != "cpu"
        if not batch or getattr(self.model, "non_overlap_masks_for_mem_enc", False):
            return [[i] for i in objs]
        window = memory_window(self.model)
        groups: dict[tuple, list[int]] = {}
        for i in objs:
            mem = s.objects[i].memory
            key = (
                tuple(
                    sorted(
                        (t, o.maskmem_features is None) for t, o in mem.cond_frame_outputs.items()
                    )
                ),
                tuple(
                    sorted(
                        (t, o.maskmem_features is None)
                        for t, o in mem.non_cond_frame_outputs.items()
                        if abs(t - frame_idx) <= window
                    )
                ),
            )
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def track_objects(
        self,
        s: InferenceSession,
        memories: list[ObjectMemory],
        frame_idx: int,
        reverse: bool,
        num_frames: int,
    ) -> list[tuple[FrameOutput, Tensor]]:
        """Track B objects (one of `batches`) on a frame in one `track_step`: per object (the
        output to store, its 1x1xhxw low-res logits). Changes nothing in the session but its
        feature cache."""
        if len(memories) == 1:
            return [
                self.run_frame(
                    s, memories[0], frame_idx, False, None, None, reverse, True, None, num_frames
                )
            ]
        cache = self._with_key_cache(s, ObjectMemory()).key_cache
        merged = merge_memories(memories, frame_idx, memory_window(self.model), cache)
        out = self.model.track_step(
            frame_idx,
            False,
            self.features(s, frame_idx, len(memories)),
            None,
            None,
            merged,
            num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=True,
        )
        return [self._stored(s, part) for part in split_output(out, len(memories))]

    def frame_masks(self, s: InferenceSession, frame_idx: int, is_cond: bool) -> Tensor:
        """Ox1xHxW video-res logits of every object's newest output on a frame."""
        return video_res(s, self.non_overlap_masks, consolidate(s, frame_idx, is_cond))

    def _with_key_cache(self, s: InferenceSession, memory: ObjectMemory) -> ObjectMemory:
        """The memory (same frames) with the session's key cache, when enabled and the model's
        tracking step is SAM 2's (a subclass that overrides it gets none)."""
        m = type(self.model)
        if (
            not self.cache_memory_keys
            or m.track_step is not Sam2Video.track_step
            or m.condition_on_memory is not Sam2Video.condition_on_memory
        ):
            return memory
        return dataclasses.replace(memory, key_cache=s.key_cache)

    # ------------------------------------------------------------------ storage
    def _store_memory(self, s: InferenceSession, mem: Tensor) -> Tensor:
        # the official predictor stores memories in bfloat16; they are used in float32
        return mem.to(torch.bfloat16).to(s.storage_device)

    def _pos_constant(self, s: InferenceSession, pos: Tensor) -> Tensor:
        if s.maskmem_pos_enc is None:
            s.maskmem_pos_enc = pos[:1].clone()
        return s.maskmem_pos_enc.expand(pos.shape[0], -1, -1, -1)

    def _clear_around(self, stored: ObjectMemory, frame_idx: int) -> None:
        r = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        for t in range(frame_idx - r, frame_idx + r + 1):
            stored.non_cond_frame_outputs.pop(t, None)


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    """Batch of the objects' tensors (None when any is None); one expanded view when they are
    all views of the same constant (the memory position encoding)."""
    if any(p is None for p in parts):
        return None
    first = parts[0]
    same = all(
        p.data_ptr() == first.data_ptr() and p.shape == first.shape and p.stride() == first.stride()
        for p in parts
    )
    if same and first.shape[0] == 1:
        return first.expand(len(parts), *first.shape[1:])
    return torch.cat(parts, dim=0)


def merge_memories(
    memories: list[ObjectMemory],
    frame_idx: int,
    window: int,
    key_cache: MemoryKeyCache | None = None,
) -> ObjectMemory:
    """One `ObjectMemory` of B objects whose frames are the same (`Sam2Tracker.batches`): each
    frame's output holds the B objects' tensors, in order, along the batch (frames farther
    than `window` from `frame_idx` are left out but for conditioning frames). With a
    `key_cache`, each batched memory is registered as its objects' memories."""
    merged = ObjectMemory(key_cache=key_cache)
    for is_cond in (True, False):
        for t in memories[0].frames(is_cond):
            if not is_cond and abs(t - frame_idx) > window:
                continue
            outs = [m.frames(is_cond)[t] for m in memories]
            features = _cat([o.maskmem_features for o in outs])
            if key_cache is not None and features is not None:
                key_cache.register_batch(features, [o.maskmem_features for o in outs])
            merged.frames(is_cond)[t] = FrameOutput(
                pred_masks=torch.cat([o.pred_masks for o in outs]),
                obj_ptr=torch.cat([o.obj_ptr for o in outs]),
                object_score_logits=torch.cat([o.object_score_logits for o in outs]),
                maskmem_features=features,
                maskmem_pos_enc=_cat([o.maskmem_pos_enc for o in outs]),
            )
    return merged


def split_output(out: FrameOutput, batch: int) -> list[FrameOutput]:
    """The B objects' outputs of a batched `track_step`, one `FrameOutput` each (batch 1)."""
    parts = []
    for b in range(batch):

        def row(x: Tensor | None, b: int = b) -> Tensor | None:
            return None if x is None else x[b : b + 1].clone()  # not a view of the batch

        parts.append(
            FrameOutput(
                pred_masks=row(out.pred_masks),
                obj_ptr=row(out.obj_ptr),
                object_score_logits=row(out.object_score_logits),
                maskmem_features=row(out.maskmem_features),
                maskmem_pos_enc=row(out.maskmem_pos_enc),
                pred_masks_high_res=row(out.pred_masks_high_res),
            )
        )
    return parts
