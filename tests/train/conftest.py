"""Small models for the training tests: the tiny architectures of tests/families.py with seeded,
non-trivial random weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.families import FAMILIES


def _perturbed(model: nn.Module) -> nn.Module:
    # non-trivial weights everywhere (fresh init zeroes pos_embed / rel_pos)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture
def tiny_sam() -> nn.Module:
    return _perturbed(FAMILIES["sam1"].tiny_model(seed=0))


@pytest.fixture
def tiny_sam2() -> nn.Module:
    return _perturbed(FAMILIES["sam2"].tiny_model(seed=0))
