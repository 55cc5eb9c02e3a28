"""A small model of each family learns to segment synthetic shapes from random weights, and
`samkit eval` agrees.

SAM 1: a 256 px model (ViT embed 64, depth 4; decoder width 128; a 16x16 image embedding and
64x64 low-res masks). SAM 2.1: a 128 px image model (`small_sam2_config`: Hiera embed 16, stages
1-2-2-1; FPN / decoder width 64 with the official decoder otherwise: high-res features, object
scores, sigmoid IoU head). The data are textured shapes (1-3 per image, large, high contrast) on
cluttered backgrounds, generated here. Everything is seeded, so a run is deterministic for a given
machine and thread count.

What is asserted is the held-out mIoU of the first click against both trivial baselines. For
SAM 2 that is the best of the three click-1 masks (the SAM paper's "oracle" mIoU): the mask its
IoU head picks (`miou_1pt`) is printed, not asserted, because trained from scratch for a few
hundred steps the decoder's IoU-token output is the same for every prompt (see the closing notes
of issue 14), so the argmax choice is no better than a fixed output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from samkit.cli import main
from samkit.train.synthetic import (
    make_shapes_dataset,
    small_sam2_config,
    small_sam_config,
    write_folder_dataset,
)
from tests.families import parametrize_families


@dataclass(frozen=True)
class Learning:
    """A family's run: its architecture (config.json contents), length and learning rate, the
    held-out mIoU asserted, and whether `samkit eval` needs the config (a custom SAM 2
    architecture cannot be read from tensor shapes; a SAM 1 one can)."""

    config: Callable[[], dict]
    steps: int
    lr: str
    metric: str
    eval_needs_config: bool


LEARNING = {
    # SAM 1: 200 steps clear every assertion below with a margin (held-out mIoU 0.836 with the
    # tests' 2 threads, 0.850 with 1; baselines 0.086 whole image, 0.694 tight box); 350 took
    # 1.8x the time. SAM 2 keeps 300: at 220 its oracle mIoU (0.770) came within 0.02 of 0.75.
    "sam1": Learning(small_sam_config, 200, "2e-3", "miou_1pt", eval_needs_config=False),
    "sam2": Learning(
        lambda: small_sam2_config(128, 64, window_spec=(8, 4, 4, 2)),
        300,
        "2e-3",
        "miou_1pt_oracle",
        eval_needs_config=True,
    ),
}


@pytest.mark.slow
@parametrize_families()
def test_small_model_learns_shapes_from_scratch(tmp_path, capsys, family) -> None:
    run_cfg = LEARNING[family.name]
    data = write_folder_dataset(
        make_shapes_dataset(200, seed=1, size=(192, 256)), tmp_path / "data"
    )
    cfg = tmp_path / f"small_{family.name}.json"
    cfg.write_text(json.dumps(run_cfg.config()))
    run = tmp_path / "run"
    common = ["--data", str(data), "--val-fraction", "0.1", "--split-seed", "0", "--no-progress"]
    args = ["--model", str(cfg), "--out", str(run), "--steps", str(run_cfg.steps)]
    args += ["--lr", run_cfg.lr, "--warmup-steps", "20", "--weight-decay", "0.05"]
    args += ["--images-per-step", "2", "--prompts-per-image", "8", "--box-prob", "0"]
    args += ["--init-tied-qk", "2", "--seed", "0", "--clicks", "3", "--log-every", "25"]
    assert main(["finetune", *common, *args]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    val = summary["val"]
    print(
        f"\nheld-out ({val['num_instances']} instances): oracle 1pt {val['miou_1pt_oracle']:.4f}, "
        f"miou_1pt {val['miou_1pt']:.4f}, miou_3pt {val['miou_3pt']:.4f}, miou_box "
        f"{val['miou_box']:.4f}; baselines: whole image {val['baseline_whole_image']:.4f}, "
        f"filled tight box {val['baseline_box']:.4f}; train wall {summary['wall_s']:.0f} s"
    )
    assert val["num_instances"] >= 30
    assert val[run_cfg.metric] >= 0.75
    assert val[run_cfg.metric] > val["baseline_whole_image"] + 0.5
    assert val[run_cfg.metric] > val["baseline_box"] + 0.05
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "event" not in r]
    assert losses[-1] < 0.6 * losses[0]

    # `samkit eval` on the saved checkpoint reproduces the numbers
    out = tmp_path / "eval"
    model = ["--model", str(cfg)] if run_cfg.eval_needs_config else []
    argv = ["eval", *common, *model, "--checkpoint", str(run / "model.safetensors")]
    assert main([*argv, "--out", str(out), "--clicks", "3", "--split", "val"]) == 0
    met = json.loads((out / "metrics.json").read_text())
    for key in ("miou_1pt", "miou_1pt_oracle", "miou_3pt", "miou_box"):
        assert met[key] == val[key], key
    assert len(met["per_instance"]) == val["num_instances"]
    assert (out / "miou_vs_clicks.png").stat().st_size > 0
