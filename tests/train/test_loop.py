"""The training loop: exact resume (per family), schedule, checkpoints that build_sam loads, a fresh
run replacing an old one in its folder, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from samkit.checkpoint import read_state_dict
from samkit.train.loop import TrainConfig, Trainer
from samkit.train.lora import apply_lora, configure_trainable
from samkit.train.optim import WarmupDecay
from samkit.train.synthetic import make_shapes_dataset
from tests.families import FAMILIES, Family, parametrize_families, tiny_sam_config


def _model(lora: bool, family: Family = FAMILIES["sam1"], seed: int = 0) -> nn.Module:
    m = family.tiny_model(seed)
    if lora:
        apply_lora(m, rank=2, alpha=4)
        configure_trainable(m, "none", peft=True)
    return m


def _log(out_dir: Path) -> list[dict]:
    recs = [json.loads(x) for x in (out_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if "event" not in r]


def _losses(out_dir: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["loss"], r["grad_norm"]) for r in _log(out_dir)]


@dataclass(frozen=True)
class Resume:
    """A family's interrupted run: its length, the recipe's IoU regression (L1 for SAM 2), the
    loss terms it logs, the LoRA layers merged (qkv + proj of every encoder block: 2 ViT blocks,
    6 Hiera blocks) and how the merged checkpoint is rebuilt (a SAM 1 architecture is read from
    tensor shapes; a custom SAM 2 architecture needs its config)."""

    steps: int
    iou_l1: bool
    terms: tuple[str, ...]
    lora_layers: int
    config_from_checkpoint: bool


RESUME = {
    "sam1": Resume(5, False, ("focal", "dice", "iou_mse"), 4, config_from_checkpoint=True),
    "sam2": Resume(4, True, ("focal", "dice", "iou_mse", "obj"), 12, config_from_checkpoint=False),
}


@parametrize_families()
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, family) -> None:
    run = RESUME[family.name]
    data = make_shapes_dataset(5, seed=0, size=(48, 64))
    cfg = dict(
        steps=run.steps,
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
    full = Trainer(_model(True, family), data, TrainConfig(**cfg), tmp_path / "full")
    assert full.cfg.loss.iou_l1 is run.iou_l1  # the family's recipe
    full.fit()
    part = Trainer(_model(True, family), data, TrainConfig(**cfg, stop_after=2), tmp_path / "part")
    assert part.fit() == {"step": 2, "completed": False}
    assert len(_log(tmp_path / "part")) == 2
    # a fresh process would rebuild the model the same way, with other random weights
    fresh = _model(True, family, seed=123)
    resumed = Trainer(fresh, data, TrainConfig(**cfg), tmp_path / "part")
    resumed.fit(resume=True)
    a, b = _log(tmp_path / "full"), _log(tmp_path / "part")
    assert [r["step"] for r in a] == list(range(1, run.steps + 1))
    keys = ("loss", "grad_norm", *run.terms)
    # bit-identical loss and gradient-norm curves, term by term
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert all(r[k] > 0 for r in a for k in run.terms)  # every term is part of the objective
    sd_a = read_state_dict(tmp_path / "full" / "model.safetensors")
    sd_b = read_state_dict(tmp_path / "part" / "model.safetensors")
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    # the final (LoRA-merged) checkpoint has official keys and loads
    assert not any("lora" in k for k in sd_a)
    config = None if run.config_from_checkpoint else family.tiny_config()
    loaded = family.build(config, checkpoint=tmp_path / "full" / "model.safetensors")
    assert loaded.img_size == 64 and set(loaded.state_dict()) == set(sd_a)
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert summary["completed"] and summary["lora_layers_merged"] == run.lora_layers


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


def _fresh_trainer(out: Path, steps: int) -> Trainer:
    torch.manual_seed(0)
    data = make_shapes_dataset(2, seed=0, size=(48, 64))
    cfg = TrainConfig(steps=steps, images_per_step=1, prompts_per_image=1, progress=False)
    return Trainer(FAMILIES["sam1"].build(tiny_sam_config()), data, cfg, out)


def test_fresh_run_drops_checkpoints_of_the_previous_run(tmp_path) -> None:
    """A fresh (not --resume) run into a used folder replaces the old run's checkpoints too, as
    it replaces its log: a later --resume must continue the newest run, not an older one."""
    _fresh_trainer(tmp_path, steps=3).fit()
    assert _fresh_trainer(tmp_path, steps=3).latest_checkpoint().name == "step_0000003"
    _fresh_trainer(tmp_path, steps=2).fit()  # a new run, not a resume
    resumed = _fresh_trainer(tmp_path, steps=4)
    assert resumed.latest_checkpoint().name == "step_0000002"
    assert [d.name for d in sorted((tmp_path / "checkpoints").iterdir())] == ["step_0000002"]
    resumed.fit(resume=True)
    assert resumed.step == 4
