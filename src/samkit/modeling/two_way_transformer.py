"""Two-way transformer: prompt tokens and image embedding attend to each other (SAM 1 and 2)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from samkit.layers import MLP, Attention, MLPBlock


class KeyProjections(NamedTuple):
    """A two-way block's projections of the image-side tokens (`TwoWayAttentionBlock.project_keys`).

    They depend only on the keys (image) and their positional encoding, so a caller decoding
    several chunks of prompts on one image computes them once and passes them to every chunk.
    """

    t2i_k: Tensor  # (B, HW, C') token->image keys of image + pe
    t2i_v: Tensor  # (B, HW, C') token->image values of the image
    i2t_q: Tensor  # (B, HW, C') image->token queries of image + pe


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token (each with residual + LayerNorm)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        mlp_keys: str = "lin",
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        # same computation; SAM 1 checkpoints name it mlp.lin1/lin2, SAM 2 mlp.layers.0/1
        self.mlp = (
            MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation)
            if mlp_keys == "layers"
            else MLPBlock(embedding_dim, mlp_dim, activation)
        )
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def project_keys(self, keys: Tensor, key_pe: Tensor) -> KeyProjections:
        """The image-side projections of `forward`: keys BxHWxC and key_pe BxHWxC (B may be 1)."""
        k = keys + key_pe  # keys only change at the end of the block: one sum serves both
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return KeyProjections(t2i.k_proj(k), t2i.v_proj(keys), i2t.q_proj(k))

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        query_pe: Tensor,
        key_pe: Tensor,
        key_proj: KeyProjections | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One block: BxNxC queries (tokens), BxHWxC keys (image; B may be 1 for one image
        shared by every prompt) -> updated (queries, keys). `key_proj` is
        `project_keys(keys, key_pe)` when the caller already has it; computed here otherwise."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        proj = self.project_keys(keys, key_pe) if key_proj is None else key_proj
        q = t2i.q_proj(queries + query_pe)
        queries = self.norm2(queries + t2i.attend(q, proj.t2i_k, proj.t2i_v))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        out = i2t.attend(proj.i2t_q, i2t.k_proj(q), i2t.v_proj(queries))
        keys = self.norm4(keys + out)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks and a final token->image attention."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        mlp_keys: str = "lin",
    ) -> None:
        super().__init__()
        if mlp_keys not in ("lin", "layers"):
            raise ValueError(
                f"mlp_keys must be 'lin' (SAM 1) or 'layers' (SAM 2), got {mlp_keys!r}"
            )
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                activation,
                attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                mlp_keys=mlp_keys,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def project_image(self, image_embedding: Tensor, image_pe: Tensor) -> KeyProjections:
        """The first block's image-side projections of a BxCxHxW image embedding and its
        positional encoding (`forward`'s `first_key_proj`)."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)  # (B, HW, C)
        return self.layers[0].project_keys(keys, image_pe.flatten(2).permute(0, 2, 1))

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        point_embedding: Tensor,
        first_key_proj: KeyProjections | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer.

        Args:
            image_embedding: BxCxHxW image embedding (or 1xCxHxW shared by B prompts).
            image_pe: BxCxHxW positional encoding of the image embedding (or 1xCxHxW).
            point_embedding: BxNxC prompt (and output) tokens.
            first_key_proj: `project_image(image_embedding, image_pe)`, when the caller keeps
                it for several chunks of prompts on one image; computed here when None. (Only
                the first block's projections can be shared: later keys depend on the prompts.)

        Returns:
            BxNxC processed tokens and Bx(H*W)xC processed image embedding.
        """
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)  # (B, HW, C)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, keys = point_embedding, image_embedding
        for i, layer in enumerate(self.layers):
            proj = first_key_proj if i == 0 else None
            queries, keys = layer(queries, keys, point_embedding, image_pe, proj)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
