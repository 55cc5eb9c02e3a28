"""Training from random weights on synthetic shapes: the learning curve (held-out mIoU vs steps).

    python benchmarks/bench_train.py [--steps 1000] [--eval-every 100] [--threads 2]
    python benchmarks/bench_train.py --throughput-only [--throughput-steps 20]

The same setup as tests/train/test_learning.py (a 256 px SAM 1 with a 128-wide decoder, textured
shapes on cluttered backgrounds, tied query / key initialisation of the decoder), run longer. It
records the training loss, the throughput and, every `--eval-every` steps, the held-out mIoU after
1, 3 and 5 clicks and from a box, plus the whole-image and filled-box baselines. Training goes
through `samkit finetune`'s code path (`Trainer`), evaluation through `samkit eval`'s
(`evaluate`).

It first measures training steps/s of SAM 1 and SAM 2 at the same size and batch: the 256 px
SAM 1 above and `small_sam2_config()` (256 px SAM 2.1: Hiera embed 16, stages 1-2-2-1, width 64,
high-res features and object scores), `--throughput-steps` steps each after 2 warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--box-prob", type=float, default=0.25)
    ap.add_argument("--correction-iters", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throughput-steps", type=int, default=20)
    ap.add_argument("--throughput-only", action="store_true", help="skip the learning curve")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from samkit import build_sam
    from samkit.train.evaluate import evaluate
    from samkit.train.loop import TrainConfig, Trainer
    from samkit.train.optim import init_tied_qk
    from samkit.train.synthetic import make_shapes_dataset, small_sam_config

    train = make_shapes_dataset(args.train_images, seed=1, size=(192, 256))
    val = make_shapes_dataset(args.val_images, seed=2, size=(192, 256))
    throughput = {
        family: steps_per_s(family, train, args.throughput_steps, args)
        for family in ("sam1", "sam2")
    }
    throughput["sam2_over_sam1"] = (
        throughput["sam2"]["steps_per_s"] / throughput["sam1"]["steps_per_s"]
    )
    print(json.dumps(throughput), file=sys.stderr)
    if args.throughput_only:
        payload = {"config": vars(args), "throughput": throughput}
        write_json("bench_train", payload, args.out)
        return payload
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "small_sam.json"
        cfg_path.write_text(json.dumps(small_sam_config()))
        model = build_sam(cfg_path)
        init_tied_qk(model, 4.0)
        cfg = TrainConfig(
            steps=args.steps,
            lr=args.lr,
            warmup_steps=20,
            weight_decay=0.05,
            images_per_step=2,
            prompts_per_image=8,
            box_prob=args.box_prob,
            correction_iters=args.correction_iters,
            seed=args.seed,
            log_every=10,
            progress=False,
        )
        trainer = Trainer(model, train, cfg, Path(tmp) / "run")
        curve, t_train = [], 0.0
        base = None
        while trainer.step < args.steps:
            t0 = time.perf_counter()
            losses = []
            for _ in range(min(args.eval_every, args.steps - trainer.step)):
                losses.append(trainer.train_step()["loss"])
            t_train += time.perf_counter() - t0
            t0 = time.perf_counter()
            met = evaluate(model, val, clicks=5)
            t_eval = time.perf_counter() - t0
            base = {k: met[k] for k in ("baseline_whole_image", "baseline_box", "num_instances")}
            point = {
                "step": trainer.step,
                "train_s": round(t_train, 1),
                "mean_loss_since_last": sum(losses) / len(losses),
                "img_per_s": trainer.step * cfg.images_per_step / t_train,
                **{k: met[k] for k in ("miou_1pt", "miou_3pt", "miou_5pt", "miou_box")},
                "eval_s": round(t_eval, 1),
            }
            curve.append(point)
            print(json.dumps(point), file=sys.stderr)
    payload = {
        "config": {
            **vars(args),
            "model": "small_sam_config() 256 px, decoder 128",
            **cfg.to_dict(),
        },
        "throughput": throughput,
        "baselines": base,
        "curve": curve,
        "final": curve[-1],
    }
    write_json("bench_train", payload, args.out)
    return payload


def steps_per_s(family: str, train: list, steps: int, args: argparse.Namespace) -> dict:
    """Training steps/s (2 images x 8 prompts, the learning curve's settings) of a small model."""
    from samkit import build_sam, build_sam2
    from samkit.train.loop import TrainConfig, Trainer
    from samkit.train.synthetic import small_sam2_config, small_sam_config

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / f"{family}.json"
        if family == "sam2":
            cfg_path.write_text(json.dumps(small_sam2_config()))
            model = build_sam2(cfg_path)
        else:
            cfg_path.write_text(json.dumps(small_sam_config()))
            model = build_sam(cfg_path)
        cfg = TrainConfig(
            steps=steps + 2,
            lr=args.lr,
            images_per_step=2,
            prompts_per_image=8,
            box_prob=args.box_prob,
            correction_iters=args.correction_iters,
            progress=False,
        )
        trainer = Trainer(model, train, cfg, Path(tmp) / "run")
        for _ in range(2):
            trainer.train_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        wall = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return {"steps_per_s": steps / wall, "img_per_s": 2 * steps / wall, "parameters": params}


if __name__ == "__main__":
    main()
