"""The fine-tuning loop: AdamW, warm-up + decay, accumulation, bf16, clipping, exact resume.

Every step draws its images and prompts from generators seeded by (seed, step, micro-step), so a
run is a pure function of its config and its starting weights; a checkpoint holds the model, the
optimizer, the scheduler, the step and the global RNG states, and a resumed run produces the same
loss curve as an uninterrupted one.

Out folder: ``log.jsonl`` (one JSON record per logged step / evaluation), ``checkpoints/step_N/``
(``model.safetensors`` + ``trainer_state.pt``), and at the end ``model.safetensors`` (LoRA merged:
an official-format state dict that `samkit.build_sam` / `samkit.build_sam2` loads), ``adapters.safetensors``
when adapters were trained, ``train_summary.json`` and, with validation data, ``metrics.json`` and
``miou_vs_clicks.png``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samkit.checkpoint import read_state_dict, save_checkpoint
from samkit.io.atomic import (
    atomic_dir,
    atomic_write_text,
    is_temporary,
    remove_stale_temporaries,
)
from samkit.io.progress import Progress
from samkit.io.provenance import check_file, of_model, to_metadata
from samkit.train.config import TrainConfig
from samkit.train.datasets import PreparedSample, Sample
from samkit.train.families import family_ops
from samkit.train.lora import LoRALinear, adapter_state_dict, merge_lora
from samkit.train.losses import sam_loss
from samkit.train.optim import WarmupDecay, param_groups, rng_state, set_rng_state
from samkit.train.prompts import noisy_boxes, sample_correction_points, sample_points_in_masks


class Trainer:
    """Fine-tunes a SAM 1 or SAM 2 model on a list / dataset of `Sample`s.

    The family-specific steps (input frame, encoder outputs, prompt format, object scores) go
    through `samkit.train.families.family_ops`; the loop itself is shared.

    Args:
        model: the model (with LoRA / adapters / frozen parts already set up).
        train_data: indexable samples (`len` and `[i]`).
        config: the run's hyper-parameters.
        out_dir: output folder.
        val_data: samples for the periodic / final evaluation (optional).
        cache: keep prepared (resized) samples in memory.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Sequence[Sample],
        config: TrainConfig,
        out_dir: str | Path,
        val_data: Sequence[Sample] | None = None,
        cache: bool = True,
    ) -> None:
        config.validate()
        if len(train_data) == 0:
            raise ValueError("the training set is empty")
        self.model, self.data, self.cfg = model, train_data, config
        self.ops = family_ops(model)
        if config.loss.iou_l1 is None:  # the family's recipe: L1 IoU regression for SAM 2
            loss = dataclasses.replace(config.loss, iou_l1=self.ops.iou_l1)
            config = self.cfg = dataclasses.replace(config, loss=loss)
        self.val_data = val_data
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache: dict[int, PreparedSample] | None = {} if cache else None
        self.optimizer = torch.optim.AdamW(
            param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            WarmupDecay(config.warmup_steps, config.steps, config.schedule, config.min_lr_ratio),
        )
        self.step = 0
        self.encoder_trainable = any(p.requires_grad for p in self.ops.image_encoder.parameters())

    # ------------------------------------------------------------------ data
    def _prepared(self, i: int) -> PreparedSample:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        p = self.ops.prepare(self.data[i])
        keep = p.gt.flatten(1).any(1)  # instances that vanish when resized cannot be prompted
        if not keep.any():
            raise ValueError(f"{p.name}: every instance vanishes at {self.ops.img_size} px")
        p.gt = p.gt[keep]
        if self.cache is not None:
            self.cache[i] = p
        return p

    def _batch(
        self, step: int, micro: int
    ) -> tuple[list[PreparedSample], np.ndarray, torch.Generator]:
        rng = np.random.default_rng([self.cfg.seed, step, micro])
        n, k = len(self.data), self.cfg.images_per_step
        idx = rng.choice(n, size=k, replace=n < k)
        preps = [self._prepared(int(i)) for i in idx]
        inst = [rng.integers(0, p.gt.shape[0], self.cfg.prompts_per_image) for p in preps]
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return preps, np.stack(inst), gen

    # ------------------------------------------------------------------ step
    def _micro_step(self, step: int, micro: int) -> dict[str, float]:
        m, cfg, ops = self.model, self.cfg, self.ops
        dev = m.device
        preps, inst, gen = self._batch(step, micro)
        b, p = inst.shape
        s = ops.img_size
        gt = torch.cat([x.gt[torch.as_tensor(inst[i])] for i, x in enumerate(preps)])  # (BP,S,S)
        valid = torch.zeros(b, s, s, dtype=torch.bool)
        for i, x in enumerate(preps):
            valid[i, : x.input_size[0], : x.input_size[1]] = True
        valid = valid.repeat_interleave(p, dim=0)
        gt_low = F.avg_pool2d(gt[:, None].float(), 4) >= 0.5  # (BP,1,S/4,S/4)
        valid_low = F.avg_pool2d(valid[:, None].float(), 4) > 0
        is_box = torch.rand(b * p, generator=gen) < cfg.box_prob
        first_pts = sample_points_in_masks(gt, gen)
        boxes = noisy_boxes(gt, gen, (s, s))
        # clip boxes to the unpadded image of each prompt
        lim = torch.tensor([[x.input_size[1] - 1, x.input_size[0] - 1] * 2 for x in preps])
        boxes = torch.minimum(boxes, lim.float().repeat_interleave(p, dim=0))
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        with autocast, torch.set_grad_enabled(self.encoder_trainable):
            feats = ops.encode(preps)
        emb_idx = torch.arange(b, device=dev).repeat_interleave(p)
        groups = [g for g in (~is_box, is_box) if g.any()]
        coords = [first_pts[g][:, None] for g in groups]
        labels = [torch.ones(int(g.sum()), 1) for g in groups]
        prev: list[Tensor | None] = [None] * len(groups)
        stats = {"focal": 0.0, "dice": 0.0, "iou_mse": 0.0, "train_iou": 0.0}
        if ops.has_object_scores:
            stats["obj"] = 0.0
        total: Tensor | float = 0.0
        rounds = 1 + cfg.correction_iters
        for r in range(rounds):
            for gi, g in enumerate(groups):
                box_group = bool(is_box[g][0])
                multimask = r == 0 and not box_group
                pts = None if (box_group and r == 0) else (coords[gi].to(dev), labels[gi].to(dev))
                with autocast:
                    low, iou_pred, obj = ops.decode(
                        feats,
                        emb_idx[g.to(dev)],
                        pts,
                        boxes[g].to(dev) if box_group else None,
                        prev[gi],
                        multimask,
                    )
                out = sam_loss(
                    low.float(),
                    iou_pred.float(),
                    gt_low[g].to(dev),
                    valid_low[g].to(dev),
                    cfg.loss,
                    None if obj is None else obj.float(),
                )
                frac = float(g.sum()) / (b * p * rounds)
                total = total + out["loss"] * frac
                for key in stats:
                    if key != "train_iou":
                        stats[key] += float(out[key]) * frac
                sel = out["iou"][torch.arange(low.shape[0]), out["best"]]
                stats["train_iou"] += float(sel.mean()) * frac
                if r + 1 < rounds:
                    best = iou_pred.argmax(1) if multimask else torch.zeros_like(out["best"])
                    chosen = low[torch.arange(low.shape[0]), best][:, None].detach().float()
                    prev[gi] = ops.as_mask_input(chosen)
                    up = F.interpolate(chosen, (s, s), mode="bilinear", align_corners=False)
                    new_pts, new_lbl = sample_correction_points(
                        up[:, 0].cpu() > 0, gt[g], gen, valid[g]
                    )
                    coords[gi] = torch.cat([coords[gi], new_pts[:, None]], 1)
                    labels[gi] = torch.cat([labels[gi], new_lbl[:, None]], 1)
                    if box_group and r == 0:  # the box group gets its first point now
                        coords[gi], labels[gi] = coords[gi][:, 1:], labels[gi][:, 1:]
        (total / cfg.grad_accum).backward()
        stats["loss"] = float(total.detach())
        return stats

    def train_step(self) -> dict[str, float]:
        """One optimizer step (grad_accum micro-steps); returns the logged values."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        for micro in range(self.cfg.grad_accum):
            for k, v in self._micro_step(self.step, micro).items():
                stats[k] = stats.get(k, 0.0) + v / self.cfg.grad_accum
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return stats

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        """Write ``checkpoints/step_N`` (model + trainer state) and prune old ones."""
        root = self.out / "checkpoints"
        final = root / f"step_{self.step:07d}"
        meta = {"step": str(self.step), **to_metadata(of_model(self.model))}
        with atomic_dir(final) as tmp:  # the folder appears complete, or not at all
            save_checkpoint(self.model, tmp / "model.safetensors", meta)
            torch.save(
                {
                    "step": self.step,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_state(),
                    "config": json.dumps(self.cfg.to_dict()),
                },
                tmp / "trainer_state.pt",
            )
        ckpts = _checkpoints(root)
        for old in ckpts[: max(0, len(ckpts) - max(1, self.cfg.keep_checkpoints))]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        ckpts = [
            d for d in _checkpoints(self.out / "checkpoints") if (d / "trainer_state.pt").is_file()
        ]
        return ckpts[-1] if ckpts else None

    def load(self, ckpt: str | Path) -> None:
        """Restore model, optimizer, scheduler, step and RNG states from a checkpoint folder.

        Raises:
            ValueError: the checkpoint was made by another model (the message names both) or
                with other LoRA / adapter settings.
        """
        ckpt = Path(ckpt)
        check_file(ckpt / "model.safetensors", self.model, "this fine-tuning run")
        state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=True)
        sd = read_state_dict(ckpt / "model.safetensors")
        try:
            missing, unexpected = self.model.load_state_dict(sd, strict=False)
        except RuntimeError as e:  # a tensor of another shape (e.g. another LoRA rank)
            raise ValueError(
                f"{ckpt}: checkpoint does not match the model (LoRA / adapter settings differ?): "
                f"{str(e).splitlines()[-1].strip()}"
            ) from None
        if missing or unexpected:
            raise ValueError(
                f"{ckpt}: checkpoint does not match the model (LoRA / adapter settings differ?): "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])

    # ------------------------------------------------------------------ run
    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_log(self) -> None:
        path = self.out / "log.jsonl"
        if not path.exists():
            return
        keep = [
            ln
            for ln in path.read_text().splitlines()
            if ln and json.loads(ln).get("step", 0) <= self.step
        ]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    def evaluate(self, clicks: int | None = None) -> dict[str, Any]:
        from samkit.train.evaluate import evaluate  # scipy: the [train] extra

        if not self.val_data:
            raise ValueError("no validation data")
        return evaluate(self.model, self.val_data, clicks or self.cfg.eval_clicks)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to `config.steps` (or `stop_after`), resuming from the latest checkpoint if asked;
        a new run replaces the log and checkpoints of an earlier run in the output folder.

        Returns:
            The summary (also written to ``train_summary.json`` when the run completes).
        """
        cfg = self.cfg
        remove_stale_temporaries(self.out / "checkpoints")  # a killed save's folder
        ckpt = self.latest_checkpoint() if resume else None
        if ckpt is not None:
            self.load(ckpt)
            self._truncate_log()
        else:  # a new run replaces an earlier one in this folder: its log and its checkpoints
            (self.out / "log.jsonl").unlink(missing_ok=True)
            for old in (self.out / "checkpoints").glob("step_*"):
                shutil.rmtree(old, ignore_errors=True)  # else --resume would pick the old run
        end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
        bar = Progress(
            cfg.steps, "finetune", "steps", enabled=cfg.progress, initial=self.step, every_s=10.0
        )
        t0, images = time.perf_counter(), 0
        last: dict[str, float] = {}
        while self.step < end:
            stats = self.train_step()
            images += cfg.images_per_step * cfg.grad_accum
            ips = images / (time.perf_counter() - t0)
            last = stats
            bar.update(
                1, f"loss {stats['loss']:.4f}, iou {stats['train_iou']:.3f}, {ips:.2f} img/s"
            )
            if self.step % cfg.log_every == 0 or self.step == end:
                self._log(
                    {
                        "step": self.step,
                        **stats,
                        "img_per_s": ips,
                        "time_s": time.perf_counter() - t0,
                    }
                )
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save()
            if (
                cfg.eval_every
                and self.val_data
                and self.step % cfg.eval_every == 0
                and self.step < cfg.steps
            ):
                met = self.evaluate()
                self._log(
                    {
                        "step": self.step,
                        "event": "eval",
                        **{k: v for k, v in met.items() if k != "per_instance"},
                    }
                )
        bar.close()
        if self.step < cfg.steps:  # interrupted on purpose (stop_after)
            self.save()
            return {"step": self.step, "completed": False}
        return self.finish(last, time.perf_counter() - t0)

    def finish(self, last: dict[str, float], wall_s: float) -> dict[str, Any]:
        """Save the final checkpoint, the merged model, and evaluate on the validation data."""
        self.save()
        has_adapters = any(".adapter." in k for k in self.model.state_dict())
        merged = merge_lora(self.model)
        meta = {
            "samkit_train": json.dumps(self.cfg.to_dict()),
            "step": str(self.step),
            **to_metadata(of_model(self.model)),
        }
        if has_adapters:
            save_checkpoint(adapter_state_dict(self.model), self.out / "adapters.safetensors", meta)
            base = {k: v for k, v in self.model.state_dict().items() if ".adapter." not in k}
            save_checkpoint(base, self.out / "model.safetensors", meta)
        else:
            save_checkpoint(self.model, self.out / "model.safetensors", meta)
        summary: dict[str, Any] = {
            "step": self.step,
            "completed": True,
            "final": last,
            "wall_s": wall_s,
            "lora_layers_merged": merged,
            "adapters": has_adapters,
            "config": self.cfg.to_dict(),
        }
        if self.val_data:
            from samkit.train.evaluate import plot_miou_curve

            met = self.evaluate()
            atomic_write_text(self.out / "metrics.json", json.dumps(met, indent=1))
            plot_miou_curve(met, self.out / "miou_vs_clicks.png", "validation mIoU vs clicks")
            summary["val"] = {k: v for k, v in met.items() if k != "per_instance"}
            self._log({"step": self.step, "event": "eval", **summary["val"]})
        atomic_write_text(self.out / "train_summary.json", json.dumps(summary, indent=1))
        return summary


def _checkpoints(root: Path) -> list[Path]:
    """The `step_N` checkpoint folders under `root`, oldest first (not `atomic_dir` temporaries)."""
    return sorted(d for d in root.glob("step_*") if not is_temporary(d))


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())
