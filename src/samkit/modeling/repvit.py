"""RepViT (Wang et al. 2023, "RepViT: Revisiting Mobile CNN From ViT Perspective"): EdgeTAM's
image trunk, as timm's `repvit_*` models built with `features_only=True`.

Module names are timm's feature-extractor names (`body.stem.conv1.c`, `body.stem.conv1.bn`,
`body.stages_{i}.downsample.*`, `body.stages_{i}.blocks.{j}.*`; the BatchNorm running statistics
included), so an official EdgeTAM checkpoint's `image_encoder.trunk.*` tensors load unchanged.
Evaluation is timm's unfused evaluation: every convolution is followed by its BatchNorm in
eval mode (no re-parameterisation), so the numbers are timm's own.

Layout (timm `RepVit`): a stem of two stride-2 3x3 convolutions (GELU between) to stage 0's
width, then stages; stage i > 0 starts with a downsample (a block without squeeze-excite, a
stride-2 depthwise conv, a 1x1 conv to the new width, a residual MLP); each stage has `depth`
blocks (depthwise 3x3 + 1x1 "RepVGG" token mixer with identity, squeeze-excite on every other
block starting with the first, residual MLP with `mlp_ratio`). `legacy` is timm's flag for
the token mixer's 1x1 branch (conv + BN, as `repvit_m1`) versus a biased conv and a BN after
the sum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNorm(nn.Sequential):
    """Convolution without bias (`c`) + BatchNorm (`bn`) (timm `ConvNorm`)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(in_dim, out_dim, kernel_size, stride, padding, groups=groups, bias=False)
        )
        self.add_module("bn", nn.BatchNorm2d(out_dim))

    def fused(self) -> nn.Conv2d:
        """One biased convolution equal to conv + BatchNorm in eval mode."""
        return _conv_like(self.c, *_folded(self.c, self.bn))


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) in float32 of `conv` followed by `bn` in eval mode."""
    scale = bn.weight.float() / (bn.running_var.float() + bn.eps).sqrt()
    w = conv.weight.float() * scale[:, None, None, None]
    b = bn.bias.float() - bn.running_mean.float() * scale
    if conv.bias is not None:
        b = b + conv.bias.float() * scale
    return w, b


def _conv_like(conv: nn.Conv2d, w: Tensor, b: Tensor) -> nn.Conv2d:
    """A biased copy of `conv`'s geometry with weight `w` and bias `b` (in conv's dtype)."""
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        groups=conv.groups,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out


class RepVggDw(nn.Module):
    """Token mixer: depthwise kxk conv + depthwise 1x1 branch + identity."""

    def __init__(self, dim: int, kernel_size: int, legacy: bool) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel_size, 1, (kernel_size - 1) // 2, groups=dim)
        self.conv1: nn.Module
        self.bn: nn.Module
        if legacy:
            self.conv1 = ConvNorm(dim, dim, 1, 1, 0, groups=dim)
            self.bn = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(dim, dim, 1, 1, 0, groups=dim)
            self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    def fused(self) -> nn.Conv2d:
        """One depthwise convolution equal to the three branches (and the BatchNorm) in eval
        mode: the 1x1 branch and the identity are added to the kernel's centre."""
        w, b = _folded(self.conv.c, self.conv.bn)
        if isinstance(self.conv1, ConvNorm):
            w1, b1 = _folded(self.conv1.c, self.conv1.bn)
        else:
            w1, b1 = self.conv1.weight.float(), self.conv1.bias.float()
        k = w.shape[-1] // 2
        w = w.clone()
        w[:, :, k, k] += w1[:, :, 0, 0] + 1.0
        b = b + b1
        conv = _conv_like(self.conv.c, w, b)
        if isinstance(self.bn, nn.BatchNorm2d):
            conv = _conv_like(conv, *_folded(conv, self.bn))
        return conv


