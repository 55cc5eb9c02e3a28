"""Parameter-efficient fine-tuning of the image encoder: LoRA, adapters (and freezing:
`configure_trainable`, `samkit.train.trainable`, re-exported here).

The blocks (`encoder_blocks`) are SAM 1's / HQ-SAM's ViT blocks (`image_encoder.blocks.{i}`),
SAM 2's Hiera or EfficientTAM's ViT blocks (`image_encoder.trunk.blocks.{i}`), or the attention
blocks of MobileSAM's TinyViT (`image_encoder.layers.{i}.blocks.{j}`); each has `attn.qkv`,
`attn.proj` and an MLP (SAM 1 `mlp.lin1/lin2`, SAM 2 `mlp.layers.{0,1}`, TinyViT `mlp.fc1/fc2`). LoRA can also go on the attention projections of the
mask decoder both families share (target `decoder`).

`LoRALinear` is an `nn.Linear` (same `weight` / `bias` keys) with two extra parameters
`lora_A` (rxin, random) and `lora_B` (outxr, zero-initialised), so a fresh LoRA model computes
exactly what the base model does, and `merge_lora` folds ``W + (alpha / r) B A`` back into plain
`nn.Linear` layers whose state dict is an official one.

Adapters (Houlsby-style bottlenecks, in parallel with each encoder block's MLP, zero-initialised
up-projection) are the alternative; they cannot be merged, so they are saved on their own
(`adapter_state_dict`) and attached again with `add_adapters` + `load_state_dict(strict=False)`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from samkit.checkpoint import read_state_dict
from samkit.io.provenance import check_file
from samkit.layers.mlp import MLP, MLPBlock
from samkit.modeling.tiny_vit import TinyViTMlp
from samkit.train.trainable import configure_trainable as configure_trainable

LORA_TARGETS = ("qkv", "proj", "decoder")
DEFAULT_LORA_TARGETS = ("qkv", "proj")
DECODER_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoRALinear(nn.Linear):
    """y = x W^T + b + (alpha / r) x A^T B^T, with B initialised to zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=dev, dtype=dt))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=dev, dtype=dt))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        return out + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merged_weight(self) -> Tensor:
        return self.weight + (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}"


