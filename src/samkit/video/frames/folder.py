"""Video frame sources for the SAM 2 video predictor: lazy, bounded memory, official preprocessing.

`samkit.video.frames.sources.open_video` turns what a user has (a folder of JPEG frames, a video file, a list of arrays or PIL
images, an iterator of frames) into a `VideoFrames`: `len(src)` frames known so far,
`src.video_height` / `src.video_width` in pixels, and `src[idx]`, the 3xSxS float32 model input of
frame `idx`, decoded on demand. `LiveFrames` takes frames pushed one at a time (a camera loop).

Preprocessing equals the official `sam2.utils.misc` loader bit for bit: PIL `convert("RGB")`,
`resize((S, S))` with PIL's default filter, `uint8 / 255` (computed in float64, stored as
float32), then `(x - mean) / std` in float32 with the ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225). Arrays go through the same PIL path.

Memory: each source keeps only an LRU cache of `cache_frames` preprocessed frames (12 MiB each at
S = 1024) plus what it needs to find frames again (file names, or one timestamp per frame of a
video file); it never holds the whole video. Live sources (iterators, `LiveFrames`) keep the raw
RGB of their last `cache_frames` frames (at least 1); older frames are gone and asking for them
raises a `ValueError`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")

_LUT: np.ndarray | None = None


class FrameIndexError(ValueError, IndexError):
    """A frame index outside the video (a `ValueError`; also an `IndexError`, so that iterating
    a `VideoFrames` with the sequence protocol stops at the end)."""


def _normalise_lut() -> np.ndarray:
    """(3, 256) float32: the official `(v / 255 - mean) / std` for every uint8 value and channel.

    Computed with the official operations (float64 division stored as float32, then float32
    subtraction and division), so indexing it is bit-identical to the official loader.
    """
    global _LUT
    if _LUT is None:
        x = torch.from_numpy(np.arange(256, dtype=np.uint8)[:, None] / 255.0).float()
        x = x.expand(256, 3).clone()
        x -= torch.tensor(IMG_MEAN, dtype=torch.float32)
        x /= torch.tensor(IMG_STD, dtype=torch.float32)
        _LUT = np.ascontiguousarray(x.numpy().T)
    return _LUT


def preprocess_frame(image: Image.Image | np.ndarray, image_size: int = 1024) -> torch.Tensor:
    """One frame as the official SAM 2 video loader prepares it.

    Args:
        image: a PIL image (any mode) or an HxWx3 uint8 RGB array.
        image_size: the model's input side S.

    Returns:
        (3, S, S) float32 tensor, normalised with the ImageNet mean / std.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(check_frame_array(image, "frame"))
    rgb = np.asarray(image.convert("RGB").resize((image_size, image_size)))
    lut = _normalise_lut()  # (3, 256)
    out = np.empty((3, image_size, image_size), np.float32)
    for c in range(3):
        np.take(lut[c], rgb[..., c], out=out[c])
    return torch.from_numpy(out)


