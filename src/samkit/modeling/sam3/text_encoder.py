"""SAM 3's text encoder: a causal CLIP-style transformer over 32 BPE tokens, resized to d_model.

State-dict names match the official `sam3.model.text_encoder_ve.VETextEncoder`
(`encoder.token_embedding`, `encoder.positional_embedding`, `encoder.transformer.resblocks.{i}
.{ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `encoder.ln_final`,
`encoder.text_projection`, `resizer`), so `detector.backbone.language_backbone.*` loads 1:1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)) under the causal mask, then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, hidden))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, width))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """x: BxLxwidth; attn_mask: LxL additive (0 / -inf above the diagonal)."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask.to(x.dtype))[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """`layers` residual attention blocks (official attribute `resblocks`)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)
        )

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class TextTransformer(nn.Module):
    """Token + learned position embedding, causal transformer, final LayerNorm.

    `text_projection` (width x output_dim) is the official CLIP pooled-output projection; SAM 3
    uses the per-token outputs only, so it is kept for the checkpoint keys but never applied.
    """

    def __init__(
        self,
        context_length: int = 32,
        vocab_size: int = 49408,
        width: int = 1024,
        heads: int = 16,
        layers: int = 24,
        mlp_ratio: float = 4.0,
        output_dim: int = 512,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.width = width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.transformer = Transformer(width, layers, heads, mlp_ratio)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, output_dim))
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)

    def forward(self, token_ids: Tensor) -> Tensor:
        """BxL token ids (L <= context_length) -> BxLxwidth per-token features."""
        n = token_ids.shape[1]
        x = self.token_embedding(token_ids) + self.positional_embedding[:n]
        x = self.transformer(x, self.attn_mask[:n, :n])
        return self.ln_final(x)


class VETextEncoder(nn.Module):
    """The SAM 3 language backbone (official `VETextEncoder` with its default sizes).

    Args:
        d_model: output width after `resizer` (256).
        width, heads, layers: text transformer sizes (official 1024, 16, 24).
        context_length: tokens per prompt (32).
        vocab_size: BPE vocabulary (49408).
    """

    def __init__(
        self,
        d_model: int = 256,
        width: int = 1024,
        heads: int = 16,
        layers: int = 24,
        context_length: int = 32,
        vocab_size: int = 49408,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.encoder = TextTransformer(context_length, vocab_size, width, heads, layers)
        self.resizer = nn.Linear(width, d_model)

    def forward(self, token_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode tokenized prompts (`samkit.text.tokenizer.tokenize`).

        Args:
            token_ids: BxL int64 ids, 0 = padding, L <= context_length.

        Returns:
            (language_mask BxL bool, True at padding; language_features LxBxd_model;
            language_embeds LxBxwidth, the token embeddings before the transformer), sequence
            first like the official encoder.

        Raises:
            ValueError: token_ids is not a 2-D integer tensor of at most context_length
                columns, or holds ids outside the vocabulary.
        """
        if token_ids.ndim != 2 or token_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"token_ids must be a BxL integer tensor, got {tuple(token_ids.shape)} "
                f"{token_ids.dtype}"
            )
        if token_ids.shape[1] > self.context_length:
            raise ValueError(
                f"token_ids has {token_ids.shape[1]} columns; the context is {self.context_length}"
            )
        vocab = self.encoder.vocab_size
        if token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= vocab):
            raise ValueError(f"token ids must lie in [0, {vocab}), got {token_ids.tolist()}")
        token_ids = token_ids.long()
        embeds = self.encoder.token_embedding(token_ids)  # (B, L, width)
        tokens = self.encoder(token_ids)  # (B, L, width)
        features = self.resizer(tokens.transpose(0, 1))  # (L, B, d_model)
        return token_ids == 0, features, embeds.transpose(0, 1)
