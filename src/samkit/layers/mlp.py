"""Multi-layer perceptrons (official state-dict layouts)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from samkit.layers.fused_linear import linear_act


class MLPBlock(nn.Module):
    """Two linear layers with an activation: keys `lin1`, `lin2` (SAM 1 ViT, two-way transformer)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(linear_act(x, self.lin1, self.act))


class MLP(nn.Module):
    """`num_layers` linear layers (keys `layers.{i}`), activation between them.

    Used for the hypernetworks, the IoU head and object-score head (ReLU), and SAM 2's Hiera
    blocks (GELU).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim, *h], [*h, output_dim])
        )
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = linear_act(x, layer, self.act) if i < self.num_layers - 1 else layer(x)
        return F.sigmoid(x) if self.sigmoid_output else x
