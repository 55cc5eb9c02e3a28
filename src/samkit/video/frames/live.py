"""Live frame sources: frames pushed by a camera loop (`LiveFrames`) or pulled from an iterator.

Both keep only the raw RGB of their last `max(cache_frames, 1)` frames (plus the preprocessed
LRU cache of `VideoFrames`); asking for an older frame raises a `ValueError`. Import them from
here or from `samkit.video.frames.folder` / `samkit.video`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from samkit.video.frames.folder import VideoFrames, check_frame_array


class LiveFrames(VideoFrames):
    """Frames pushed one at a time (a camera loop): `idx = src.append(frame)`.

    `len(src)` is the number of frames appended so far. Only the last `max(cache_frames, 1)`
    frames are held; older ones raise a `ValueError`. Call `close()` when no frame will follow.

    Args:
        image_size: model input side S.
        cache_frames: frames held (raw and preprocessed).
        video_height, video_width: the frame size, if known before the first frame; every
            appended frame must have it.
    """

    is_live = True

    def __init__(
        self,
        image_size: int = 1024,
        *,
        cache_frames: int = 8,
        video_height: int | None = None,
        video_width: int | None = None,
    ) -> None:
        super().__init__(image_size, cache_frames)
        if (video_height is None) != (video_width is None):
            raise ValueError("give both video_height and video_width, or neither")
        if video_height is not None:
            if int(video_height) <= 0 or int(video_width) <= 0:
                raise ValueError(
                    f"video_height / video_width must be positive, got {video_height}x{video_width}"
                )
            self._set_size(int(video_height), int(video_width), "the given size")
        self._raw: OrderedDict[int, np.ndarray] = OrderedDict()
        self._count = 0
        self.closed = False

    def __len__(self) -> int:
        return self._count

    def append(self, frame: np.ndarray | Image.Image) -> int:
        """Add the next frame (HxWx3 uint8 RGB array or PIL image); returns its frame index."""
        with self._lock:
            if self.closed:
                raise ValueError("append: this LiveFrames was closed")
            what = f"frame {self._count}"
            arr = check_frame_array(frame, what)
            self._set_size(arr.shape[0], arr.shape[1], what)
            idx = self._count
            self._raw[idx] = arr
            while len(self._raw) > max(self.cache_frames, 1):
                self._raw.popitem(last=False)
            self._count += 1
            return idx

    def close(self) -> None:
        """Mark the end of the stream (no more `append`)."""
        self.closed = True

    def _load(self, idx: int) -> np.ndarray:
        arr = self._raw.get(idx)
        if arr is None:
            raise ValueError(
                f"frame {idx} is no longer held: a live source keeps only its last "
                f"{max(self.cache_frames, 1)} frames (frames 0..{self._count - 1} arrived)"
            )
        return arr


class IteratorFrames(LiveFrames):
    """Frames pulled from an iterator as they are requested (live input).

    `len(src)` is the number of frames pulled so far; asking for a later frame pulls up to it,
    and a `FrameIndexError` (a `ValueError`) says the iterator ended first. The first frame is
    pulled at open (for the video size).
    """

    def __init__(self, frames: Iterable[Any], image_size: int = 1024, cache_frames: int = 8):
        super().__init__(image_size, cache_frames=cache_frames)
        self._it = iter(frames)
        if not self._pull():
            raise ValueError("video: the iterator yielded no frame")

    def _pull(self) -> bool:
        if self.closed:
            return False
        try:
            frame = next(self._it)
        except StopIteration:
            self.closed = True
            return False
        self.append(frame)
        self.closed = False
        return True

    def append(self, frame: np.ndarray | Image.Image) -> int:
        was, self.closed = self.closed, False  # append is internal here: the iterator feeds it
        try:
            return super().append(frame)
        finally:
            self.closed = was

    def _check_index(self, idx: int) -> int:
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            with self._lock:
                while int(idx) >= self._count and self._pull():
                    pass
        return super()._check_index(idx)
