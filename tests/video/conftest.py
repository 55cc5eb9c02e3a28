"""Fixtures for the video tests: the fixture model's predictor and the fixture frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FIXTURES

VIDEO = FIXTURES / "sam2_video"
CONFIG = FIXTURES / "sam2_tiny" / "config.json"
CKPT = FIXTURES / "sam2_tiny" / "sam2_tiny.pt"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def manifest() -> dict:
    return json.loads((VIDEO / "manifest.json").read_text())


class ArrayFrames:
    """A minimal frame source over HxWx3 uint8 arrays (official loader numerics), used until
    `samkit.video.frames` is available; `live=True` makes it appendable."""

    def __init__(self, arrays: list[np.ndarray], image_size: int = 1024, live: bool = False):
        self.arrays = list(arrays)
        self.image_size = image_size
        self.is_live = live
        self.video_height, self.video_width = (
            self.arrays[0].shape[:2] if self.arrays else (None, None)
        )

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, idx: int) -> torch.Tensor:
        img = Image.fromarray(self.arrays[idx]).resize((self.image_size, self.image_size))
        x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
        return torch.from_numpy(x).permute(2, 0, 1)

    def append(self, frame: np.ndarray) -> int:
        if not self.arrays:
            self.video_height, self.video_width = frame.shape[:2]
        self.arrays.append(np.asarray(frame))
        return len(self.arrays) - 1


def fixture_arrays() -> list[np.ndarray]:
    names = manifest()["frames"]
    return [np.asarray(Image.open(VIDEO / "frames" / n).convert("RGB")) for n in names]


@pytest.fixture(scope="session")
def frames_np() -> list[np.ndarray]:
    return fixture_arrays()


@pytest.fixture(scope="session")
def predictor():
    from samkit import build_sam2_video_predictor

    settings = manifest()["predictor_settings"]
    return build_sam2_video_predictor(
        CONFIG,
        CKPT,
        fill_hole_area=settings["fill_hole_area"],
        non_overlap_masks=settings["non_overlap_masks"],
        clear_non_cond_mem_around_input=settings["clear_non_cond_mem_around_input"],
        add_all_frames_to_correct_as_cond=settings["add_all_frames_to_correct_as_cond"],
    )
