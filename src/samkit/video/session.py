"""The inference state of a video tracker: `InferenceSession` (data only; the tracker computes).

What `init_state` returns and every predictor call takes. User code reads the official keys
`state["num_frames"]`, `state["video_height"]`, `state["video_width"]` and `state["obj_ids"]`
(or the same-named attributes); the rest is typed fields. What is kept, and for how long:

- frames: the frame source (`samkit.video.frames.folder.VideoFrames`) decodes lazily and keeps a
  few preprocessed frames; image features of the last `FEATURE_CACHE_FRAMES` frames are cached
  here (repeated clicks on a frame and the memory encoder reuse them).
- per object and prompted frame: the prompts and that frame's output (memory features in
  bfloat16, low-res mask logits, object pointer, object score) for as long as the prompt exists.
- per object and tracked frame: the same output, but only while the frame is within
  `memory_window(model)` frames (15 for the official models) of the last frame tracked; farther
  frames keep only the fact that they were tracked (and in which direction), because no frame
  tracked next can attend to them. A later call that starts tracking or adds a correction more
  than that far away sees no memory of the dropped frames (the official predictor keeps every
  frame's output and grows by about 0.8 MB per frame and object).

The per-object parts (`ObjectState`, `samkit.modeling.video_memory`) hold no SAM 2 specifics,
so another family's tracker can keep its objects in the same session.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import torch
from torch import Tensor

from samkit.modeling.memory_keys import MemoryKeyCache
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory

# image features (one frame's encoder output) kept for repeated work on recent frames
FEATURE_CACHE_FRAMES = 2

# the official state keys user code reads (`state["num_frames"]`, ...)
DOCUMENTED_KEYS = ("num_frames", "video_height", "video_width", "obj_ids")


class _MemoryModel(Protocol):
    num_maskmem: int
    memory_temporal_stride_for_eval: int
    max_obj_ptrs_in_encoder: int


def memory_window(model: _MemoryModel) -> int:
    """Frames on either side of the current one whose outputs a tracked frame may use."""
    stride = max(1, int(model.memory_temporal_stride_for_eval))
    return max(model.num_maskmem * stride, model.max_obj_ptrs_in_encoder - 1)


@dataclass(eq=False)
class ObjectState:
    """One tracked object: its prompts, outputs and tracked frames.

    Attributes:
        obj_id: the client's object id (hashable: an int or a str).
        point_inputs: clicks by frame index (1xNx2 model-input pixels).
        mask_inputs: mask prompts by frame index (1x1xSxS float 0/1).
        memory: stored outputs (official `output_dict_per_obj[idx]`).
        pending: outputs of prompts added since the last propagation, not yet in `memory`
            (official `temp_output_dict_per_obj[idx]`).
        frames_tracked: frame index -> whether it was tracked in reverse.
    """

    obj_id: Hashable
    point_inputs: dict[int, Clicks] = field(default_factory=dict)
    mask_inputs: dict[int, Tensor] = field(default_factory=dict)
    memory: ObjectMemory = field(default_factory=ObjectMemory)
    pending: ObjectMemory = field(default_factory=ObjectMemory)
    frames_tracked: dict[int, bool] = field(default_factory=dict)

    def has_conditioning(self) -> bool:
        """Whether the object has a conditioning (prompted) frame, stored or pending."""
        return bool(self.memory.cond_frame_outputs) or bool(self.pending.cond_frame_outputs)

    def prompted_frames(self) -> set[int]:
        """Frames with clicks or a mask prompt of this object."""
        return set(self.point_inputs) | set(self.mask_inputs)

    def output(self, frame_idx: int, is_cond: bool) -> FrameOutput | None:
        """A frame's newest output: pending (of that kind), else stored, else None."""
        out = self.pending.frames(is_cond).get(frame_idx)
        return self.memory.get(frame_idx) if out is None else out