def encoder_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The image encoder's attention blocks as (state-dict name, block), in order: SAM 1's ViT
    (`image_encoder.blocks.{i}`), SAM 2's Hiera and EfficientTAM's ViT
    (`image_encoder.trunk.blocks.{i}`), or the TinyViT of MobileSAM / HQ-SAM vit_tiny (the
    attention stages' `image_encoder.layers.{i}.blocks.{j}`; stage 0 is convolutional). Block
    indices elsewhere in this module count this list.

    Raises:
        ValueError: an encoder of none of these kinds.
    """
    enc = getattr(model, "image_encoder", None)
    for path in ("blocks", "trunk.blocks"):
        owner: object = enc
        for part in path.split("."):
            owner = getattr(owner, part, None)
        if isinstance(owner, nn.ModuleList):
            return [(f"image_encoder.{path}.{i}", b) for i, b in enumerate(owner)]
    layers = getattr(enc, "layers", None)
    if isinstance(layers, nn.ModuleList):
        found = [
            (f"image_encoder.layers.{i}.blocks.{j}", b)
            for i, layer in enumerate(layers)
            for j, b in enumerate(getattr(layer, "blocks", ()))
            if isinstance(getattr(b, "attn", None), nn.Module)
        ]
        if found:
            return found
    raise ValueError(
        "expected a SAM 1 / HQ-SAM model (image_encoder.blocks), a SAM 2 / EfficientTAM model "
        "(image_encoder.trunk.blocks) or a MobileSAM / TinyViT model (image_encoder.layers)"
    )


def _pick(blocks: list[tuple[str, nn.Module]], idx: Iterable[int] | None, what: str) -> list:
    out = []
    for i in range(len(blocks)) if idx is None else idx:
        if not 0 <= i < len(blocks):
            raise ValueError(f"{what} block index {i} out of range (encoder has {len(blocks)})")
        out.append(blocks[i])
    return out


def _mask_decoder(model: nn.Module) -> tuple[nn.Module, str]:
    for name in ("mask_decoder", "sam_mask_decoder"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name), name
    raise ValueError("expected a SAM model with a mask_decoder / sam_mask_decoder")


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float | None = None,
    targets: Iterable[str] = DEFAULT_LORA_TARGETS,
    blocks: Iterable[int] | None = None,
) -> list[str]:
    """Wrap the encoder attention projections (and optionally the decoder's) with LoRA, in place.

    Args:
        model: a SAM 1 or SAM 2 model.
        rank: LoRA rank r.
        alpha: scale numerator (default: rank, i.e. scaling 1).
        targets: which projections: `qkv` and / or `proj` of each encoder block's attention,
            `decoder` for every attention's q / k / v / out projection in the mask decoder.
        blocks: encoder block indices (default: all).

    Returns:
        The names of the wrapped modules.
    """
    targets = tuple(targets)
    bad = [t for t in targets if t not in LORA_TARGETS]
    if bad or not targets:
        raise ValueError(
            f"LoRA targets must be a non-empty subset of {LORA_TARGETS}, got {targets}"
        )
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    alpha = rank if alpha is None else alpha
    enc_targets = [t for t in targets if t != "decoder"]
    chosen = _pick(encoder_blocks(model), blocks, "LoRA") if enc_targets else []
    todo: list[tuple[nn.Module, str, str]] = []
    for name, block in chosen:
        todo += [(block.attn, t, f"{name}.attn.{t}") for t in enc_targets]
    if "decoder" in targets:
        decoder, dec_name = _mask_decoder(model)
        for name, mod in decoder.named_modules():
            for t in DECODER_PROJ:
                if isinstance(getattr(mod, t, None), nn.Linear):
                    todo.append((mod, t, f"{dec_name}.{name}.{t}"))
    for parent, t, name in todo:
        if isinstance(getattr(parent, t), LoRALinear):
            raise ValueError(f"{name} already has LoRA")
    for parent, t, _name in todo:
        setattr(parent, t, LoRALinear(getattr(parent, t), rank, alpha))
    return [name for _, _, name in todo]


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Replace every `LoRALinear` by a plain `nn.Linear` with the merged weight, in place.

    Returns:
        The number of merged layers.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                plain = nn.Linear(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    device=child.weight.device,
                    dtype=child.weight.dtype,
                )
                plain.weight.copy_(child.merged_weight())
                if child.bias is not None:
                    plain.bias.copy_(child.bias)
                plain.weight.requires_grad_(child.weight.requires_grad)
                setattr(parent, name, plain)
                count += 1
    return count


class Adapter(nn.Module):
    """Bottleneck adapter: up(act(down(x))) * scale, with `up` zero-initialised."""

    def __init__(self, dim: int, hidden: int, scale: float = 1.0) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"adapter hidden size must be >= 1, got {hidden}")
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        self.scale = scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x))) * self.scale


class MLPWithAdapter(MLP):
    """A Hiera block's `MLP` (same `layers.{i}` keys) plus a parallel `adapter`."""

    def __init__(self, base: MLP, hidden: int, scale: float = 1.0) -> None:
        nn.Module.__init__(self)
        self.num_layers, self.layers, self.act = base.num_layers, base.layers, base.act
        self.sigmoid_output = base.sigmoid_output
        w = base.layers[0].weight
        self.adapter = Adapter(base.layers[0].in_features, hidden, scale).to(w.device, w.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.adapter(x)


class MLPBlockWithAdapter(MLPBlock):
    """An encoder `MLPBlock` (same `lin1` / `lin2` keys) plus a parallel `adapter`."""

    def __init__(self, base: MLPBlock, hidden: int, scale: float = 1.0) -> None:
        nn.Module.__init__(self)
        self.lin1, self.lin2, self.act = base.lin1, base.lin2, base.act
        w = base.lin1.weight
        self.adapter = Adapter(base.lin1.in_features, hidden, scale).to(w.device, w.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.adapter(x)


class TinyViTMlpWithAdapter(TinyViTMlp):
    """A TinyViT block's MLP (same `norm` / `fc1` / `fc2` keys) plus a parallel `adapter`."""

    def __init__(self, base: TinyViTMlp, hidden: int, scale: float = 1.0) -> None:
        nn.Module.__init__(self)
        self.norm, self.fc1, self.act, self.fc2 = base.norm, base.fc1, base.act, base.fc2
        w = base.fc1.weight
        self.adapter = Adapter(base.fc1.in_features, hidden, scale).to(w.device, w.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.adapter(x)


def add_adapters(
    model: nn.Module, hidden: int, scale: float = 1.0, blocks: Iterable[int] | None = None
) -> list[str]:
    """Add a parallel bottleneck adapter to the MLP of encoder blocks (ViT, Hiera or TinyViT;
    `encoder_blocks` numbers them), in place. Returns the adapters' names."""
    names = []
    for name, block in _pick(encoder_blocks(model), blocks, "adapter"):
        mlp = block.mlp
        if isinstance(mlp, (MLPBlockWithAdapter, MLPWithAdapter, TinyViTMlpWithAdapter)):
            raise ValueError(f"{name}.mlp already has an adapter")
        if isinstance(mlp, MLPBlock):
            block.mlp = MLPBlockWithAdapter(mlp, hidden, scale)
        elif isinstance(mlp, TinyViTMlp):
            block.mlp = TinyViTMlpWithAdapter(mlp, hidden, scale)
        else:
            block.mlp = MLPWithAdapter(mlp, hidden, scale)
        names.append(f"{name}.mlp.adapter")
    return names


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter parameters only (keys `image_encoder[.trunk].blocks.{i}.mlp.adapter.*`)."""
    return {k: v for k, v in model.state_dict().items() if ".adapter." in k}


def infer_adapters(
    state_dict: dict[str, Tensor], model: nn.Module | None = None
) -> tuple[int, list[int]]:
    """(hidden size, block indices) of the adapters in an `adapter_state_dict`; with `model`,
    the indices of `encoder_blocks(model)` (TinyViT's stages number their blocks anew), else
    the `blocks.{i}` of the keys (ViT, Hiera)."""
    if model is not None:
        names = [name for name, _ in encoder_blocks(model)]
        found = {
            i: state_dict[k].shape[0]
            for i, n in enumerate(names)
            if (k := f"{n}.mlp.adapter.down.weight") in state_dict
        }
    else:
        found = {
            int(m.group(1)): v.shape[0]
            for k, v in state_dict.items()
            if (m := re.search(r"blocks\.(\d+)\.mlp\.adapter\.down\.weight$", k))
        }
    if not found:
        raise ValueError("no adapter weights (keys *.mlp.adapter.down.weight) in the state dict")
    blocks = sorted(found)
    return found[blocks[0]], blocks


def load_adapters(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Attach the adapters of an `adapters.safetensors` file (a fine-tuning run's) to `model`.

    Args:
        model: the base model the adapters were trained on (without adapters).
        path: the adapters file.

    Returns:
        The names of the added adapters.

    Raises:
        ValueError: the file was made for another model (the message names both), holds no
            adapters, or its tensors do not fit.
    """
    check_file(path, model, "the model")
    sd = read_state_dict(path)
    hidden, blocks = infer_adapters(sd, model)
    names = add_adapters(model, hidden, blocks=blocks)
    try:
        _missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: adapters do not fit the model: {str(e).splitlines()[-1]}"
        ) from None
    if unexpected:
        raise ValueError(f"{path}: unexpected keys {unexpected[:5]}")
    return names
