"""The training loop: exact resume, schedule, checkpoints that build_sam loads, errors."""

from __future__ import annotations

import json

import pytest
import torch

from samkit import build_sam
from samkit.checkpoint import read_state_dict
from samkit.train.loop import TrainConfig, Trainer
from samkit.train.lora import apply_lora, configure_trainable
from samkit.train.optim import WarmupDecay
from samkit.train.synthetic import make_shapes_dataset
from tests.train.conftest import tiny_config


def _model(lora: bool):
    torch.manual_seed(0)
    m = build_sam(tiny_config())
    if lora:
        apply_lora(m, rank=2, alpha=4)
        configure_trainable(m, "none", peft=True)
    return m


def _losses(out_dir) -> list[tuple[int, float, float]]:
    recs = [json.loads(x) for x in (out_dir / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in recs if "event" not in r]


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path) -> None:
    lora = True
    data = make_shapes_dataset(5, seed=0, size=(48, 64))
    cfg = dict(
        steps=5,
        lr=1e-3,
        warmup_steps=2,
        grad_accum=2,
        images_per_step=2,
        prompts_per_image=3,
        correction_iters=1,
        box_prob=0.5,
        log_every=1,
        progress=False,
    )
    full = Trainer(_model(lora), data, TrainConfig(**cfg), tmp_path / "full")
    full.fit()
    part = Trainer(_model(lora), data, TrainConfig(**cfg, stop_after=2), tmp_path / "part")
    assert part.fit() == {"step": 2, "completed": False}
    assert len(_losses(tmp_path / "part")) == 2
    # a fresh process would rebuild the model the same way, with other random weights
    torch.manual_seed(123)
    fresh = build_sam(tiny_config())
    if lora:
        apply_lora(fresh, rank=2, alpha=4)
        configure_trainable(fresh, "none", peft=True)
    resumed = Trainer(fresh, data, TrainConfig(**cfg), tmp_path / "part")
    resumed.fit(resume=True)
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [s for s, _, _ in a] == [1, 2, 3, 4, 5]
    assert a == b  # bit-identical loss and gradient-norm curves
    sd_a = read_state_dict(tmp_path / "full" / "model.safetensors")
    sd_b = read_state_dict(tmp_path / "part" / "model.safetensors")
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    # the final (LoRA-merged) checkpoint has official keys and loads on its own
    assert not any("lora" in k for k in sd_a)
    loaded = build_sam(checkpoint=tmp_path / "full" / "model.safetensors")
    assert loaded.img_size == 64
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert summary["completed"] and summary["lora_layers_merged"] == 4


def test_training_reduces_the_loss_and_evaluates(tmp_path) -> None:
    data = make_shapes_dataset(6, seed=1, size=(64, 64), max_shapes=1)
    cfg = TrainConfig(
        steps=16,
        lr=3e-3,
        warmup_steps=2,
        images_per_step=2,
        prompts_per_image=4,
        log_every=1,
        progress=False,
        bf16=True,
        box_prob=0.0,
    )
    tr = Trainer(_model(False), data, cfg, tmp_path, val_data=data[:2])
    summary = tr.fit()
    losses = [x[1] for x in _losses(tmp_path)]
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    met = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["val"]["miou_1pt"] == met["miou_1pt"]
    assert (tmp_path / "miou_vs_clicks.png").stat().st_size > 0


def test_schedule_shapes() -> None:
    cos = WarmupDecay(warmup=4, total=14, schedule="cosine", min_ratio=0.1)
    assert [cos(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cos(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(14) == pytest.approx(0.1) and cos(100) == pytest.approx(0.1)
    lin = WarmupDecay(warmup=0, total=10, schedule="linear", min_ratio=0.0)
    assert lin(5) == pytest.approx(0.5)
    assert WarmupDecay(2, 10, "constant", 0.0)(7) == 1.0


def test_config_and_data_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step").validate()
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0).validate()
    with pytest.raises(ValueError, match="empty"):
        Trainer(_model(False), [], TrainConfig(), tmp_path)
    m = _model(False)
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(m, make_shapes_dataset(1), TrainConfig(), tmp_path)


def test_resume_with_other_lora_settings_is_refused(tmp_path) -> None:
    data = make_shapes_dataset(2, seed=0, size=(48, 64))
    cfg = TrainConfig(steps=2, images_per_step=1, prompts_per_image=2, progress=False, stop_after=1)
    Trainer(_model(True), data, cfg, tmp_path).fit()
    with pytest.raises(ValueError, match="does not match the model"):
        Trainer(_model(False), data, cfg, tmp_path).fit(resume=True)
