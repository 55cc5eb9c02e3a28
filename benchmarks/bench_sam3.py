"""SAM 3: bf16 drift on the fixture model, full-size speed in fp32 / bf16, the official package.

    python benchmarks/bench_sam3.py drift            # -> results/sam3_drift.json
    python benchmarks/bench_sam3.py speed [--repeats 2] [--threads 2]   # -> results/sam3_speed.json
    python benchmarks/bench_sam3.py prompts [--repeats 1]               # -> results/sam3_prompts.json
    python benchmarks/bench_sam3.py official [--repeats 2] [--full]     # -> results/sam3_official.json

Every result records the CPU model, its vector ISA and the load average (`machine`).

`drift`: the sam3_tiny fixture backbone (ViT + both necks) on truck.jpg in float32 and in
bfloat16 (every weight and the input cast; RoPE, as in the official code, rotates in float32):
relative L2 error and max |diff| of each pyramid level, and what the bf16 features do to the
interactive head's answers on the fixture's four click / box cases (heads in float32): IoU of the
masks at the original size and the largest change of a predicted IoU.

`drift` also runs the whole fixture model (`build_sam3_image_model(dtype=...)` + `Sam3Processor`)
in bfloat16 and float32 on every fixture case (`sam3_pipeline.py`): per step the largest score and
box change over all queries, queries kept by one dtype only (with the fp32 score's distance to the
threshold), final-mask IoU over the pixels whose fp32 logit is clear of 0 by 0.25 and over all
pixels, and for `predict_inst` the mask IoUs and the predicted-IoU change ("worst": over all steps).

`prompts`: the full-size model with random weights: one fp32 `set_image` (time, peak RSS), then
the prompt side alone, fp32 and bf16 alternated: a new text prompt, a cached one, an exemplar box,
a re-threshold, 1 and 4 concepts in one pass (-> per extra concept), a click (`predict_inst`).

`official`: samkit and the official `sam3` 0.1.4 (the oracle venv, `--oracle-python`), each in its
own process (`sam3_official_timing.py`), alternated samkit / official `--repeats` times: set_image
+ one text prompt on the tiny fixture model (`--full`: official sizes, random weights); the ratio
official / samkit of the best times.

`speed`: the full-size official architecture (`_create_vit_backbone`: 1008 px, patch 14,
embed 1024, depth 32, 16 heads, global blocks 7/15/23/31, window 24; plus both necks, as
`set_image` runs them) with random weights: the FLOPs of one image (torch's FlopCounterMode),
time per image in float32 and bfloat16 measured alternately (A B A B) in one process, the
achieved share of the n=2048 matmul rate of the same dtype measured in the same run, and the bf16
speed-up next to the bf16 / fp32 matmul-rate ratio. Peak RSS of the float32 model's forward is
read (VmHWM) before the bf16 copy exists.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import count_flops, matmul_gflops, write_json  # noqa: E402
from benchmarks.sam3_pipeline import (  # noqa: E402
    compare,
    machine,
    prompt_speed,
    run_fixture_cases,
    summary,
)
from samkit.layers.sine_position import PositionEmbeddingSine  # noqa: E402
from samkit.modeling.sam3.backbone import SAM3VLBackbone  # noqa: E402
from samkit.modeling.sam3.interactive import build_tracker_heads  # noqa: E402
from samkit.modeling.sam3.neck import Sam3DualViTDetNeck  # noqa: E402
from samkit.modeling.sam3.vit import Sam3ViT  # noqa: E402
from samkit.predict.sam3_interactive import Sam3InteractivePredictor  # noqa: E402
from samkit.predict.transforms import sam3_image_to_tensor  # noqa: E402

SHARED = ROOT.parent / "shared"
FX = SHARED / "fixtures" / "sam3_tiny"


def _backbone(trunk: Sam3ViT) -> SAM3VLBackbone:
    neck = Sam3DualViTDetNeck(trunk, PositionEmbeddingSine(256), 256, add_sam2_neck=True)
    return SAM3VLBackbone(neck, None, scalp=1).eval()


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _rel(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.double(), b.double()
    return {
        "rel_l2": float((a - b).norm() / a.norm()),
        "max_abs": float((a - b).abs().max()),
        "max_abs_value": float(a.abs().max()),
    }


def drift() -> dict:
    import json

    sd = torch.load(FX / "sam3_tiny.pt", map_location="cpu", weights_only=True)["model"]
    pre = "detector.backbone.vision_backbone."
    trunk = Sam3ViT(embed_dim=64, depth=4, num_heads=2, global_att_blocks=(1, 3))
    b32 = _backbone(trunk)
    b32.vision_backbone.load_state_dict(
        {k[len(pre) :]: v for k, v in sd.items() if k.startswith(pre)}, strict=True
    )
    b16 = copy.deepcopy(b32).to(torch.bfloat16)
    heads = build_tracker_heads().eval()
    heads.load_tracker_state({k[8:]: v for k, v in sd.items() if k.startswith("tracker.")})
    image = Image.open(SHARED / "images" / "truck.jpg").convert("RGB")
    x = sam3_image_to_tensor(image)[None]
    with torch.inference_mode():
        o32 = b32.forward_image(x)
        o16 = b16.forward_image(x.to(torch.bfloat16))
    levels = {}
    for i, (a, b) in enumerate(zip(o32["backbone_fpn"], o16["backbone_fpn"], strict=True)):
        levels[f"sam3_level{i}"] = _rel(a, b.float())
    for i, (a, b) in enumerate(
        zip(
            o32["sam2_backbone_out"]["backbone_fpn"],
            o16["sam2_backbone_out"]["backbone_fpn"],
            strict=True,
        )
    ):
        levels[f"sam2_level{i}"] = _rel(a, b.float())
    manifest = json.loads((FX / "manifest.json").read_text())
    hw = manifest["images"]["truck"]["hw"]
    pred = Sam3InteractivePredictor(heads, max_hole_area=0.0)
    states = {}
    with torch.inference_mode():
        for name, out in (("fp32", o32), ("bf16", o16)):
            s2 = {k: v for k, v in out["sam2_backbone_out"].items()}
            s2["backbone_fpn"] = [f.float() for f in s2["backbone_fpn"]]
            bo = {"sam2_backbone_out": heads.project_sam2_levels(s2)}
            states[name] = {"backbone_out": bo, "original_height": hw[0], "original_width": hw[1]}
    inst = {}
    for case, spec in sorted(manifest["inst_cases"].items()):
        kw = dict(spec["kwargs"])
        m32, i32, _ = pred.predict_inst(states["fp32"], **kw)
        m16, i16, _ = pred.predict_inst(states["bf16"], **kw)
        a, b = m32 > 0, m16 > 0
        union = np.logical_or(a, b).sum(axis=(-2, -1))
        inter = np.logical_and(a, b).sum(axis=(-2, -1))
        inst[case] = {
            "mask_iou_min": float((inter / np.maximum(union, 1)).min()),
            "iou_prediction_max_abs_diff": float(np.abs(i32 - i16).max()),
        }
    return {
        "model": "sam3_tiny fixture backbone",
        "image": "truck.jpg",
        "levels": levels,
        "inst": inst,
    }


def speed(repeats: int) -> dict:
    load = Path("/proc/loadavg").read_text().split()[:3]
    torch.manual_seed(0)
    model = _backbone(Sam3ViT())  # official sizes
    n_params = sum(p.numel() for p in model.parameters())
    x32 = torch.randn(1, 3, 1008, 1008)
    with torch.inference_mode():
        t0 = time.perf_counter()
        flops = count_flops(lambda: model.forward_image(x32))  # also the fp32 warm-up
        first_fp32 = time.perf_counter() - t0
    peak_rss_fp32 = _vm("VmHWM")
    print(f"fp32 first call {first_fp32:.1f} s; matmul rates...", file=sys.stderr, flush=True)
    peak32, peak16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    x16 = x32.to(torch.bfloat16)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with torch.inference_mode():
        model16.forward_image(x16)  # warm-up
        for _ in range(repeats):
            for name, m, x in (("fp32", model, x32), ("bf16", model16, x16)):
                t0 = time.perf_counter()
                m.forward_image(x)
                times[name].append(time.perf_counter() - t0)
                print(f"{name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    result = {
        "machine": machine(),
        "model": "full-size SAM 3 ViT + dual neck (random weights), 1 image 1008x1008",
        "n_params": n_params,
        "loadavg_at_start": load,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "gflop_per_image": flops / 1e9,
        "matmul_fp32_gflops_per_s": peak32,
        "matmul_bf16_gflops_per_s": peak16,
        "matmul_bf16_over_fp32": peak16 / peak32,
        "first_fp32_call_s": first_fp32,
        "peak_rss_fp32_forward_mib": peak_rss_fp32 / 2**20,
    }
    for name, peak in (("fp32", peak32), ("bf16", peak16)):
        best = min(times[name])
        result[name] = {
            "times_s": times[name],
            "min_s": best,
            "achieved_gflops_per_s": flops / best / 1e9,
            "share_of_matmul_rate": flops / best / 1e9 / peak,
        }
    result["bf16_speedup"] = result["fp32"]["min_s"] / result["bf16"]["min_s"]
    result["bf16_speedup_over_matmul_ratio"] = (
        result["bf16_speedup"] / result["matmul_bf16_over_fp32"]
    )
    return result


def pipeline_drift() -> dict:
    """The whole tiny fixture model in bf16 against fp32 on every fixture case."""
    ref = run_fixture_cases(torch.float32)
    low = run_fixture_cases(torch.bfloat16)
    report = compare(ref, low)
    return {"machine": machine(), "worst": summary(report), "steps": report}


def official_ratio(rounds: int, full: bool, threads: int, oracle_python: str) -> dict:
    """samkit vs the official package, each in its own process (`sam3_official_timing.py`),
    alternated samkit, official, samkit, official, ... (`rounds` pairs) on this CPU."""
    import json
    import os
    import subprocess

    script = str(Path(__file__).resolve().parent / "sam3_official_timing.py")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    env["PYTHONPATH"] = str(ROOT / "src")
    runs: dict[str, list[dict]] = {"samkit": [], "official": []}
    for _ in range(rounds):
        for impl, python in (("samkit", sys.executable), ("official", oracle_python)):
            cmd = [python, script, "--impl", impl, "--threads", str(threads)]
            cmd += ["--full"] if full else []
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{impl} timing failed:\n{done.stderr[-3000:]}")
            runs[impl].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(impl, runs[impl][-1], file=sys.stderr, flush=True)

    def best(impl: str, key: str) -> float:
        return min(t for r in runs[impl] for t in r[key])

    for r in runs["samkit"] + runs["official"]:
        r["total_s"] = [a + b for a, b in zip(r["set_image_s"], r["text_prompt_s"], strict=True)]
    ratios = {
        key: best("official", key) / best("samkit", key)
        for key in ("set_image_s", "text_prompt_s", "total_s")
    }
    return {
        "machine": machine(),
        "model": "official sizes, random weights" if full else "sam3_tiny fixture checkpoint",
        "threads": threads,
        "runs": runs,
        "official_over_samkit": ratios,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=("drift", "speed", "prompts", "official"))
    ap.add_argument("--repeats", type=int, default=2, help="timed fp32 / bf16 pairs (speed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="official: the full-size model")
    ap.add_argument(
        "--oracle-python",
        default=str(ROOT.parent / "oracle3" / ".venv-sam3" / "bin" / "python"),
        help="official: the python of the oracle venv (../shared/oracle/sam3/README.md)",
    )
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.what == "drift":
        write_json("sam3_drift", {"backbone": drift(), "pipeline": pipeline_drift()}, args.out)
    elif args.what == "prompts":
        write_json(
            "sam3_prompts", {"threads": args.threads, **prompt_speed(args.repeats)}, args.out
        )
    elif args.what == "official":
        write_json(
            "sam3_official",
            official_ratio(args.repeats, args.full, args.threads, args.oracle_python),
            args.out,
        )
    else:
        write_json("sam3_speed", {"threads": args.threads, **speed(args.repeats)}, args.out)


if __name__ == "__main__":
    main()
