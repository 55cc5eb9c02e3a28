"""SAM 2 video: the video predictor (`Sam2VideoPredictor`, `build_sam2_video_predictor`) and its
state (`InferenceSession`), frame sources (`open_video`, `LiveFrames`), formats, metrics and the
CLI.

Exports are imported lazily, so `import samkit.video` does no work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "open_video": "samkit.video.frames.sources",
    "preprocess_frame": "samkit.video.frames.folder",
    "VideoFrames": "samkit.video.frames.folder",
    "LiveFrames": "samkit.video.frames.live",
    "FrameIndexError": "samkit.video.frames.folder",
    "InferenceSession": "samkit.video.session",
    "Sam2VideoPredictor": "samkit.video.predictor",
    "build_sam2_video_predictor": "samkit.video.build",
}

__all__ = [
    "FrameIndexError",
    "InferenceSession",
    "LiveFrames",
    "Sam2VideoPredictor",
    "VideoFrames",
    "build_sam2_video_predictor",
    "open_video",
    "preprocess_frame",
]

if TYPE_CHECKING:  # pragma: no cover
    from samkit.video.build import build_sam2_video_predictor
    from samkit.video.frames.folder import FrameIndexError, VideoFrames, preprocess_frame
    from samkit.video.frames.live import LiveFrames
    from samkit.video.frames.sources import open_video
    from samkit.video.predictor import Sam2VideoPredictor
    from samkit.video.session import InferenceSession


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samkit.video' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