@dataclass(eq=False)
class InferenceSession:
    """A video and the objects tracked in it (see the module docstring).

    Attributes:
        frames: the frame source (`VideoFrames` interface: len, [t] -> 3xSxS, video_height...).
        device: where the model runs; storage_device: where outputs are kept (the CPU with
            `offload_state_to_cpu`).
        num_frames, video_height, video_width: the video so far (None sizes for a live source
            before its first frame).
        objects: the objects in model order (index = position; `obj_ids` in the same order).
        removed_obj_ids: ids removed with `remove_object` (refused until `reset`).
        features: image features of recent frames by frame index (least recent first).
        maskmem_pos_enc: 1xC_memxhxw memory position encoding (the same for every frame).
    """

    frames: Any
    device: torch.device
    storage_device: torch.device
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    is_live: bool = False
    num_frames: int = 0
    video_height: int | None = None
    video_width: int | None = None
    objects: list[ObjectState] = field(default_factory=list)
    removed_obj_ids: set[Hashable] = field(default_factory=set)
    features: OrderedDict[int, FrameFeatures] = field(default_factory=OrderedDict)
    maskmem_pos_enc: Tensor | None = None
    _index: dict[Hashable, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # a cache, not state: deliberately not a field (snapshots and comparisons skip it)
        self._key_cache = MemoryKeyCache()

    @property
    def key_cache(self) -> MemoryKeyCache:
        """The memory attention's key parts of the memories the last tracked frame read
        (`samkit.modeling.memory_keys`; 16 MiB per memory and object in float32)."""
        return self._key_cache

    @classmethod
    def open(
        cls,
        frames: Any,
        device: torch.device,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
    ) -> InferenceSession:
        """An empty session over a frame source."""
        s = cls(
            frames,
            device,
            torch.device("cpu") if offload_state_to_cpu else device,
            offload_video_to_cpu,
            offload_state_to_cpu,
            is_live=bool(getattr(frames, "is_live", False)),
        )
        s.refresh()
        return s

    # ------------------------------------------------------------------ official keys
    def __getitem__(self, key: str) -> Any:
        """The documented official keys: `num_frames`, `video_height`, `video_width`, `obj_ids`.

        Raises:
            KeyError: any other key (the rest of the state is typed attributes).
        """
        if key not in DOCUMENTED_KEYS:
            raise KeyError(
                f"{key!r} is not a readable state key; the official keys are "
                f"{', '.join(DOCUMENTED_KEYS)} (the rest of the state is typed attributes of "
                "samkit.video.session.InferenceSession, e.g. state.objects)"
            )
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in DOCUMENTED_KEYS

    # ------------------------------------------------------------------ objects
    @property
    def obj_ids(self) -> list[Hashable]:
        """The client object ids in model order (a new list each time)."""
        return [o.obj_id for o in self.objects]

    def obj_idx(self, obj_id: Any) -> int | None:
        """Model-side index of a client object id, or None for an id not seen yet.

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
        idx = self._index.get(obj_id)
        if idx is None and obj_id in self.removed_obj_ids:
            raise ValueError(
                f"object id {obj_id!r} was removed with remove_object; use a new object id "
                "(or call reset_state to start over)"
            )
        return idx

    def known_obj_idx(self, obj_id: Any) -> int:
        """As `obj_idx` for an id that must exist.

        Raises:
            ValueError: as `obj_idx`, or an unknown id.
        """
        idx = self.obj_idx(obj_id)
        if idx is None:
            raise ValueError(f"unknown object id {obj_id!r}; known object ids: {self.obj_ids}")
        return idx

    def put_object(self, obj: ObjectState) -> int:
        """Add an object (or replace the one of the same id); returns its index."""
        idx = self._index.get(obj.obj_id)
        if idx is None:
            idx = len(self.objects)
            self.objects.append(obj)
            self._index[obj.obj_id] = idx
        else:
            self.objects[idx] = obj
        return idx

    def drop_object(self, idx: int) -> None:
        """Remove object `idx` (the later objects move down one index); its id is refused
        from now on."""
        obj = self.objects.pop(idx)
        self.removed_obj_ids.add(obj.obj_id)
        self._index = {o.obj_id: i for i, o in enumerate(self.objects)}

    def reset(self) -> None:
        """Forget every object, prompt, output and removed id (frames and features stay)."""
        self.objects.clear()
        self._index.clear()
        self.removed_obj_ids.clear()
        self.key_cache.clear()

    # ------------------------------------------------------------------ frames
    def refresh(self) -> None:
        """Update `num_frames` (and the size on the first frame) from a live source."""
        self.num_frames = len(self.frames)
        if self.video_height is None and self.num_frames:
            self.video_height = int(self.frames.video_height)
            self.video_width = int(self.frames.video_width)

    def cached_features(self, frame_idx: int) -> FrameFeatures | None:
        """A frame's cached image features (now the most recently used), or None."""
        entry = self.features.get(frame_idx)
        if entry is not None:
            self.features.move_to_end(frame_idx)
        return entry

    def cache_features(self, frame_idx: int, entry: FrameFeatures) -> None:
        """Keep a frame's features, dropping the least recently used beyond the cache size."""
        self.features[frame_idx] = entry
        while len(self.features) > FEATURE_CACHE_FRAMES:
            self.features.popitem(last=False)

    def prune_tracked(self, frame_idx: int, window: int) -> None:
        """Drop tracked (non-conditioning) outputs more than `window` frames from `frame_idx`."""
        for obj in self.objects:
            non_cond = obj.memory.non_cond_frame_outputs
            for t in [t for t in non_cond if abs(t - frame_idx) > window]:
                del non_cond[t]

    def nbytes(self) -> int:
        """Bytes of the distinct tensors the session holds (outputs, prompts, features, the
        kept memory keys)."""
        seen: set[int] = set()
        total = 0

        def visit(x: Any) -> None:
            nonlocal total
            if isinstance(x, Tensor):
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
            elif hasattr(x, "__dataclass_fields__"):
                for f in fields(x):
                    visit(getattr(x, f.name))

        for f in fields(self):
            if f.name != "frames":
                visit(getattr(self, f.name))
        visit(self.key_cache.tensors())
        return total
