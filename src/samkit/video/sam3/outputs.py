"""The cached frame outputs of a SAM 3 video session (official `cached_frame_outputs`).

The official session keeps every output frame's video-resolution masks (a bool per pixel and
object: 0.5 MB per object and frame at 960x540) for the propagations that only fetch, for the
objects a partial propagation does not track, and for the frame a click returns. Here each mask
is stored as its run lengths (`samkit.io.rle.mask_runs`, column-major, int32): a few KB for a
real object. With `max_frames` only the most recently written frames are kept; asking for a
dropped frame raises a ValueError instead of returning it without masks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from samkit.io.rle import mask_runs


def _encode(mask: Tensor) -> np.ndarray:
    return mask_runs(mask.numpy()).astype(np.int32)


def _decode(runs: np.ndarray, hw: tuple[int, int]) -> Tensor:
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.repeat(values, runs.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(hw[1], hw[0]).T))


class OutputCache:
    """frame -> object id -> (H, W) bool mask, stored compressed.

    Args:
        max_frames: keep only this many frames (the most recently written); None keeps all
            (the official behaviour).
        name: the setting `max_frames` comes from, for the message of a bad value.
    """

    def __init__(self, max_frames: int | None = None, name: str = "max_output_frames") -> None:
        if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
            raise ValueError(f"{name} must be None or an int >= 1, got {max_frames!r}")
        self.max_frames = None if max_frames is None else int(max_frames)
        self._frames: OrderedDict[int, dict[int, np.ndarray]] = OrderedDict()
        self._hw: tuple[int, int] | None = None
        self.dropped: set[int] = set()

    def __contains__(self, frame: object) -> bool:
        return frame in self._frames

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._frames))

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: int, masks: dict[int, Tensor]) -> list[int]:
        """Store a frame's masks (replacing its earlier ones); returns the frames dropped to
        stay within `max_frames`."""
        for m in masks.values():
            self._hw = (int(m.shape[0]), int(m.shape[1]))
        self._frames[frame] = {o: _encode(m) for o, m in masks.items()}
        self._frames.move_to_end(frame)
        self.dropped.discard(frame)
        out: list[int] = []
        while self.max_frames is not None and len(self._frames) > self.max_frames:
            f, _ = self._frames.popitem(last=False)
            self.dropped.add(f)
            out.append(f)
        return out

    def get(self, frame: int) -> dict[int, Tensor]:
        """A frame's masks ({} for a frame without outputs).

        Raises:
            ValueError: the frame's outputs were dropped (`max_frames`).
        """
        if frame in self.dropped:
            raise ValueError(
                f"the outputs of frame {frame} are no longer kept (the session keeps the last "
                f"{self.max_frames} output frames: max_output_frames, or live_output_frames on "
                "a live source); propagate over it again from a text prompt, or raise that "
                "setting"
            )
        stored = self._frames.get(frame)
        if not stored or self._hw is None:
            return {}
        return {o: _decode(r, self._hw) for o, r in stored.items()}

    def drop_object(self, obj_id: int) -> None:
        for masks in self._frames.values():
            masks.pop(obj_id, None)

    def nbytes(self) -> int:
        """Bytes of the stored run lengths."""
        return sum(r.nbytes for masks in self._frames.values() for r in masks.values())
