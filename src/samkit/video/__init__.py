"""SAM 2 video tracking: `Sam2VideoPredictor`, `build_sam2_video_predictor` (lazy exports)."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Sam2VideoPredictor": "samkit.video.predictor",
    "build_sam2_video_predictor": "samkit.video.build",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samkit.video' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
