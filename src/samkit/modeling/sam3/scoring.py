"""SAM 3 dot-product scoring: how well each object query matches the (pooled) prompt.

The prompt tokens go through a residual MLP with an output LayerNorm, are mean-pooled over the
valid (non-padding) tokens and projected; the queries are projected; the logit is their dot
product over sqrt(d_proj), clamped to [-12, 12].

Reference: `DotProductScoring` in `sam3/model/model_misc.py` (official `sam3` 0.1.4). Keys
`prompt_mlp.layers.{0,1}`, `prompt_mlp.out_norm`, `prompt_proj`, `hs_proj`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from samkit.layers.mlp import MLP


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, P, C) tokens over the positions where the (B, P) padding mask is False."""
    valid = (~mask).to(tokens.dtype)[..., None]
    return (tokens * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


class ResidualMLP(MLP):
    """`MLP` (ReLU) whose output is `out_norm(x + mlp(x))` (keys `layers.{i}`, `out_norm`)."""

    def __init__(self, dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__(dim, hidden_dim, dim, num_layers)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_norm(x + super().forward(x))


class DotProductScoring(nn.Module):
    """Query-vs-prompt logits.

    Args:
        d_model: query / prompt width (256).
        d_proj: projection width (256).
        mlp_hidden: hidden width of the prompt MLP (official 2048).
        clamp_max: logits are clamped to [-clamp_max, clamp_max] (official 12).
    """

    def __init__(
        self, d_model: int = 256, d_proj: int = 256, mlp_hidden: int = 2048, clamp_max: float = 12.0
    ) -> None:
        super().__init__()
        self.prompt_mlp = ResidualMLP(d_model, mlp_hidden, 2)
        self.prompt_proj = nn.Linear(d_model, d_proj)
        self.hs_proj = nn.Linear(d_model, d_proj)
        self.scale = 1.0 / math.sqrt(d_proj)
        self.clamp_max = clamp_max

    def forward(self, hs: Tensor, prompt: Tensor, prompt_mask: Tensor) -> Tensor:
        """Score.

        Args:
            hs: (..., B, Q, C) query features (any leading dims, e.g. decoder layers).
            prompt: (B, P, C) prompt tokens; prompt_mask: (B, P) bool, True = padding.

        Returns:
            (..., B, Q, 1) logits.
        """
        pooled = self.prompt_proj(masked_mean(self.prompt_mlp(prompt), prompt_mask))  # (B, d)
        scores = torch.matmul(self.hs_proj(hs), pooled[..., None]) * self.scale
        return scores.clamp(min=-self.clamp_max, max=self.clamp_max)
