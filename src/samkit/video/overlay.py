"""Overlay video: frames with coloured masks, object ids and prompts, encoded with PyAV.

`render_overlay` draws one frame; `Mp4Writer` encodes frames to an MP4 (H.264, yuv420p when the
size is even, else yuv444p so that the size is kept exactly) through a temporary file in the same
folder, renamed on `close()`: an interrupted run leaves no partial video.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from samkit.io import overlay
from samkit.io.atomic import default_file_mode, temporary_sibling
from samkit.io.masks import davis_palette


def object_colour(obj_id: int) -> tuple[int, int, int]:
    """The DAVIS palette colour of an object id (ids above 255 reuse the palette)."""
    r, g, b = davis_palette()[1 + (int(obj_id) - 1) % 255]
    return int(r), int(g), int(b)


def render_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    points: Sequence[tuple[int, float, float, int]] = (),
    boxes: Sequence[tuple[int, float, float, float, float]] = (),
    alpha: float = 0.5,
) -> np.ndarray:
    """One overlay frame (drawn by `samkit.io.overlay.render_overlay`).

    Args:
        rgb: HxWx3 uint8 frame.
        labels: HxW uint8 object-id map (0 = background).
        points: prompts on this frame as (obj_id, x, y, label) in pixels; label 1 is drawn as a
            filled dot, 0 as a ring, both in the object's colour with a white / black rim.
        boxes: (obj_id, x0, y0, x1, y1) in pixels.
        alpha: mask opacity.

    Returns:
        HxWx3 uint8: masks blended in their object colours with a 1-pixel outline, each object's
        id written at its mask's centre, prompts on top.

    Raises:
        ValueError: the frame and the id map differ in size.
    """
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"frame {rgb.shape[:2]} and labels {labels.shape} differ in size")
    ids = [int(i) for i in np.unique(labels) if i]
    im = overlay.render_overlay(
        rgb,
        [labels == i for i in ids],
        [object_colour(i) for i in ids],
        alpha=alpha,
        names=[str(i) for i in ids],
        points=[(x, y, object_colour(oid)) for oid, x, y, _ in points],
        labels=[lab for *_, lab in points],
        boxes=[(x0, y0, x1, y1, object_colour(oid)) for oid, x0, y0, x1, y1 in boxes],
    )
    return np.asarray(im)


class Mp4Writer:
    """Encode HxWx3 uint8 frames to an MP4 file, atomically (see the module docstring).

    Use as a context manager: the file appears under `path` when the block ends normally and
    nothing is left when it raises (including KeyboardInterrupt).

    Args:
        path: the .mp4 to write.
        width, height: frame size in pixels.
        fps: frames per second (a float or Fraction).
        crf: H.264 quality (lower is better; 18 is visually lossless for most content).
    """

    def __init__(
        self, path: str | os.PathLike, width: int, height: int, fps: float = 24.0, crf: int = 20
    ):
        from samkit.video.frames.pyav import import_av

        av = import_av()
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)  # removed by remove_stale_temporaries
        self.frames = 0
        try:
            self._container = av.open(str(self._tmp), "w", format="mp4")
            rate = Fraction(fps).limit_denominator(1001)
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width, self._stream.height = self.width, self.height
            even = self.width % 2 == 0 and self.height % 2 == 0
            self._stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
            if codec == "libx264":
                self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        """Append one HxWx3 uint8 frame."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"frame {self.frames}: expected a {self.height}x{self.width}x3 uint8 array, got "
                f"{rgb.dtype} {rgb.shape}"
            )
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it to `path`."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.chmod(self._tmp, default_file_mode())  # the user's umask, as for open(path, 'w')
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        with contextlib.suppress(Exception):  # a half-written container may fail to close
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
