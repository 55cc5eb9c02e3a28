"""Hyper-parameters of a fine-tuning run (`TrainConfig`), saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samkit.train.losses import LossWeights

SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of a fine-tuning run (all of them are saved with every checkpoint)."""

    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_accum: int = 1
    images_per_step: int = 2
    prompts_per_image: int = 8
    box_prob: float = 0.5
    correction_iters: int = 0
    grad_clip: float = 1.0
    bf16: bool = False
    seed: int = 0
    log_every: int = 10
    save_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_clicks: int = 5
    stop_after: int | None = None
    progress: bool = True
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("grad_accum", "images_per_step", "prompts_per_image", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.box_prob <= 1.0:
            raise ValueError(f"box_prob must be in [0, 1], got {self.box_prob}")
        if self.correction_iters < 0 or self.warmup_steps < 0:
            raise ValueError("correction_iters and warmup_steps must be >= 0")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
