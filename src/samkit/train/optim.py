"""Optimisation helpers of the training loop: LR schedule, parameter groups, RNG state, init."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn


class WarmupDecay:
    """LR multiplier: linear warm-up from 0, then cosine / linear decay to `min_ratio` (or flat)."""

    def __init__(self, warmup: int, total: int, schedule: str, min_ratio: float) -> None:
        self.warmup, self.total, self.schedule, self.min_ratio = warmup, total, schedule, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * t)) if self.schedule == "cosine" else 1 - t
        return self.min_ratio + (1 - self.min_ratio) * shape


@torch.no_grad()
def init_tied_qk(model: nn.Module, gain: float = 2.0) -> int:
    """Initialise the mask decoder's attention with ``k_proj.weight = gain * q_proj.weight``.

    For training from random weights only. With tied projections the attention logit between a
    prompt token and an image location starts as a scaled dot product of their (shared random
    Fourier) positional encodings, which peaks where the point is; a decoder trained from scratch
    then learns to segment the clicked object in a few hundred steps instead of settling on the
    union of all salient objects (see tests/train/test_learning.py).

    Returns:
        The number of attention layers changed.
    """
    n = 0
    decoder = getattr(model, "mask_decoder", None) or model.sam_mask_decoder  # SAM 1 / SAM 2
    for mod in decoder.transformer.modules():
        q, k = getattr(mod, "q_proj", None), getattr(mod, "k_proj", None)
        if (
            isinstance(q, nn.Linear)
            and isinstance(k, nn.Linear)
            and q.weight.shape == k.weight.shape
        ):
            k.weight.copy_(q.weight * gain)
            n += 1
    return n


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = (
            p.ndim < 2 or name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")) or "token" in name
        )
        (no_decay if skip else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters (everything is frozen)")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
