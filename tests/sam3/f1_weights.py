"""Sub-state-dicts of the sam3_tiny fixture checkpoint for the F1 module tests (read once)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from tests.conftest import FIXTURES

FX = FIXTURES / "sam3_tiny"


@lru_cache(maxsize=1)
def checkpoint() -> dict[str, Tensor]:
    return torch.load(FX / "sam3_tiny.pt", map_location="cpu", weights_only=True)["model"]


def sub_state(prefix: str) -> dict[str, Tensor]:
    """Entries under `prefix` (e.g. 'detector.backbone.language_backbone.'), prefix removed."""
    return {k[len(prefix) :]: v for k, v in checkpoint().items() if k.startswith(prefix)}
