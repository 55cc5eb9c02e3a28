"""A fresh (not --resume) run into a used folder replaces the old run's checkpoints too, as it
replaces its log: a later --resume must continue the newest run, not an older one."""

from __future__ import annotations

import torch

from samkit import build_sam
from samkit.train.loop import TrainConfig, Trainer
from samkit.train.synthetic import make_shapes_dataset
from tests.families import tiny_sam_config


def _trainer(out, steps: int) -> Trainer:
    torch.manual_seed(0)
    data = make_shapes_dataset(2, seed=0, size=(48, 64))
    cfg = TrainConfig(steps=steps, images_per_step=1, prompts_per_image=1, progress=False)
    return Trainer(build_sam(tiny_sam_config()), data, cfg, out)


def test_fresh_run_drops_checkpoints_of_the_previous_run(tmp_path):
    _trainer(tmp_path, steps=3).fit()
    assert _trainer(tmp_path, steps=3).latest_checkpoint().name == "step_0000003"
    _trainer(tmp_path, steps=2).fit()  # a new run, not a resume
    resumed = _trainer(tmp_path, steps=4)
    assert resumed.latest_checkpoint().name == "step_0000002"
    assert [d.name for d in sorted((tmp_path / "checkpoints").iterdir())] == ["step_0000002"]
    resumed.fit(resume=True)
    assert resumed.step == 4
