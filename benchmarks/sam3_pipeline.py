"""SAM 3 full pipeline for the benchmarks: fixture cases in one dtype, fp32-vs-bf16 comparison,
and per-prompt timing of the full-size model on a set image.

`run_fixture_cases(dtype)` replays every `sam3_tiny` fixture case through `Sam3Processor` (cases
a-d step by step on one state with the recorded thresholds, case e as `set_image_batch` + "bottle",
cases f_* through `Sam3Processor.predict_inst`) and keeps what a user sees. `compare(ref, other)` measures
how far `other` is from `ref`: scores and boxes of all queries, kept-set changes, final mask IoU on
the pixels whose reference logit is clear of the threshold, `predict_inst` masks and IoUs. Used by
`bench_sam3.py drift` and by `tests/paths/test_sam3_paths.py`.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samkit.build.sam3 import build_sam3_image_model, sam3_from_config
from samkit.configs.sam3 import Sam3Config
from samkit.predict.sam3 import Sam3Processor

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FX = SHARED / "fixtures" / "sam3_tiny"
IMAGES = SHARED / "images"
# A final-mask pixel counts as "sure" where the reference logit is at least this far from 0
# (the SAM 1 / 2 bf16 flip band of tests/paths/test_paths_agree.py).
SURE_LOGIT = 0.25


def machine() -> dict[str, Any]:
    """CPU model, the vector ISA torch can use, core count and load average (now)."""
    cpu, flags = "?", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "?":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return {
        "cpu": cpu,
        "isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": len(
            [
                1
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("processor")
            ]
        ),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def _image(name: str) -> Image.Image:
    return Image.open(IMAGES / f"{name}.jpg").convert("RGB")


def _final(st: dict, thr: float) -> dict[str, np.ndarray]:
    out = st["_last_output"]
    logits = st["masks_logits"][:, 0].float().clamp(1e-7, 1 - 1e-7)
    return {
        "scores": out.scores[0].float().numpy().astype(np.float64),
        "boxes": out.pred_boxes[0].float().numpy(),
        "kept": np.flatnonzero(out.scores[0].float().numpy() > thr),
        "masks": st["masks"][:, 0].numpy(),
        "mask_logits": torch.logit(logits).numpy(),
        "threshold": np.float64(thr),
    }


def run_fixture_cases(
    dtype: torch.dtype, keep: dict[str, Any] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Every fixture case through the whole model in `dtype`; returns {step name: arrays}.

    `keep`, when given, also receives what the parity tests compare with the official recording
    (tests/predict/test_parity_sam3.py replays no case itself): per step of cases a-d the
    processor's state keys (`_last_output`, `scores`, `boxes`, `masks`, `masks_logits`), "e_batch"
    the batch state after its prompt, per `predict_inst` case its (masks, ious, low-res logits,
    full-size logits), and "processor" the `Sam3Processor`.
    """
    man = json.loads((FX / "manifest.json").read_text())
    model = build_sam3_image_model(checkpoint_path=FX / "sam3_tiny.pt", dtype=dtype)
    proc = Sam3Processor(model)
    proc.inst_interactive_predictor.max_hole_area = float(man["inst_max_hole_area"])
    res: dict[str, dict[str, np.ndarray]] = {}
    states: dict[str, dict] = {}
    for case, info in man["cases"].items():
        if case == "e_batch":
            continue
        if info["image"] not in states:
            states[info["image"]] = proc.set_image(_image(info["image"]))
        st = states[info["image"]]
        proc.reset_all_prompts(st)
        for i, step in enumerate(info["steps"]):
            thr = float(step["confidence_threshold"])
            proc.set_confidence_threshold(thr)
            if step["call"] == "set_text_prompt":
                st = proc.set_text_prompt(step["prompt"], st)
            else:
                st = proc.add_geometric_prompt(step["box_cxcywh_normalized"], step["label"], st)
            res[f"{case}/s{i}"] = _final(st, thr)
            if keep is not None:
                names = ("_last_output", "scores", "boxes", "masks", "masks_logits")
                keep[f"{case}/s{i}"] = {k: st[k] for k in names}
    proc.set_confidence_threshold(0.2)
    st = proc.set_image_batch([_image(n) for n in man["cases"]["e_batch"]["images"]])
    st = proc.set_text_prompt("bottle", st)
    if keep is not None:
        keep["e_batch"], keep["processor"] = st, proc
    for b in range(2):
        sc = st["_last_output"].scores[b].float().numpy().astype(np.float64)
        res[f"e_batch/img{b}"] = {
            "scores": sc,
            "boxes": st["_last_output"].pred_boxes[b].float().numpy(),
            "kept": np.flatnonzero(sc > 0.2),
            "threshold": np.float64(0.2),
        }
    st = states["truck"]
    for name, case in man["inst_cases"].items():
        kw = {
            k: np.asarray(v, dtype=np.int64 if k == "point_labels" else np.float32)
            if isinstance(v, list)
            else v
            for k, v in case["kwargs"].items()
        }
        masks, ious, low = proc.predict_inst(st, **kw)
        logits, _, _ = proc.predict_inst(st, **kw, return_logits=True)
        if keep is not None:
            keep[name] = (masks, ious, low, logits)
        res[name] = {"inst_masks": masks.astype(bool), "ious": ious, "mask_logits": logits}
    return res


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(ref: dict[str, dict], other: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Per step: max |score diff| (all queries), max |box diff| (normalised cxcywh, all queries),
    kept-set changes (queries kept in one run only, with the reference score's distance to the
    threshold), min mask IoU on sure pixels and over all pixels (queries kept in both),
    `predict_inst` min mask IoU (sure pixels / all) and max |IoU prediction diff|."""
    report: dict[str, dict[str, Any]] = {}
    for step, r in ref.items():
        o = other[step]
        row: dict[str, Any] = {}
        if "scores" in r:
            row["score_max_abs_diff"] = float(np.abs(r["scores"] - o["scores"]).max())
            row["box_max_abs_diff"] = float(np.abs(r["boxes"] - o["boxes"]).max())
            changed = sorted(set(r["kept"].tolist()) ^ set(o["kept"].tolist()))
            row["kept"] = len(r["kept"])
            row["kept_changes"] = [
                {"query": q, "ref_score_minus_threshold": float(r["scores"][q] - r["threshold"])}
                for q in changed
            ]
        if "masks" in r:
            both = sorted(set(r["kept"].tolist()) & set(o["kept"].tolist()))
            ri = {q: i for i, q in enumerate(r["kept"].tolist())}
            oi = {q: i for i, q in enumerate(o["kept"].tolist())}
            sure, full = [], []
            for q in both:
                a, b = r["masks"][ri[q]], o["masks"][oi[q]]
                keep = np.abs(r["mask_logits"][ri[q]]) > SURE_LOGIT
                sure.append(_iou(a[keep], b[keep]))
                full.append(_iou(a, b))
            row["mask_iou_sure_min"] = min(sure, default=1.0)
            row["mask_iou_min"] = min(full, default=1.0)
        if "inst_masks" in r:
            keep = np.abs(r["mask_logits"]) > SURE_LOGIT
            row["inst_mask_iou_sure_min"] = min(
                _iou(a[k], b[k]) for a, b, k in zip(r["inst_masks"], o["inst_masks"], keep)
            )
            row["inst_mask_iou_min"] = min(
                _iou(a, b) for a, b in zip(r["inst_masks"], o["inst_masks"])
            )
            row["iou_prediction_max_abs_diff"] = float(np.abs(r["ious"] - o["ious"]).max())
        report[step] = row
    return report


def summary(report: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Worst case of each quantity over the steps."""

    def worst(key: str, fn: Any) -> Any:
        vals = [row[key] for row in report.values() if key in row]
        return fn(vals) if vals else None

    return {
        "score_max_abs_diff": worst("score_max_abs_diff", max),
        "box_max_abs_diff": worst("box_max_abs_diff", max),
        "mask_iou_sure_min": worst("mask_iou_sure_min", min),
        "mask_iou_min": worst("mask_iou_min", min),
        "kept_changes": sum(len(row.get("kept_changes", [])) for row in report.values()),
        "kept_total": sum(row.get("kept", 0) for row in report.values()),
        "inst_mask_iou_sure_min": worst("inst_mask_iou_sure_min", min),
        "inst_mask_iou_min": worst("inst_mask_iou_min", min),
        "iou_prediction_max_abs_diff": worst("iou_prediction_max_abs_diff", max),
    }


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def prompt_speed(repeats: int, cfg: Sam3Config | None = None) -> dict[str, Any]:
    """Full-size SAM 3 (official sizes, random weights, seed 0) on truck.jpg: one fp32
    `set_image` (time, peak RSS), then the prompt side alone in fp32 and bf16, alternated."""
    start = machine()
    torch.manual_seed(0)
    cfg = cfg or Sam3Config()
    model = sam3_from_config(cfg).eval()
    proc = Sam3Processor(model)
    rss_model = _vm("VmRSS")
    image = _image("truck")
    st: dict = {}
    t_set = _timed(lambda: st.update(proc.set_image(image)))
    result: dict[str, Any] = {
        "machine_at_start": start,
        "model": "full-size SAM 3 image model (official sizes), random weights, truck.jpg",
        "n_params": sum(p.numel() for p in model.parameters()),
        "set_image_fp32_s": t_set,
        "rss_after_build_mib": rss_model / 2**20,
        "peak_rss_set_image_fp32_mib": _vm("VmHWM") / 2**20,
    }
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    proc16 = Sam3Processor(model16)
    # The bf16 state: the fp32 set_image's tensors cast to bf16 (what a bf16 set_image stores,
    # in shape and dtype; a second full-size backbone run would cost minutes on this machine).
    st16 = _cast_state(st, torch.bfloat16)
    box = [425, 600, 700, 875]
    words = iter(f"object number {i}" for i in range(10_000))
    runs: dict[str, dict[str, list[float]]] = {"fp32": {}, "bf16": {}}
    kept: dict[str, list[int]] = {"fp32": [], "bf16": []}

    def calls(p: Sam3Processor, s: dict, m: Any) -> dict[str, Any]:
        return {
            "text_new": lambda: p.set_text_prompt(next(words), s),
            "text_cached": lambda: p.set_text_prompt("a truck", s),
            "exemplar_box": lambda: p.add_geometric_prompt(box, True, s, box_format="xyxy"),
            "rethreshold": lambda: p.set_confidence_threshold(0.5, s),
            "concepts_1": lambda: p.set_text_prompts(["a truck"], s),
            "concepts_4": lambda: p.set_text_prompts(
                ["a truck", "a wheel", "a door", "a window"], s
            ),
            "click": lambda: p.predict_inst(
                s, point_coords=np.array([[500.0, 375.0]]), point_labels=np.array([1])
            ),
        }

    with torch.inference_mode():
        for p, s in ((proc, st), (proc16, st16)):
            p.reset_all_prompts(s)
            p.set_text_prompts(
                ["a truck", "a wheel", "a door", "a window"], s
            )  # warm-up, fills the text cache
            p.reset_all_prompts(s)
        for _ in range(repeats):
            for name, p, s, m in (("fp32", proc, st, model), ("bf16", proc16, st16, model16)):
                for key, fn in calls(p, s, m).items():
                    if key == "exemplar_box":
                        p.reset_all_prompts(s)
                        p.set_text_prompt("a truck", s)
                    runs[name].setdefault(key, []).append(_timed(fn))
                    if key == "text_new":
                        kept[name].append(len(s["scores"]))
                p.reset_all_prompts(s)
    for name in runs:
        best = {k: min(v) for k, v in runs[name].items()}
        best["per_extra_concept"] = (best["concepts_4"] - best["concepts_1"]) / 3
        result[name] = {"times_s": runs[name], "min_s": best, "kept_after_text_new": kept[name]}
    result["machine_at_end"] = machine()
    return result


def _cast_state(state: dict, dtype: torch.dtype) -> dict:
    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(dtype) if x.is_floating_point() else x
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(cast(v) for v in x)
        return x

    out = type(state)()
    out.update({k: cast(v) for k, v in state.items()})
    return out
