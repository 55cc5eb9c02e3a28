"""Fine-tuning the light families through the shared loop (`samkit.train`): HQ-SAM with the
official trainable set (HQ token, its MLP and the fusion layers; the rest frozen), MobileSAM and
EfficientTAM through LoRA / adapters on their encoders. Each run is short (16 steps of 2 images
x 4 prompts on 64 px synthetic shapes, tiny random-weight models of tests/light/tiny_models.py)
and its loss must fall; the written `model.safetensors` loads with the family's builder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from samkit.build.light import build_mobile_sam, build_sam_hq
from samkit.build.registry import get_family
from samkit.checkpoint import read_state_dict
from samkit.cli import main
from samkit.train.families import family_ops
from samkit.train.loop import TrainConfig, Trainer
from samkit.train.lora import (
    adapter_state_dict,
    add_adapters,
    apply_lora,
    configure_trainable,
    encoder_blocks,
    infer_adapters,
)
from samkit.train.sam_hq import HQ_PARTS, SamHQOps
from samkit.train.synthetic import make_shapes_dataset, write_folder_dataset
from tests.light.tiny_models import (
    tiny_efficienttam,
    tiny_mobile_sam,
    tiny_mobile_sam_config,
    tiny_sam_hq,
)

CFG = {
    "steps": 16,
    "lr": 3e-3,
    "warmup_steps": 2,
    "images_per_step": 2,
    "prompts_per_image": 4,
    "log_every": 1,
    "progress": False,
    "box_prob": 0.3,
}


def _fit(model: nn.Module, out: Path) -> tuple[list[float], dict]:
    torch.set_num_threads(1)
    data = make_shapes_dataset(6, seed=1, size=(64, 64), max_shapes=1)
    summary = Trainer(model, data, TrainConfig(**CFG), out).fit()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in log if "loss" in r], summary


def _falls(losses: list[float]) -> None:
    assert len(losses) == CFG["steps"] and np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


def test_hq_sam_trains_only_its_hq_parts_and_the_loss_falls(tmp_path: Path) -> None:
    model = tiny_sam_hq()
    assert isinstance(family_ops(model), SamHQOps)
    trainable, total = configure_trainable(model, "none")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.split(".")[1] in HQ_PARTS for n in names)
    assert {n.split(".")[1] for n in names} == set(HQ_PARTS)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in names) < total
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in names}
    losses, _ = _fit(model, tmp_path)
    _falls(losses)
    for n, p in model.named_parameters():
        if n in frozen:
            torch.testing.assert_close(p, frozen[n], rtol=0, atol=0)  # bit-for-bit unchanged
    # the run's model.safetensors is an official-layout HQ-SAM checkpoint with the trained parts
    sd = read_state_dict(tmp_path / "model.safetensors")
    loaded = build_sam_hq(checkpoint=tmp_path / "model.safetensors")
    assert list(loaded.state_dict()) == list(model.state_dict())
    torch.testing.assert_close(
        sd["mask_decoder.hf_token.weight"], model.mask_decoder.hf_token.weight
    )


def test_hq_sam_refuses_lora_adapters_and_other_freezing() -> None:
    model = tiny_sam_hq()
    with pytest.raises(ValueError, match=r"only the HQ token.*--freeze encoder does not apply"):
        configure_trainable(model, "encoder")
    with pytest.raises(ValueError, match="LoRA and adapters do not apply"):
        configure_trainable(model, "none", peft=True)
    apply_lora(model, 2)
    with pytest.raises(ValueError, match="LoRA and adapters do not apply"):
        configure_trainable(model, "none")


def test_hq_sam_finetune_and_eval_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`samkit finetune` / `samkit eval` take an HQ-SAM checkpoint; --lora-rank is refused."""
    torch.save(tiny_sam_hq().state_dict(), tmp_path / "hq.pth")
    data = write_folder_dataset(make_shapes_dataset(4, seed=1, size=(64, 64)), tmp_path / "ds")
    run = ["finetune", "--checkpoint", str(tmp_path / "hq.pth"), "--data", str(data)]
    run += ["--steps", "2", "--warmup-steps", "1", "--no-progress"]
    assert main([*run, "--out", str(tmp_path / "ft")]) == 0
    trained = build_sam_hq(checkpoint=tmp_path / "ft" / "model.safetensors")
    assert not torch.equal(
        trained.mask_decoder.hf_token.weight, tiny_sam_hq().mask_decoder.hf_token.weight
    )
    ev = ["eval", "--checkpoint", str(tmp_path / "ft" / "model.safetensors"), "--data", str(data)]
    assert main([*ev, "--out", str(tmp_path / "ev"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["miou_1pt"] >= 0.0
    capsys.readouterr()
    assert main([*run, "--out", str(tmp_path / "lora"), "--lora-rank", "2"]) == 2
    assert "LoRA and adapters do not apply" in capsys.readouterr().err


def test_mobile_sam_lora_run_merges_into_an_official_checkpoint(tmp_path: Path) -> None:
    model = tiny_mobile_sam()
    blocks = encoder_blocks(model)
    assert [n for n, _ in blocks][:2] == [
        "image_encoder.layers.1.blocks.0",
        "image_encoder.layers.1.blocks.1",
    ]
    wrapped = apply_lora(model, rank=2, alpha=4)
    assert len(wrapped) == 2 * len(blocks)
    trainable, total = configure_trainable(model, "none", peft=True)
    assert trainable < total
    losses, summary = _fit(model, tmp_path)
    _falls(losses)
    assert summary["lora_layers_merged"] == len(wrapped)
    # LoRA merged away: the official keys; the 128 px input size (not in TinyViT's tensors)
    # comes from the file's provenance
    loaded = build_mobile_sam(checkpoint=tmp_path / "model.safetensors")
    assert loaded.image_size == 128 and loaded.image_embedding_shape == (32, 8, 8)
    assert build_mobile_sam(tiny_mobile_sam_config(), checkpoint=tmp_path / "model.safetensors")
    assert not any("lora_" in k for k in loaded.state_dict())


def test_mobile_sam_adapters_round_trip_by_block(tmp_path: Path) -> None:
    model = tiny_mobile_sam()
    names = add_adapters(model, hidden=8, blocks=[0, 3])
    assert names == [
        "image_encoder.layers.1.blocks.0.mlp.adapter",
        "image_encoder.layers.3.blocks.0.mlp.adapter",
    ]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model.image_encoder(x), tiny_mobile_sam().image_encoder(x))  # zero-init
    sd = adapter_state_dict(model)
    assert infer_adapters(sd, tiny_mobile_sam()) == (8, [0, 3])
    with pytest.raises(ValueError, match="already has an adapter"):
        add_adapters(model, hidden=8, blocks=[0])


def test_efficienttam_lora_run_loss_falls(tmp_path: Path) -> None:
    model = tiny_efficienttam()
    assert get_family("efficienttam").trainer == "samkit.train.families:Sam2Ops"
    assert [n for n, _ in encoder_blocks(model)] == [
        "image_encoder.trunk.blocks.0",
        "image_encoder.trunk.blocks.1",
    ]
    apply_lora(model, rank=2, alpha=4)
    configure_trainable(model, "none", peft=True)
    losses, _ = _fit(model, tmp_path)
    _falls(losses)
