"""Interactive-segmentation evaluation: mIoU after 1..K deterministic clicks and from a box.

The click protocol (the one the SAM paper follows, after RITM):

* click 1 is the pixel of the instance farthest from its boundary (Euclidean distance transform
  of the mask padded with zeros, so the image border counts as boundary; ties go to the first
  pixel in row-major order); the model runs with multimask output and the mask with the highest
  predicted IoU is kept;
* click k > 1 is the pixel farthest from the boundary of the false-negative area or of the
  false-positive area of the current prediction, whichever holds the farther point (a tie goes to
  the false negative); it is a foreground click for a false negative and a background click for a
  false positive; the model gets all clicks so far, the previous kept low-res logits as
  `mask_input`, and runs with single-mask output. An instance predicted without error keeps its
  prediction;
* the box prompt is the tight box (x0, y0, x1, y1) of the instance's pixels, single-mask output.

Besides the kept mask, click 1 also reports the "oracle" IoU: the best of the three multimask
outputs against the ground truth, as the SAM paper's oracle results do (it measures the masks
without the IoU head's choice).

IoU is computed at the original image resolution and averaged over instances (mIoU).

The model sees what its predictor gives it: a SAM 1 model the `SamPredictor` input (longest side
resized, padded), a SAM 2 model the `Sam2ImagePredictor` input (square resize), boxes as SAM 2's
corner points, and as `mask_input` the low-res logits that predictor returns (clamped to
[-32, 32]); so looping `SamPredictor.predict` / `Sam2ImagePredictor.predict` over the instances
with this protocol gives the same numbers (tests/train/test_evaluate.py does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

from samkit.io.atomic import atomic_path
from samkit.io.progress import Progress
from samkit.train.datasets import Sample
from samkit.train.families import family_ops


def farthest_point(region: np.ndarray) -> tuple[float, tuple[int, int] | None]:
    """(distance, (x, y)) of the pixel of `region` farthest from its boundary.

    The region is zero-padded before the distance transform, so pixels on the image border are
    at distance 1. Ties go to the first pixel in row-major order. An empty region gives (0, None).
    """
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return 0.0, None
    dist = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = divmod(int(np.argmax(dist)), region.shape[1])
    return float(dist[y, x]), (x, y)


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The next evaluation click ((x, y), label) for a prediction, or None if it is exact."""
    d_fn, p_fn = farthest_point(gt & ~pred)
    d_fp, p_fp = farthest_point(pred & ~gt)
    if p_fn is None and p_fp is None:
        return None
    if p_fp is None or (p_fn is not None and d_fn >= d_fp):
        return p_fn, 1  # type: ignore[return-value]
    return p_fp, 0


