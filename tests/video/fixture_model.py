"""The fixture SAM 2 checkpoint (`sam2_tiny`, random weights) at a small input size.

Unlike `conftest.small_predictor` (random weights at 128 px, whose objects come out absent),
these weights find an object where clicked, so corrections change masks visibly; at 256 px a
frame costs a fraction of the 1024 px fixture sessions.
"""

from __future__ import annotations

import json
from typing import Any

from samkit.configs.sam2 import sam2_config_from_official
from samkit.video.build import build_sam2_video_predictor
from samkit.video.predictor import Sam2VideoPredictor
from tests.video.conftest import CKPT, CONFIG


def fixture_model_predictor(image_size: int = 256, **kwargs: Any) -> Sam2VideoPredictor:
    """`build_sam2_video_predictor` on the fixture checkpoint at `image_size` (fill_hole_area 0
    unless given)."""
    cfg = json.loads(CONFIG.read_text())
    cfg["model"]["image_size"] = image_size
    kwargs.setdefault("fill_hole_area", 0)
    return build_sam2_video_predictor(sam2_config_from_official(cfg), CKPT, **kwargs)
