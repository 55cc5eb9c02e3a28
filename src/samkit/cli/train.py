"""`samkit finetune` and `samkit eval` (added to the main parser by `samkit.cli`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from samkit.build.loaded import load_family_model
from samkit.cli.common import CliError, families_with, refuse_family
from samkit.cli.imageopts import add_image_args, image_max_pixels, image_stretch
from samkit.cli.model_errors import load_message
from samkit.io.atomic import atomic_write_text

# samkit.train (torch; train.evaluate also scipy) is imported inside the command functions:
# `samkit.cli.parser` imports this module to build the parser, and `--help` imports no torch.

logger = logging.getLogger("samkit")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="DATA folder (images/ + masks/) or a COCO .json")
    p.add_argument(
        "--images", default=None, help="image folder of a COCO .json (default: next to it)"
    )
    p.add_argument(
        "--model",
        default=None,
        help="variant name (vit_b, sam2.1_hiera_t, ...) or a SAM 1 / SAM 2 config.json; optional "
        "with --checkpoint of an official size (inferred)",
    )
    p.add_argument("--checkpoint", default=None, help="weights to start from / to evaluate")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="held-out fraction of the fine-tuning split (default 0.2)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the deterministic split")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad samples with a warning")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument(
        "--clicks", type=int, default=5, help="clicks simulated per instance (default 5)"
    )
    add_image_args(p)


def add_parsers(subparsers: Any) -> None:
    """Add the `finetune` and `eval` sub-commands."""
    ft = subparsers.add_parser(
        "finetune",
        help="fine-tune SAM 1 or SAM 2 on a segmentation dataset (LoRA, adapters, full)",
        description="Fine-tune a SAM 1 or SAM 2 / 2.1 model. Writes DIR/model.safetensors (LoRA "
        "merged, loadable by build_sam / build_sam2), checkpoints, log.jsonl, metrics.json (on "
        "the held-out split) and a mIoU-vs-clicks plot.",
    )
    _add_data_args(ft)
    ft.add_argument("--steps", type=int, default=1000)
    ft.add_argument("--lr", type=float, default=1e-4)
    ft.add_argument("--weight-decay", type=float, default=0.1)
    ft.add_argument("--warmup-steps", type=int, default=50)
    ft.add_argument("--schedule", choices=("cosine", "linear", "constant"), default="cosine")
    ft.add_argument("--min-lr-ratio", type=float, default=0.1)
    ft.add_argument("--grad-accum", type=int, default=1)
    ft.add_argument("--images-per-step", type=int, default=2)
    ft.add_argument("--prompts-per-image", type=int, default=8)
    ft.add_argument("--box-prob", type=float, default=0.5, help="fraction of box first prompts")
    ft.add_argument("--correction-iters", type=int, default=0, help="iterative correction rounds")
    ft.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0 = off)")
    ft.add_argument(
        "--iou-loss",
        choices=("auto", "mse", "l1"),
        default="auto",
        help="IoU regression loss (auto: MSE for SAM 1, L1 for SAM 2, as the official recipes)",
    )
    ft.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument(
        "--lora-rank", type=int, default=0, help="LoRA rank on the encoder attention (0 = off)"
    )
    ft.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: rank)")
    ft.add_argument(
        "--lora-targets",
        default="qkv,proj",
        help="comma list of qkv, proj (encoder attention) and decoder (the mask decoder's "
        "attention projections; their base weights are then frozen too)",
    )
    ft.add_argument(
        "--adapter-dim", type=int, default=0, help="bottleneck adapters of this size (0 = off)"
    )
    ft.add_argument(
        "--freeze",
        choices=("none", "encoder", "encoder+prompt"),
        default="none",
        help="freeze the image encoder, or everything but the mask decoder",
    )
    ft.add_argument(
        "--init-tied-qk",
        type=float,
        default=0.0,
        help="training from random weights: tie the decoder's key / query projections with this gain",
    )
    ft.add_argument("--log-every", type=int, default=10)
    ft.add_argument(
        "--save-every", type=int, default=0, help="checkpoint every N steps (0 = at the end)"
    )
    ft.add_argument("--eval-every", type=int, default=0)
    ft.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop (resumably) at step N; continue later with --resume",
    )
    ft.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints")
    ft.add_argument("--no-progress", action="store_true")
    ft.set_defaults(func=run_finetune)

    ev = subparsers.add_parser(
        "eval",
        help="interactive mIoU (1/3/5 clicks, box) of a SAM 1 or SAM 2 model on a dataset",
        description="Deterministic click protocol (see samkit.train.evaluate) on every image of "
        "the dataset, or on one side of the fine-tuning split with --split; writes "
        "DIR/metrics.json (with the evaluated image names, --model and --checkpoint; null: random "
        "weights) and DIR/miou_vs_clicks.png.",
    )
    _add_data_args(ev)
    ev.add_argument(
        "--split",
        choices=("all", "val", "train"),
        default="all",
        help="all images (default), or the val / train side of `samkit finetune`'s split "
        "(same --val-fraction and --split-seed as the run)",
    )
    ev.add_argument("--adapters", default=None, help="adapters.safetensors of an adapter run")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=run_eval)


def _checked_inputs(args: argparse.Namespace) -> str:
    """The checks before anything is read or printed: --data exists, and the family of --model /
    --checkpoint fine-tunes (registry slot `trainer`: SAM 1, SAM 2, ...). Returns the family.

    Raises:
        CliError: what is missing or refused, and what is expected."""
    from samkit.train.families import model_family

    if not Path(args.data).exists():
        raise CliError(
            f"--data {args.data}: dataset not found; expected a DATA folder (images/ + masks/) "
            "or a COCO .json"
        )
    if args.model is None and args.checkpoint is None:
        raise CliError("give --model (variant or config.json) and / or --checkpoint")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise CliError(f"--checkpoint {args.checkpoint}: no such file")
    family = model_family(args.model, args.checkpoint)
    refuse_family(family, families_with("trainer"), args.command)
    return family


def _load_model(args: argparse.Namespace, family: str) -> Any:
    """The model of `family` (`_checked_inputs`); without --checkpoint, random weights."""
    random_weights = args.checkpoint is None
    try:
        return load_family_model(family, args.model, args.checkpoint, random_weights, args.device)
    except ValueError as e:  # as `samkit segment` words it (key reports summarised)
        raise CliError(load_message(family, args.model, args.checkpoint, e)) from None


def _splits(args: argparse.Namespace) -> tuple[Any, list[str], list[str]]:
    from samkit.train.datasets import open_dataset, split_names

    ds = open_dataset(
        args.data,
        skip_invalid=args.skip_invalid,
        image_dir=args.images,
        stretch=image_stretch(args),
        max_pixels=image_max_pixels(args),
    )
    train, val = split_names(ds.names, args.val_fraction, args.split_seed)
    return ds, train, val


def run_finetune(args: argparse.Namespace) -> int:
    import torch

    from samkit.train.datasets import Subset
    from samkit.train.loop import TrainConfig, Trainer
    from samkit.train.lora import add_adapters, apply_lora, configure_trainable
    from samkit.train.losses import LossWeights
    from samkit.train.optim import init_tied_qk

    torch.manual_seed(args.seed)
    family = _checked_inputs(args)  # before the data is read
    ds, train_names, val_names = _splits(args)
    if args.checkpoint is None:
        print(
            f"samkit finetune: note: no --checkpoint: training {args.model} from RANDOM weights "
            "(pass --checkpoint PATH, e.g. the file `samkit download NAME` fetches, to fine-tune "
            "pretrained weights)",
            file=sys.stderr,
        )
    if args.warmup_steps >= args.steps:
        print(
            f"samkit finetune: WARNING: --warmup-steps {args.warmup_steps} >= --steps "
            f"{args.steps}: the learning rate never reaches --lr {args.lr} (it stops at "
            f"{args.lr * args.steps / max(1, args.warmup_steps):.3g})",
            file=sys.stderr,
        )
    model = _load_model(args, family)
    if args.init_tied_qk:
        init_tied_qk(model, args.init_tied_qk)
    if args.lora_rank:
        targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
        apply_lora(model, args.lora_rank, args.lora_alpha, targets)
    if args.adapter_dim:
        add_adapters(model, args.adapter_dim)
    trainable, total = configure_trainable(
        model, args.freeze, peft=bool(args.lora_rank or args.adapter_dim)
    )
    logger.info("training %d of %d parameters", trainable, total)
    cfg = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio,
        grad_accum=args.grad_accum,
        images_per_step=args.images_per_step,
        prompts_per_image=args.prompts_per_image,
        box_prob=args.box_prob,
        correction_iters=args.correction_iters,
        grad_clip=args.grad_clip,
        bf16=args.bf16,
        seed=args.seed,
        log_every=args.log_every,
        save_every=args.save_every,
        eval_every=args.eval_every,
        eval_clicks=args.clicks,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        loss=LossWeights(iou_l1=None if args.iou_loss == "auto" else args.iou_loss == "l1"),
    )
    val = Subset(ds, val_names) if val_names else None
    trainer = Trainer(model, Subset(ds, train_names), cfg, args.out, val_data=val)
    summary = trainer.fit(resume=args.resume)
    summary["trainable_parameters"], summary["total_parameters"] = trainable, total
    line = {k: summary.get(k) for k in ("step", "completed", "wall_s")}
    if "val" in summary:
        line.update(
            {
                k: round(summary["val"][k], 4)
                for k in ("miou_1pt", "miou_box")
                if k in summary["val"]
            }
        )
    print(json.dumps(line))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from samkit.train.datasets import Subset
    from samkit.train.evaluate import evaluate, plot_miou_curve
    from samkit.train.lora import load_adapters

    family = _checked_inputs(args)  # before the data is read
    ds, train_names, val_names = _splits(args)
    names = {"val": val_names, "train": train_names, "all": ds.names}[args.split]
    if not names:
        raise ValueError(
            f"the {args.split} split of {args.data} is empty (--val-fraction {args.val_fraction})"
        )
    if args.checkpoint is None:
        print(
            "samkit eval: WARNING: no --checkpoint: evaluating RANDOMLY INITIALISED weights of "
            f"{args.model} (pass --checkpoint PATH to evaluate trained weights)",
            file=sys.stderr,
        )
    model = _load_model(args, family)
    if args.adapters:
        load_adapters(model, args.adapters)
    metrics = evaluate(model, Subset(ds, names), args.clicks, progress=not args.no_progress)
    metrics["split"] = args.split
    metrics["data"] = str(args.data)
    metrics["model"], metrics["checkpoint"] = args.model, args.checkpoint  # None: random weights
    if args.split != "all":
        metrics["val_fraction"], metrics["split_seed"] = args.val_fraction, args.split_seed
    shown = ", ".join(names[:20]) + (f", ... (+{len(names) - 20} more)" if len(names) > 20 else "")
    print(
        f"evaluated {len(names)} of {len(ds.names)} images of {args.data} (split {args.split}): "
        f"{shown}",
        file=sys.stderr,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    plot_miou_curve(metrics, out / "miou_vs_clicks.png", f"{Path(args.data).name} ({args.split})")
    print(
        json.dumps(
            {
                k: round(v, 4)
                for k, v in metrics.items()
                if k.startswith(("miou_", "baseline")) and isinstance(v, float)
            }
        )
    )
    return 0
