"""Video frames for SAM 3 exactly as the official video model loads them, decoded on demand.

Official `sam3.model.io_utils.load_video_frames_from_image_folder` / `_load_img_as_tensor`
(sam3 0.1.4): PIL RGB -> `torchvision.transforms.functional.resize(pil, (R, R))` (PIL bilinear,
which filters when shrinking; aspect ratio not kept) -> `to_tensor` (/255) -> stored as
**float16**, then normalised in float16 with mean = std = 0.5. The detector casts a frame to its
own dtype when it runs. This differs from the SAM 3 image processor's transform (uint8 resize).

The official loader holds every frame of the clip (6 MB per frame at 1008 px); `Sam3Frames`
reads frames from samkit's frame sources (`samkit.video.frames`: folders, video files, arrays,
iterators and `LiveFrames`) when they are needed and keeps only the last `cache_frames`
transformed ones, so memory does not grow with the video.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from samkit.video.frames.folder import VideoFrames
from samkit.video.frames.sources import open_video

CACHE_FRAMES = 2  # transformed frames kept (a click and a pass reuse the most recent)
RAW_FRAMES = 8  # raw frames an iterator source keeps (a live stream's clickable frames)


def frame_to_tensor(image: Image.Image | np.ndarray, resolution: int = 1008) -> Tensor:
    """One frame: (3, R, R) float16, normalised as the official video loader does.

    Args:
        image: a PIL image (any mode; converted to RGB) or an HxWx3 uint8 RGB array.
        resolution: model input side R (1008 for SAM 3).
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"a frame must be a PIL image, got {type(image).__name__}")
    rgb = image.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
    x = x.to(torch.float32).div(255.0).to(torch.float16)
    return (x - 0.5) / 0.5


class Sam3Frames:
    """A clip's model inputs, transformed on demand (see the module doc).

    Args:
        source: a `samkit.video.frames` source (`open_video` makes one of any input).
        resolution: model input side R.
        cache_frames: transformed frames kept.

    Attributes:
        video_height, video_width: the original frame size in pixels (None for a live source
            without frames yet).
        is_live: frames may still arrive (`len` grows).
    """

    def __init__(
        self, source: VideoFrames, resolution: int = 1008, cache_frames: int = CACHE_FRAMES
    ) -> None:
        self.source = source
        self.resolution = int(resolution)
        self.cache_frames = int(cache_frames)
        self._cache: OrderedDict[int, Tensor] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def video_height(self) -> int | None:
        return self.source.video_height

    @property
    def video_width(self) -> int | None:
        return self.source.video_width

    @property
    def is_live(self) -> bool:
        return bool(getattr(self.source, "is_live", False))

    @property
    def closed(self) -> bool:
        """No frame will arrive any more (always True for a finite source)."""
        return not self.is_live or bool(getattr(self.source, "closed", False))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, idx: int) -> Tensor:
        """(3, R, R) float16 frame `idx` (a cached tensor: do not modify it).

        Raises:
            ValueError: outside the video, or a live frame no longer held.
        """
        with self._lock:
            hit = self._cache.get(idx)
            if hit is not None:
                self._cache.move_to_end(idx)
                return hit
            x = frame_to_tensor(self.source.rgb(idx), self.resolution)
            if self.cache_frames > 0:
                self._cache[idx] = x
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
            return x

    def pull(self) -> bool:
        """Pull the next frame of an iterator source; False when there is none (or the source
        is not pulled but pushed, like `LiveFrames`)."""
        pull = getattr(self.source, "_pull", None)
        return bool(pull()) if pull is not None else False


def load_frames(
    source: Any, resolution: int = 1008, cache_frames: int = CACHE_FRAMES
) -> Sam3Frames:
    """The frames of a `start_session` resource: a frame folder, a video file (PyAV, the
    `[video]` extra), a list of PIL images / HxWx3 uint8 arrays, an iterator of frames (live:
    pulled as needed) or a `VideoFrames` such as `LiveFrames` (live: its owner appends frames).

    Raises:
        ValueError: an empty or unreadable source, frames of different sizes, a `VideoFrames`
            prepared for another resolution (make it with `image_size=1008`).
    """
    if isinstance(source, tuple):
        source = list(source)
    return Sam3Frames(
        open_video(source, resolution, cache_frames=RAW_FRAMES), resolution, cache_frames
    )
