"""A tiny SAM 3 video setup for tests of the session machinery (bounded memory, live frames):
a random 224-pixel `Sam3Tracker` (16x16 tokens) and a stand-in detector whose features are a
fixed random projection of the frame and whose detections are fixed boxes. The numbers mean
nothing; the tracker, loop, clicks and passes are samkit's real code."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from samkit.build.sam3_video import sam3_tracker_from_sizes
from samkit.video.sam3.detect import FrameDetections
from samkit.video.sam3.predictor import Sam3VideoPredictor, Sam3VideoSettings

SIZE = 224
GRID = SIZE // 14
D = 64

# new detections only without tracks; no hotstart removal: objects live for the whole video
SETTINGS = dict(new_det_thresh=0.99, hotstart_unmatch_thresh=10**6, hotstart_dup_thresh=10**6)


class StandInDetector:
    """`FrameDetector`'s interface: features from the frame, two fixed box detections."""

    image_size = SIZE

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.proj = [torch.randn(c, 3, generator=g) for c in (D // 8, D // 4, D)]
        self.pos = torch.randn(1, D, GRID, GRID, generator=g) * 0.1
        low = 4 * GRID
        masks = -5 * torch.ones(2, low, low)
        masks[0, 8:30, 10:40] = 5.0
        masks[1, 36:60, 20:50] = 5.0
        self.masks = masks
        self.scores = torch.tensor([0.75, 0.72])
        self.calls = 0

    def tracker_features(self, frame: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.calls += 1
        x = frame.float()[None]
        fpn = []
        for w, side in zip(self.proj, (4 * GRID, 2 * GRID, GRID)):
            pooled = F.adaptive_avg_pool2d(x, side)
            fpn.append(torch.tanh(torch.einsum("oc,bchw->bohw", w, pooled) * 3))
        return fpn, self.pos

    def detect(self, frame, text, prompt, allow_new_detections=True) -> FrameDetections:
        fpn, pos = self.tracker_features(frame)
        k = 2 if allow_new_detections else 0
        scores = self.scores[:k]
        q = torch.zeros(16)
        return FrameDetections(
            q,
            torch.zeros(1),
            torch.zeros(16, 4),
            torch.zeros(16, dtype=torch.bool),
            scores,
            torch.zeros(k, 4),
            self.masks[:k],
            fpn,
            pos,
        )


def predictor(**settings) -> Sam3VideoPredictor:
    torch.manual_seed(0)
    tracker = sam3_tracker_from_sizes(1, 64, 1, d_model=D, mem_dim=16, image_size=SIZE).eval()
    st = Sam3VideoSettings(**{**SETTINGS, **settings})
    return Sam3VideoPredictor(None, tracker, st, detector=StandInDetector())


def frames(n: int, seed: int = 0) -> list[Image.Image]:
    """n random 48x64 RGB frames (a moving blob on noise; every third frame inverted)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        a = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        a[10 + t % 20 : 30 + t % 20, 20:44] += 150
        out.append(Image.fromarray(255 - a if t % 3 == 0 else a))
    return out