def check_frame_array(frame: Any, what: str) -> np.ndarray:
    """`frame` as an HxWx3 uint8 array; ValueError naming `what` otherwise (PIL -> RGB array)."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if not isinstance(frame, np.ndarray):
        raise ValueError(
            f"{what}: expected an HxWx3 uint8 array or a PIL image, got {type(frame).__name__}"
        )
    if frame.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (0-255), got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{what}: expected shape HxWx3 (RGB), got {tuple(frame.shape)}")
    return np.ascontiguousarray(frame)


def _frame_size(frame: Any, what: str) -> tuple[int, int]:
    """(height, width) of a PIL image or array, validating arrays."""
    if isinstance(frame, Image.Image):
        return frame.height, frame.width
    arr = check_frame_array(frame, what)
    return arr.shape[0], arr.shape[1]


class VideoFrames:
    """Frames of one video, preprocessed on demand (see the module docstring).

    Attributes:
        video_height, video_width: original frame size in pixels (None only for a `LiveFrames`
            that has no frame yet).
        image_size: model input side S.
        is_live: True when frames may still arrive (`len` can grow).
    """

    is_live: bool = False

    def __init__(self, image_size: int = 1024, cache_frames: int = 8) -> None:
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        if int(cache_frames) < 0:
            raise ValueError(f"cache_frames must be >= 0, got {cache_frames}")
        self.image_size = int(image_size)
        self.cache_frames = int(cache_frames)
        self.video_height: int | None = None
        self.video_width: int | None = None
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._lock = threading.RLock()

    # -- subclasses implement these
    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, idx: int) -> Image.Image | np.ndarray:
        """Frame `idx` (already range-checked) as a PIL image or HxWx3 uint8 array."""
        raise NotImplementedError

    # -- public API
    def frame_name(self, idx: int) -> str:
        """A file stem for frame `idx` (the frame file's own stem for folders, else `%05d`)."""
        return f"{self._check_index(idx):05d}"

    def _check_index(self, idx: int) -> int:
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise ValueError(f"frame index must be an integer, got {type(idx).__name__}")
        idx = int(idx)
        n = len(self)
        if not 0 <= idx < n:
            raise FrameIndexError(f"frame index {idx} is outside the video (frames 0..{n - 1})")
        return idx

    def rgb(self, idx: int) -> np.ndarray:
        """Frame `idx` at its original size as an HxWx3 uint8 RGB array (not cached)."""
        with self._lock:
            frame = self._load(self._check_index(idx))
        return check_frame_array(frame, f"frame {idx}")

    def __getitem__(self, idx: int) -> torch.Tensor:
        """(3, S, S) float32 model input of frame `idx` (CPU). ValueError outside the video.

        The tensor may be the cached one: do not modify it in place.
        """
        with self._lock:
            idx = self._check_index(idx)
            hit = self._cache.get(idx)
            if hit is not None:
                self._cache.move_to_end(idx)
                return hit
            frame = self._load(idx)
        tensor = preprocess_frame(frame, self.image_size)
        if self.cache_frames:
            with self._lock:
                self._cache[idx] = tensor
                while len(self._cache) > self.cache_frames:
                    self._cache.popitem(last=False)
        return tensor

    def __iter__(self) -> Iterator[torch.Tensor]:
        i = 0
        while True:
            try:
                yield self[i]
            except FrameIndexError:
                return
            i += 1

    def _set_size(self, h: int, w: int, what: str) -> None:
        if self.video_height is None:
            self.video_height, self.video_width = int(h), int(w)
        elif (h, w) != (self.video_height, self.video_width):
            raise ValueError(
                f"{what} is {w}x{h} but the video's frames are "
                f"{self.video_width}x{self.video_height}: all frames must have the same size"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} frames, {self.video_width}x{self.video_height}, "
            f"image_size={self.image_size})"
        )


class FolderFrames(VideoFrames):
    """A folder of frame images named `<index>.jpg` (also .jpeg / .png), as the official loader.

    Frames are sorted by the integer value of their stem (`00005.jpg` -> 5); the frame index is
    the position in that order (so YouTube-VOS folders with every 5th frame work). Every file's
    header is read once at open to check that all frames have the same size.
    """

    def __init__(self, folder: str | os.PathLike, image_size: int = 1024, cache_frames: int = 8):
        super().__init__(image_size, cache_frames)
        folder = Path(folder)
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
        if not files:
            raise ValueError(
                f"{folder}: no frame images (looked for {', '.join(FRAME_SUFFIXES)} files named "
                "<index>.jpg)"
            )
        bad = [p.name for p in files if not p.stem.isdigit()]
        if bad:
            raise ValueError(
                f"{folder}: frame files must be named <index>.jpg (e.g. 00000.jpg), found {bad[0]}"
            )
        files.sort(key=lambda p: int(p.stem))
        stems = [int(p.stem) for p in files]
        dup = [files[i].name for i in range(1, len(files)) if stems[i] == stems[i - 1]]
        if dup:
            raise ValueError(f"{folder}: two frame files have the index of {dup[0]}")
        self.folder = folder
        self.paths = files
        for p in files:
            try:
                with Image.open(p) as im:
                    w, h = im.size
            except (OSError, SyntaxError) as e:
                raise ValueError(f"{p}: not a readable image ({e})") from None
            self._set_size(h, w, str(p))

    def __len__(self) -> int:
        return len(self.paths)

    def frame_name(self, idx: int) -> str:
        return self.paths[self._check_index(idx)].stem

    def _load(self, idx: int) -> Image.Image:
        path = self.paths[idx]
        try:
            with Image.open(path) as im:
                im.load()
                return im
        except (OSError, SyntaxError) as e:
            raise ValueError(f"{path}: not a readable image ({e})") from None


class ArrayFrames(VideoFrames):
    """A sequence of HxWx3 uint8 arrays or PIL images (or one TxHxWx3 uint8 array).

    The sequence is referenced, not copied; all frames are checked for type and size at open.
    """

    def __init__(self, frames: Sequence[Any], image_size: int = 1024, cache_frames: int = 8):
        super().__init__(image_size, cache_frames)
        if isinstance(frames, np.ndarray) and frames.ndim != 4:
            raise ValueError(
                f"video: a single array must have shape TxHxWx3 (uint8), got {frames.shape}"
            )
        if len(frames) == 0:
            raise ValueError("video: the sequence of frames is empty")
        for i, f in enumerate(frames):
            h, w = _frame_size(f, f"video frame {i}")
            self._set_size(h, w, f"video frame {i}")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def _load(self, idx: int) -> Image.Image | np.ndarray:
        return self.frames[idx]
