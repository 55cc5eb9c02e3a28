"""`samkit finetune` / `samkit eval` end to end on a real checkpoint (the sam1_shapes fixture), and
what they say about the weights they were given (random ones: a warning, `checkpoint: null`) and
about a warm-up that outlasts the run."""

from __future__ import annotations

import json

import pytest

from samkit import build_sam2
from samkit.checkpoint import read_state_dict, save_checkpoint
from samkit.cli import main
from samkit.train.synthetic import make_shapes_dataset, small_sam2_config, write_folder_dataset
from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"


@pytest.fixture
def data(tmp_path):
    return write_folder_dataset(make_shapes_dataset(5, seed=3, size=(96, 128)), tmp_path / "data")


def test_lora_finetune_then_eval_the_merged_checkpoint(tmp_path, data) -> None:
    run = tmp_path / "run"
    args = ["--data", str(data), "--val-fraction", "0.2", "--no-progress", "--clicks", "2"]
    rc = main(
        [
            "finetune",
            *args,
            "--checkpoint",
            str(SHAPES / "sam1_shapes.pth"),
            "--out",
            str(run),
            "--steps",
            "2",
            "--lora-rank",
            "4",
            "--lora-targets",
            "qkv",
            "--freeze",
            "encoder+prompt",
            "--images-per-step",
            "1",
            "--prompts-per-image",
            "2",
            "--correction-iters",
            "1",
        ]
    )
    assert rc == 0
    official = set(read_state_dict(SHAPES / "sam1_shapes.pth"))
    merged = read_state_dict(run / "model.safetensors")
    assert set(merged) == official
    base = read_state_dict(SHAPES / "sam1_shapes.pth")
    k = "image_encoder.blocks.0.attn.qkv.weight"
    assert not (merged[k] == base[k]).all()  # LoRA was trained and merged
    pe = "prompt_encoder.point_embeddings.0.weight"
    assert (merged[pe] == base[pe]).all()  # frozen
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["lora_layers_merged"] == 4
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                *args,
                "--split",
                "val",
                "--checkpoint",
                str(run / "model.safetensors"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    met = json.loads((out / "metrics.json").read_text())
    assert met["miou_1pt"] == summary["val"]["miou_1pt"]
    assert met["images"] == summary["val"]["images"] and len(met["images"]) == 1
    assert set(met) >= {"miou_1pt", "miou_box", "per_instance", "baseline_box"}
    assert "miou_3pt" not in met  # only 2 clicks asked for
    assert (out / "miou_vs_clicks.png").is_file()


def test_adapter_finetune_and_eval_with_adapters(tmp_path, data) -> None:
    run = tmp_path / "run"
    args = ["--data", str(data), "--no-progress", "--clicks", "1"]
    assert (
        main(
            [
                "finetune",
                *args,
                "--checkpoint",
                str(SHAPES / "sam1_shapes.pth"),
                "--out",
                str(run),
                "--steps",
                "1",
                "--adapter-dim",
                "8",
                "--images-per-step",
                "1",
                "--prompts-per-image",
                "2",
            ]
        )
        == 0
    )
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["adapters"]
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                *args,
                "--checkpoint",
                str(run / "model.safetensors"),
                "--adapters",
                str(run / "adapters.safetensors"),
                "--split",
                "val",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    met = json.loads((out / "metrics.json").read_text())
    assert met["miou_1pt"] == summary["val"]["miou_1pt"]


def test_cli_errors(tmp_path, data, capsys) -> None:
    assert main(["eval", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) != 0
    assert "dataset not found" in capsys.readouterr().err
    assert main(["eval", "--data", str(data), "--out", str(tmp_path / "o")]) != 0
    assert "--model" in capsys.readouterr().err


def test_sam2_lora_and_adapter_finetune_then_eval(tmp_path, data) -> None:
    """SAM 2 through the CLI: an official-format config.json, LoRA on Hiera + decoder and
    adapters; the merged model has the official keys and `samkit eval` reproduces the numbers."""

    cfg = tmp_path / "sam2.json"
    cfg.write_text(json.dumps(small_sam2_config(64, 32, window_spec=(4, 4, 2, 2))))
    start = save_checkpoint(build_sam2(cfg), tmp_path / "start.safetensors")
    run = tmp_path / "run"
    args = ["--data", str(data), "--model", str(cfg), "--no-progress", "--clicks", "2"]
    rc = main(
        [
            "finetune",
            *args,
            "--checkpoint",
            str(start),
            "--out",
            str(run),
            "--steps",
            "2",
            "--lora-rank",
            "2",
            "--lora-targets",
            "qkv,proj,decoder",
            "--adapter-dim",
            "4",
            "--images-per-step",
            "1",
            "--prompts-per-image",
            "2",
            "--box-prob",
            "0.5",
            "--correction-iters",
            "1",
        ]
    )
    assert rc == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["adapters"] and summary["lora_layers_merged"] > 0
    base = read_state_dict(start)
    merged = read_state_dict(run / "model.safetensors")
    assert set(merged) == set(base)
    k = "image_encoder.trunk.blocks.0.attn.qkv.weight"
    assert not (merged[k] == base[k]).all()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert "obj" in log[0]
    out = tmp_path / "eval"
    eval_args = ["--checkpoint", str(run / "model.safetensors"), "--out", str(out)]
    adapters = ["--adapters", str(run / "adapters.safetensors"), "--split", "val"]
    assert main(["eval", *args, *eval_args, *adapters]) == 0
    met = json.loads((out / "metrics.json").read_text())
    assert met["miou_1pt"] == summary["val"]["miou_1pt"]
    assert met["images"] == summary["val"]["images"]


@pytest.fixture(scope="module")
def small_sam2(tmp_path_factory):
    """A 3-image dataset, a small SAM 2 config and a checkpoint of its random weights."""
    d = tmp_path_factory.mktemp("small_sam2")
    write_folder_dataset(make_shapes_dataset(3, size=(48, 64)), d / "data")
    cfg = d / "cfg.json"
    cfg.write_text(json.dumps(small_sam2_config(img_size=64, dim=32)))
    ckpt = d / "model.safetensors"
    save_checkpoint(build_sam2(cfg), ckpt)
    return d / "data", cfg, ckpt


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_eval_records_model_and_checkpoint(small_sam2, tmp_path, capsys, with_checkpoint):
    data, cfg, ckpt = small_sam2
    argv = ["eval", "--data", str(data), "--model", str(cfg), "--out", str(tmp_path)]
    argv += ["--clicks", "1", "--no-progress"]
    argv += ["--checkpoint", str(ckpt)] if with_checkpoint else []
    assert main(argv) == 0
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == str(cfg)
    assert metrics["checkpoint"] == (str(ckpt) if with_checkpoint else None)
    assert ("RANDOMLY INITIALISED" in err) is not with_checkpoint


@pytest.mark.parametrize(("with_checkpoint", "warmup"), [(False, 5), (True, 1)])
def test_finetune_notes_random_weights_and_short_runs(
    small_sam2, tmp_path, capsys, with_checkpoint, warmup
):
    data, cfg, ckpt = small_sam2
    argv = ["finetune", "--data", str(data), "--model", str(cfg), "--out", str(tmp_path)]
    argv += ["--steps", "2", "--warmup-steps", str(warmup), "--images-per-step", "1"]
    argv += ["--prompts-per-image", "1", "--val-fraction", "0", "--no-progress"]
    argv += ["--checkpoint", str(ckpt)] if with_checkpoint else []
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("RANDOM weights" in err) is not with_checkpoint
    assert ("never reaches --lr" in err) is (warmup >= 2)