def tight_box(mask: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the mask's pixels (inclusive indices), float64."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


class _Decoder:
    """Runs the prompt encoder + mask decoder on one image embedding, results at full size."""

    def __init__(self, model: torch.nn.Module, sample: Sample) -> None:
        self.all_masks: np.ndarray | None = None  # BxMxHxW of the last multimask call
        self.ops = family_ops(model)
        self.prep = self.ops.prepare(sample)
        self.feats = self.ops.encode([self.prep])

    def __call__(
        self,
        coords: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[np.ndarray, torch.Tensor]:
        ops, prep = self.ops, self.prep
        dev = ops.model.device
        points = None
        if coords is not None:
            c = ops.to_input_frame(coords, prep)
            points = (c, torch.as_tensor(labels, dtype=torch.float32, device=dev))
        box_t = None
        if boxes is not None:
            box_t = ops.to_input_frame(boxes.reshape(-1, 2, 2), prep).reshape(-1, 4)
        low, score, _obj = ops.decode(self.feats, None, points, box_t, mask_input, multimask)
        if multimask:  # upscale all three once: the kept mask is one of them
            rows, best = torch.arange(low.shape[0], device=dev), score.argmax(dim=1)
            every = ops.upscale(low, prep) > ops.mask_threshold
            self.all_masks = every.cpu().numpy()
            return every[rows, best].cpu().numpy(), ops.as_mask_input(low[rows, best][:, None])
        full = ops.upscale(low, prep)[:, 0] > ops.mask_threshold
        return full.cpu().numpy(), ops.as_mask_input(low)


@torch.inference_mode()
def evaluate_sample(
    model: torch.nn.Module, sample: Sample, clicks: int = 5, max_batch: int = 32
) -> list[dict[str, Any]]:
    """Per-instance results of the click protocol and the box prompt on one sample."""
    if clicks < 1:
        raise ValueError(f"clicks must be >= 1, got {clicks}")
    run = _Decoder(model, sample)
    results = []
    for start in range(0, sample.masks.shape[0], max_batch):
        gt = sample.masks[start : start + max_batch]
        n = gt.shape[0]
        pts = [[farthest_point(g)[1]] for g in gt]
        lbl = [[1] for _ in range(n)]
        pred, low = run(np.array(pts, dtype=np.float64), np.array(lbl), None, None, True)
        history = [[iou(pred[i], gt[i])] for i in range(n)]
        assert run.all_masks is not None
        oracle = [max(iou(m, gt[i]) for m in run.all_masks[i]) for i in range(n)]
        for _ in range(1, clicks):
            new_pts, done = [], []
            for i in range(n):
                click = next_click(pred[i], gt[i])
                done.append(click is None)
                (p, label) = click if click is not None else (pts[i][-1], lbl[i][-1])
                pts[i].append(p)
                lbl[i].append(label)
                new_pts.append(p)
            new_pred, new_low = run(
                np.array(pts, dtype=np.float64), np.array(lbl), None, low, False
            )
            keep = torch.tensor(done, device=low.device)
            low = torch.where(keep[:, None, None, None], low, new_low)
            pred = np.where(np.array(done)[:, None, None], pred, new_pred)
            for i in range(n):
                history[i].append(iou(pred[i], gt[i]))
        boxes = np.stack([tight_box(g) for g in gt])
        box_pred, _ = run(None, None, boxes, None, False)
        for i in range(n):
            results.append(
                {
                    "image": sample.name,
                    "instance": start + i,
                    "area": int(gt[i].sum()),
                    "iou_per_click": history[i],
                    "iou_1pt_oracle": oracle[i],
                    "iou_box": iou(box_pred[i], gt[i]),
                    "clicks": [[int(p[0]), int(p[1]), int(q)] for p, q in zip(pts[i], lbl[i])],
                    "baseline_whole_image": float(gt[i].mean()),
                    "baseline_box": iou(_box_mask(boxes[i], gt[i].shape), gt[i]),
                }
            )
    return results


def _box_mask(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def evaluate(
    model: torch.nn.Module,
    samples: Iterable[Sample],
    clicks: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU metrics of a SAM 1 or SAM 2 model on a dataset.

    Args:
        model: a SAM 1 or SAM 2 model (put in eval mode here).
        samples: the evaluation samples.
        clicks: number of clicks simulated per instance (>= 1).
        progress: show progress (`samkit.io.progress`).

    Returns:
        dict with `miou_1pt`, `miou_3pt`, `miou_5pt` (those with enough clicks), `miou_box`,
        `miou_1pt_oracle` (best of the three click-1 masks, see the module docstring),
        `miou_per_click` (list), the baselines `baseline_whole_image` (IoU of predicting the whole
        image) and `baseline_box` (IoU of the filled tight box), counts, `images` (the names of
        the evaluated images, in order) and `per_instance`.
    """
    model.eval()
    total = len(samples) if isinstance(samples, Sized) else 0
    per_instance: list[dict[str, Any]] = []
    names: list[str] = []
    with Progress(total, "eval", "images", enabled=progress) as bar:
        for s in samples:
            per_instance.extend(evaluate_sample(model, s, clicks))
            names.append(s.name)
            bar.update(1, s.name)
    if not per_instance:
        raise ValueError("evaluate: no instances to evaluate")
    curve = np.array([r["iou_per_click"] for r in per_instance]).mean(axis=0)
    out: dict[str, Any] = {}
    for k in (1, 3, 5):
        if k <= clicks:
            out[f"miou_{k}pt"] = float(curve[k - 1])
    out["miou_1pt_oracle"] = float(np.mean([r["iou_1pt_oracle"] for r in per_instance]))
    out["miou_box"] = float(np.mean([r["iou_box"] for r in per_instance]))
    out["miou_per_click"] = [float(v) for v in curve]
    out["baseline_whole_image"] = float(np.mean([r["baseline_whole_image"] for r in per_instance]))
    out["baseline_box"] = float(np.mean([r["baseline_box"] for r in per_instance]))
    out["num_images"] = len(names)
    out["images"] = names
    out["num_instances"] = len(per_instance)
    out["per_instance"] = per_instance
    return out


def plot_miou_curve(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Draw mIoU versus number of clicks (and the box mIoU as a dashed line) as a PNG."""
    curve = metrics["miou_per_click"]
    w, h, left, right, top, bottom = 560, 400, 60, 20, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    x_of = lambda k: left + (k - 1) * (w - left - right) / max(1, len(curve) - 1)  # noqa: E731
    y_of = lambda v: top + (1 - v) * (h - top - bottom)  # noqa: E731
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for v in np.linspace(0, 1, 6):
        y = y_of(v)
        d.line([left - 4, y, w - right, y], fill=(220, 220, 220))
        d.text((left - 36, y - 6), f"{v:.1f}", fill="black")
    for k in range(1, len(curve) + 1):
        d.text((x_of(k) - 3, h - bottom + 6), str(k), fill="black")
    d.text((w // 2 - 40, h - 22), "number of clicks", fill="black")
    d.text((8, 8), title or "mIoU vs clicks", fill="black")
    box = metrics.get("miou_box")
    if box is not None:
        y = y_of(box)
        for x in range(left, w - right, 12):
            d.line([x, y, min(x + 6, w - right), y], fill=(200, 80, 40), width=2)
        d.text((w - right - 110, y - 14), f"box {box:.3f}", fill=(200, 80, 40))
    pts = [(x_of(k + 1), y_of(v)) for k, v in enumerate(curve)]
    if len(pts) > 1:
        d.line(pts, fill=(30, 90, 200), width=2)
    for (x, y), v in zip(pts, curve):
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(30, 90, 200))
        d.text((x - 14, y - 18), f"{v:.3f}", fill=(30, 90, 200))
    path = Path(path)
    with atomic_path(path) as tmp:  # the format from the real name, not the temporary's
        img.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path
