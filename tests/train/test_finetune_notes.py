"""`samkit finetune` says when it trains random weights and when the warm-up outlasts the run."""

from __future__ import annotations

import json

import pytest

from samkit import build_sam2
from samkit.checkpoint import save_checkpoint
from samkit.cli import main
from samkit.train.synthetic import make_shapes_dataset, small_sam2_config, write_folder_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ftnotes")
    write_folder_dataset(make_shapes_dataset(3, size=(48, 64)), d / "data")
    cfg = d / "cfg.json"
    cfg.write_text(json.dumps(small_sam2_config(img_size=64, dim=32)))
    ckpt = d / "model.safetensors"
    save_checkpoint(build_sam2(cfg), ckpt)
    return d / "data", cfg, ckpt


@pytest.mark.parametrize(("with_checkpoint", "warmup"), [(False, 5), (True, 1)])
def test_finetune_notes_random_weights_and_short_runs(
    setup, tmp_path, capsys, with_checkpoint, warmup
):
    data, cfg, ckpt = setup
    argv = ["finetune", "--data", str(data), "--model", str(cfg), "--out", str(tmp_path)]
    argv += ["--steps", "2", "--warmup-steps", str(warmup), "--images-per-step", "1"]
    argv += ["--prompts-per-image", "1", "--val-fraction", "0", "--no-progress"]
    argv += ["--checkpoint", str(ckpt)] if with_checkpoint else []
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("RANDOM weights" in err) is not with_checkpoint
    assert ("never reaches --lr" in err) is (warmup >= 2)
