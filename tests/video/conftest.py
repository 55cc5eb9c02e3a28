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


def manifest() -> dict:
    return json.loads((VIDEO / "manifest.json").read_text())


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


def small_predictor(image_size: int = 128, **kwargs):
    """A randomly initialised fixture-sized model at a small input size (fast tests)."""
    from samkit.configs.sam2 import sam2_config_from_official
    from samkit.video.build import build_sam2_video_predictor

    cfg = json.loads(CONFIG.read_text())
    cfg["model"]["image_size"] = image_size
    torch.manual_seed(0)
    kwargs.setdefault("fill_hole_area", 0)
    return build_sam2_video_predictor(sam2_config_from_official(cfg), **kwargs)


def random_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """n smooth-ish random HxWx3 uint8 frames (a moving gradient plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        base = ((xx + 2 * t) % w) * (255 / w)
        img = np.stack([base, yy * (255 / h), 255 - base], -1) + rng.normal(0, 8, (h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="session")
def small():
    return small_predictor()
