"""Fixtures of the video tests."""

from __future__ import annotations

import pytest

from tests.video.clips import encode_video, moving_shapes, write_jpeg_folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    """Frames (as decoded from JPEG), their JPEG folder and a lossless MP4 of the same frames."""
    d = tmp_path_factory.mktemp("clip")
    arrays = write_jpeg_folder(d / "frames", moving_shapes())
    mp4 = encode_video(d / "clip.mp4", arrays)
    return {"arrays": arrays, "folder": d / "frames", "mp4": mp4, "dir": d}
