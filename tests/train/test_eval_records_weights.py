"""`samkit eval` says which weights it evaluated: a warning and `checkpoint: null` for random ones."""

from __future__ import annotations

import json

import pytest

from samkit import build_sam2
from samkit.checkpoint import save_checkpoint
from samkit.cli import main
from samkit.train.synthetic import make_shapes_dataset, small_sam2_config, write_folder_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalw")
    write_folder_dataset(make_shapes_dataset(2, size=(48, 64)), d / "data")
    cfg = d / "cfg.json"
    cfg.write_text(json.dumps(small_sam2_config(img_size=64, dim=32)))
    ckpt = d / "model.safetensors"
    save_checkpoint(build_sam2(cfg), ckpt)
    return d / "data", cfg, ckpt


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_eval_records_model_and_checkpoint(setup, tmp_path, capsys, with_checkpoint):
    data, cfg, ckpt = setup
    argv = [
        "eval",
        "--data",
        str(data),
        "--model",
        str(cfg),
        "--out",
        str(tmp_path),
        "--clicks",
        "1",
    ]
    argv += ["--no-progress"] + (["--checkpoint", str(ckpt)] if with_checkpoint else [])
    assert main(argv) == 0
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == str(cfg)
    assert metrics["checkpoint"] == (str(ckpt) if with_checkpoint else None)
    assert ("RANDOMLY INITIALISED" in err) is not with_checkpoint
