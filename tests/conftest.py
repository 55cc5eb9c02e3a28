"""Shared test paths and fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
IMAGES = SHARED / "images"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("samkit progress")
    group.addoption(
        "--progress-after",
        type=float,
        default=10.0,
        help="name a test still running after this many seconds, and its duration (0: off; "
        "default 10)",
    )
    group.addoption(
        "--progress-every",
        type=float,
        default=60.0,
        help="repeat the running-test line every this many seconds (default 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    after = config.getoption("--progress-after")
    if after and after > 0 and not hasattr(config, "workerinput"):  # not in an xdist worker
        from tests.progress import Progress

        every = max(1.0, config.getoption("--progress-every"))
        config.pluginmanager.register(Progress(config, after, every), "samkit-progress")


def load_rgb(name: str) -> np.ndarray:
    """An image of ../shared/images (or a fixture PNG path) as HxWx3 uint8 RGB."""
    path = Path(name) if Path(name).is_absolute() else IMAGES / name
    return np.array(Image.open(path).convert("RGB"))


def manifest(model_dir: str) -> dict:
    return json.loads((FIXTURES / model_dir / "manifest.json").read_text())


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> None:
    # The fixtures were recorded with 2 intra-op threads.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def sam1_tiny():
    from samkit import build_sam

    d = FIXTURES / "sam1_tiny"
    return build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth")


@pytest.fixture(scope="session")
def sam1_shapes():
    from samkit import build_sam

    d = FIXTURES / "sam1_shapes"
    return build_sam(d / "config.json", checkpoint=d / "sam1_shapes.pth")
