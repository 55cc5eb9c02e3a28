"""`open_video`: the frame source for any kind of video input (folder, file, arrays, iterator).

It picks the `VideoFrames` subclass: `FolderFrames` / `ArrayFrames` (`samkit.video.frames.folder`),
`FileFrames` (`samkit.video.frames.pyav`, PyAV), `IteratorFrames` (`samkit.video.frames.live`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samkit.video.frames.folder import ArrayFrames, FolderFrames, VideoFrames


def open_video(video: Any, image_size: int = 1024, *, cache_frames: int = 8) -> VideoFrames:
    """A `VideoFrames` for `video`.

    Args:
        video: one of
            - a folder of frames named `<index>.jpg` (.jpeg / .png too), sorted by index;
            - a video file (.mp4, .mov, .webm, .avi, .mkv, ...) or its bytes, decoded with PyAV
              (`pip install samkit[video]`);
            - a sequence of HxWx3 uint8 RGB arrays or PIL images, or a TxHxWx3 uint8 array;
            - an iterator yielding such frames (live input: frames are pulled as requested);
            - a `VideoFrames` (returned as is).
        image_size: model input side S.
        cache_frames: preprocessed frames kept in the LRU cache.

    Raises:
        ValueError: naming the path or argument: no such path, an empty folder, a single image
            file (.jpg, .png, ...), a file that is not a decodable video, frames of different
            sizes, arrays that are not HxWx3 uint8.
    """
    if isinstance(video, VideoFrames):
        if video.image_size != int(image_size):
            raise ValueError(
                f"video: this VideoFrames prepares {video.image_size}-pixel inputs but the model "
                f"needs {image_size}"
            )
        return video
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if path.is_dir():
            return FolderFrames(path, image_size, cache_frames)
        if path.is_file():
            from samkit.video.frames.pyav import FileFrames

            _refuse_still_image(path)
            return FileFrames(path, image_size, cache_frames)
        raise ValueError(f"video: {path}: no such file or folder")
    if isinstance(video, (bytes, bytearray, memoryview)):
        from samkit.video.frames.pyav import FileFrames

        return FileFrames(bytes(video), image_size, cache_frames)
    if isinstance(video, (Sequence, np.ndarray)):
        return ArrayFrames(video, image_size, cache_frames)
    if isinstance(video, (Iterator, Iterable)):
        from samkit.video.frames.live import IteratorFrames

        return IteratorFrames(video, image_size, cache_frames)
    raise ValueError(
        "video: expected a folder of frames, a video file path, a sequence or iterator of HxWx3 "
        f"uint8 arrays / PIL images, got {type(video).__name__}"
    )


def _refuse_still_image(path: Path) -> None:
    """ValueError for a single image file given as a video (PyAV would decode one frame of it
    and report the file damaged); animated GIFs stay videos."""
    from samkit.io.images import IMAGE_SUFFIXES

    if path.suffix.lower() in IMAGE_SUFFIXES and path.suffix.lower() != ".gif":
        raise ValueError(
            f"video: {path} is a single image, not a video: pass a video file (.mp4, .mov, "
            ".webm, ...) or a folder of frames named <index>.jpg (0.jpg, 1.jpg, ...); to "
            "segment one image use `samkit segment`"
        )
