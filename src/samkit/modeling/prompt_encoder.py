"""Prompt encoder (SAM 1 and SAM 2): points, boxes and low-res masks -> sparse and dense embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from samkit.layers import LayerNorm2d, PositionEmbeddingRandom


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Point labels: 1 foreground, 0 background, -1 padding (not a point), 2 / 3 top-left /
    bottom-right box corner (as in the official ONNX decoder and SAM 2).
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # background, foreground, 2 box corners
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the image embedding grid: 1xCxHxW."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        points = points + 0.5  # to the pixel centre
        if pad:
            padding_point = torch.zeros((points.shape[0], 1, 2), device=points.device)
            padding_label = -torch.ones((labels.shape[0], 1), device=labels.device)
            points = torch.cat([points, padding_point], dim=1)
            labels = torch.cat([labels, padding_label.to(labels.dtype)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        weight_dtype = self.not_a_point_embed.weight.dtype
        emb = emb.to(weight_dtype)
        emb = torch.where(labels == -1, self.not_a_point_embed.weight.expand_as(emb), emb)
        for i, table in enumerate(self.point_embeddings):
            emb = torch.where(labels == i, emb + table.weight, emb)
        return emb

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        emb = emb.to(self.point_embeddings[2].weight.dtype)
        corners = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return emb + corners  # (B, 2, C)

    def _get_batch_size(
        self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None, masks: Tensor | None
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Embed prompts.

        Args:
            points: BxNx2 coordinates (x, y) in the model input frame and BxN labels.
            boxes: Bx4 boxes (x0, y0, x1, y1) in the model input frame.
            masks: Bx1xHmxWm low-res mask logits (Hm = 4 * embedding height).

        Returns:
            BxTxC sparse embeddings and BxCxHxW dense embeddings.
        """
        bs = self._get_batch_size(points, boxes, masks)
        weight = self.no_mask_embed.weight
        sparse = torch.empty((bs, 0, self.embed_dim), device=weight.device, dtype=weight.dtype)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks.to(weight.dtype))
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
