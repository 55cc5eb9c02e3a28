"""A small SAM learns to segment synthetic shapes from random weights, and `samkit eval` agrees.

The architecture is a 256 px SAM 1 (ViT embed 64, depth 4; decoder width 128; a 16x16 image
embedding and 64x64 low-res masks); the data are textured shapes (1-3 per image, large, high
contrast) on cluttered backgrounds, generated here. Everything is seeded, so the run is
deterministic for a given machine and thread count.
"""

from __future__ import annotations

import json

import pytest

from samkit.cli import main
from samkit.train.synthetic import make_shapes_dataset, small_sam_config, write_folder_dataset

STEPS = 350


@pytest.mark.slow
def test_small_sam_learns_shapes_from_scratch(tmp_path, capsys) -> None:
    data = write_folder_dataset(
        make_shapes_dataset(200, seed=1, size=(192, 256)), tmp_path / "data"
    )
    cfg = tmp_path / "small_sam.json"
    cfg.write_text(json.dumps(small_sam_config()))
    run = tmp_path / "run"
    common = ["--data", str(data), "--val-fraction", "0.1", "--split-seed", "0", "--no-progress"]
    rc = main(
        [
            "finetune",
            *common,
            "--model",
            str(cfg),
            "--out",
            str(run),
            "--steps",
            str(STEPS),
            "--lr",
            "4e-3",
            "--warmup-steps",
            "20",
            "--weight-decay",
            "0.05",
            "--images-per-step",
            "2",
            "--prompts-per-image",
            "8",
            "--box-prob",
            "0",
            "--init-tied-qk",
            "2",
            "--seed",
            "0",
            "--clicks",
            "3",
            "--log-every",
            "25",
        ]
    )
    assert rc == 0
    summary = json.loads((run / "train_summary.json").read_text())
    val = summary["val"]
    print(
        f"\nheld-out ({val['num_instances']} instances): miou_1pt {val['miou_1pt']:.4f}, "
        f"miou_3pt {val['miou_3pt']:.4f}, miou_box {val['miou_box']:.4f}; baselines: whole image "
        f"{val['baseline_whole_image']:.4f}, filled tight box {val['baseline_box']:.4f}; "
        f"train wall {summary['wall_s']:.0f} s"
    )
    assert val["num_instances"] >= 30
    assert val["miou_1pt"] >= 0.75
    assert val["miou_1pt"] > val["baseline_whole_image"] + 0.5
    assert val["miou_1pt"] > val["baseline_box"] + 0.05
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "event" not in r]
    assert losses[-1] < 0.6 * losses[0]

    # `samkit eval` on the saved checkpoint (architecture inferred) reproduces the number
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                *common,
                "--checkpoint",
                str(run / "model.safetensors"),
                "--out",
                str(out),
                "--clicks",
                "3",
                "--split",
                "val",
            ]
        )
        == 0
    )
    met = json.loads((out / "metrics.json").read_text())
    assert met["miou_1pt"] == val["miou_1pt"]
    assert met["miou_3pt"] == val["miou_3pt"] and met["miou_box"] == val["miou_box"]
    assert len(met["per_instance"]) == val["num_instances"]
    assert (out / "miou_vs_clicks.png").stat().st_size > 0
