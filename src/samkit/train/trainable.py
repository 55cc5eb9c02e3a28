"""Which parameters a fine-tuning run trains: `configure_trainable` freezes the image encoder
(and the prompt encoder) on request, keeps LoRA / adapter parameters (`samkit.train.lora`)
trainable, and follows a family's fixed recipe where its registry trainer has one (HQ-SAM).
"""

from __future__ import annotations

from torch import nn

from samkit.build.registry import get_family


def configure_trainable(
    model: nn.Module, freeze: str = "none", peft: bool = False
) -> tuple[int, int]:
    """Set `requires_grad` for fine-tuning.

    Args:
        model: a SAM 1 or SAM 2 model, possibly with LoRA / adapters.
        freeze: "none" (train everything), "encoder" (freeze the image encoder) or "encoder+prompt"
            (train the mask decoder only).
        peft: LoRA / adapters are present: the encoder's base weights are frozen whatever
            `freeze` says (and the mask decoder's when it has LoRA too), and the LoRA / adapter
            parameters stay trainable.

    SAM 2's `no_mem_embed` (added to the image embedding) counts as part of the image encoder;
    its decoder's `conv_s0` / `conv_s1` as part of the decoder.

    A family whose registry trainer has `trainable_prefixes` (HQ-SAM: `samkit.train.sam_hq`)
    trains exactly those parameters, as its official recipe does: `freeze` must stay "none" and
    `peft` False.

    Returns:
        (trainable, total) parameter counts.

    Raises:
        ValueError: an unknown `freeze`, or a family with a fixed trainable set asked for another
            `freeze` or for LoRA / adapters (the message says what it trains).
    """
    if freeze not in ("none", "encoder", "encoder+prompt"):
        raise ValueError(f"freeze must be 'none', 'encoder' or 'encoder+prompt', got {freeze!r}")
    fixed = _fixed_trainable(model)
    if fixed is not None:
        return _train_only(model, freeze, peft, *fixed)
    decoder_lora = any(
        ".lora_" in n and n.startswith(("mask_decoder.", "sam_mask_decoder."))
        for n, _ in model.named_parameters()
    )
    for name, p in model.named_parameters():
        part = name.split(".", 1)[0]
        train = True
        if part in ("image_encoder", "no_mem_embed") and (freeze != "none" or peft):
            train = False
        if part in ("prompt_encoder", "sam_prompt_encoder") and freeze == "encoder+prompt":
            train = False
        if part in ("mask_decoder", "sam_mask_decoder") and peft and decoder_lora:
            train = False
        if ".lora_" in name or ".adapter." in name:
            train = True
        p.requires_grad_(train)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def _fixed_trainable(model: nn.Module) -> tuple[tuple[str, ...], str] | None:
    """(`trainable_prefixes`, `trainable_rule`) of the model's registry trainer, or None when
    its family trains what `configure_trainable`'s arguments say (or has no trainer)."""
    name = getattr(model, "family", None)
    try:
        family = get_family(name) if isinstance(name, str) else None
    except ValueError:  # a family this samkit does not know
        family = None
    if family is None or not family.has("trainer"):
        return None
    ops = family.load("trainer")
    prefixes = getattr(ops, "trainable_prefixes", None)
    return (tuple(prefixes), str(ops.trainable_rule)) if prefixes else None


def _train_only(
    model: nn.Module, freeze: str, peft: bool, prefixes: tuple[str, ...], rule: str
) -> tuple[int, int]:
    if peft or any(".lora_" in n or ".adapter." in n for n, _ in model.named_parameters()):
        raise ValueError(
            f"{rule}; LoRA and adapters do not apply: drop --lora-rank / --adapter-dim"
        )
    if freeze != "none":
        raise ValueError(f"{rule}; --freeze {freeze} does not apply: leave --freeze at none")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