class SqueezeExcite(nn.Module):
    """Channel gate: mean over HxW, 1x1 conv, ReLU, 1x1 conv, sigmoid (timm `SEModule`)."""

    def __init__(self, dim: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.fc2(nn.functional.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


def se_channels(dim: int, ratio: float = 0.25, divisor: int = 8) -> int:
    """timm `make_divisible(dim * ratio, divisor, round_limit=0)`: the squeeze width."""
    v = dim * ratio
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class RepVitMlp(nn.Module):
    """1x1 ConvNorm to `hidden`, GELU, 1x1 ConvNorm back (no residual here)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden)
        self.act = nn.GELU()
        self.conv2 = ConvNorm(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x)))


class RepViTBlock(nn.Module):
    """Token mixer, optional squeeze-excite, then a residual MLP."""

    def __init__(
        self, dim: int, mlp_ratio: int, kernel_size: int, use_se: bool, legacy: bool
    ) -> None:
        super().__init__()
        self.token_mixer = RepVggDw(dim, kernel_size, legacy)
        self.se: nn.Module = SqueezeExcite(dim, se_channels(dim)) if use_se else nn.Identity()
        self.channel_mixer = RepVitMlp(dim, dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class RepVitStem(nn.Module):
    """Two stride-2 3x3 ConvNorms (to out_dim / 2, then out_dim) with GELU between: stride 4."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_dim, out_dim // 2, 3, 2, 1)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(out_dim // 2, out_dim, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act1(self.conv1(x)))


class RepVitDownsample(nn.Module):
    """Block, stride-2 depthwise ConvNorm, 1x1 ConvNorm to the new width, residual MLP."""

    def __init__(
        self, in_dim: int, out_dim: int, mlp_ratio: int, kernel_size: int, legacy: bool
    ) -> None:
        super().__init__()
        self.pre_block = RepViTBlock(in_dim, mlp_ratio, kernel_size, False, legacy)
        self.spatial_downsample = ConvNorm(
            in_dim, in_dim, kernel_size, 2, (kernel_size - 1) // 2, groups=in_dim
        )
        self.channel_downsample = ConvNorm(in_dim, out_dim, 1, 1)
        self.ffn = RepVitMlp(out_dim, out_dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class RepVitStage(nn.Module):
    """Optional downsample, then `depth` blocks (squeeze-excite on blocks 0, 2, 4, ...)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int,
        mlp_ratio: int,
        kernel_size: int,
        downsample: bool,
        legacy: bool,
    ) -> None:
        super().__init__()
        if not downsample and in_dim != out_dim:
            raise ValueError(f"a stage without downsample keeps its width: {in_dim} != {out_dim}")
        self.downsample: nn.Module = (
            RepVitDownsample(in_dim, out_dim, mlp_ratio, kernel_size, legacy)
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *(
                RepViTBlock(out_dim, mlp_ratio, kernel_size, j % 2 == 0, legacy)
                for j in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class _Body(nn.Module):
    """timm's feature extractor body: `stem`, `stages_0`, `stages_1`, ... as attributes."""

    def __init__(self, stem: RepVitStem, stages: list[RepVitStage]) -> None:
        super().__init__()
        self.stem = stem
        self.num_stages = len(stages)
        for i, stage in enumerate(stages):
            self.add_module(f"stages_{i}", stage)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for i in range(self.num_stages):
            x = getattr(self, f"stages_{i}")(x)
            out.append(x)
        return out


class RepViT(nn.Module):
    """RepViT trunk returning every stage's output (strides 4, 8, 16, 32), finest first.

    Args:
        embed_dims: stage widths (`repvit_m1`: 48, 96, 192, 384).
        depths: blocks per stage (`repvit_m1`: 2, 2, 14, 2).
        mlp_ratio: MLP hidden width / width (2 in every timm RepViT).
        kernel_size: depthwise kernel (3).
        legacy: timm's `legacy` token mixer (True for `repvit_m1`, see the module docstring).
        in_chans: image channels.

    `channel_list` is the widths coarsest first (what `samkit.modeling.neck.FpnNeck` expects).
    """

    def __init__(
        self,
        embed_dims: tuple[int, ...] = (48, 96, 192, 384),
        depths: tuple[int, ...] = (2, 2, 14, 2),
        mlp_ratio: int = 2,
        kernel_size: int = 3,
        legacy: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(embed_dims) != len(depths) or not embed_dims:
            raise ValueError(
                f"RepViT needs one depth per stage width, got widths {embed_dims} and depths "
                f"{depths}"
            )
        stages = []
        in_dim = embed_dims[0]
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            stages.append(RepVitStage(in_dim, dim, depth, mlp_ratio, kernel_size, i > 0, legacy))
            in_dim = dim
        self.body = _Body(RepVitStem(in_chans, embed_dims[0]), stages)
        self.embed_dims = tuple(embed_dims)
        self.channel_list = list(embed_dims[::-1])
        self.fused = False

    @torch.no_grad()
    def fuse_(self) -> RepViT:
        """Fold every BatchNorm into its convolution and each token mixer's three branches into
        one depthwise convolution, in place (timm's `fuse`, for inference only).

        The same function up to float rounding (the folding is computed in float32), about a
        third less trunk time; the module names then differ from the official checkpoint's, so
        fuse after loading and do not save the fused state dict as an EdgeTAM checkpoint.
        """
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (ConvNorm, RepVggDw)):
                    setattr(module, name, child.fused())
        self.fused = True
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        """Bx3xHxW -> [Bx`embed_dims[i]`x(H/2^(i+2))x(W/2^(i+2))] for each stage i.

        In bfloat16 / float16 the input is made channels-last (so are the outputs): oneDNN's
        reduced-precision convolutions ran the 1024 px `repvit_m1` trunk in 0.44 s instead of
        0.66 s (one thread, bfloat16, loaded 2-core CPU); float32 keeps the default layout (it
        was 7 % slower channels-last).
        """
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)
