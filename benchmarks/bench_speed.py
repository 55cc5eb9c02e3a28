"""Speed paths: encoder fp32 / bf16 / int8 / compiled / onnxruntime, decoder, predict, memory.

    python benchmarks/bench_speed.py [--variant vit_b] [--repeats 3] [--threads 2]
        [--skip-compile] [--skip-onnx] [--sam2 sam2.1_hiera_small] [--memory-variant vit_h]

Prints one JSON (also written to benchmarks/results/speed_<variant>.json) and a summary table:
encoder latency per path with its speed-up over fp32 eager, the roofline ratio (achieved GFLOP/s
over the matmul GFLOP/s of the same dtype, both measured in this run), the relative error of each
path's image embedding against fp32, decoder latency for 1 prompt and throughput for 64, predict
with one point / 16 boxes on truck.jpg (decoder + postprocess to 1200x1800), and the peak memory
of `set_image` (and of a bigger variant's encoder forward) measured in a fresh subprocess.
Random weights: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import count_flops, matmul_gflops, median_time, write_json  # noqa: E402

IMAGES = ROOT.parent / "shared" / "images"

MEMORY_SCRIPT = """
import json, torch
import numpy as np
from PIL import Image
torch.set_num_threads({threads})
from samkit import build_sam, SamPredictor
from samkit.runtime.accel import optimize

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

def rss():
    # Reset the high-water mark to the current RSS (Linux >= 4.0), so VmHWM is the forward's peak.
    # (ru_maxrss is no use here: Linux carries the parent's RSS over fork + exec into it.)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")
model = build_sam({variant!r})
if {bf16}:
    optimize(model, dtype=torch.bfloat16)
weights = sum(p.numel() * p.element_size() for p in model.parameters())
mode = {mode!r}
if mode == "set_image":
    image = np.array(Image.open({image!r}).convert("RGB"))
    p = SamPredictor(model)
    before = rss()
    p.set_image(image)
else:
    x = torch.randn(1, 3, 1024, 1024)
    before = rss()
    with torch.inference_mode():
        model.image_encoder(x)
peak = status("VmHWM")
print(json.dumps({{"weights_bytes": weights, "rss_before_bytes": before, "peak_rss_bytes": peak,
                  "peak_above_before_bytes": peak - before}}))
"""


def measure_memory(variant: str, mode: str, bf16: bool, threads: int, image: str) -> dict:
    """Peak RSS (VmHWM) of one `set_image` (or encoder forward) in a fresh process, and the part
    above the RSS just before it (weights, interpreter and libraries are already resident then)."""
    code = MEMORY_SCRIPT.format(threads=threads, variant=variant, bf16=bf16, mode=mode, image=image)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    gib = 2**30
    res.update(
        {
            k.replace("_bytes", "_gib"): round(v / gib, 3)
            for k, v in list(res.items())
            if k.endswith("_bytes")
        }
    )
    return {"variant": variant, "mode": mode, "bf16_encoder": bf16, **res}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.float() - ref).norm() / ref.norm())


def encoder_paths(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor) -> dict:
    from samkit.runtime.accel import optimize

    results: dict[str, dict] = {}
    with torch.inference_mode():
        ref = model.image_encoder(x)
        results["fp32_eager"] = median_time(lambda: model.image_encoder(x), args.repeats)
        results["fp32_eager"]["rel_err"] = 0.0

        def run(name: str, m: torch.nn.Module) -> None:
            t0 = time.perf_counter()
            out = m.image_encoder(x)  # first call: compiles if compiled
            first = time.perf_counter() - t0
            r = median_time(lambda: m.image_encoder(x), args.repeats, warmup=1)
            results[name] = {**r, "first_call_s": first, "rel_err": rel_err(out, ref)}
            print(f"  {name}: {r['median_s']:.3f} s", file=sys.stderr, flush=True)

        run("bf16", optimize(copy.deepcopy(model), dtype=torch.bfloat16))
        run("int8", optimize(copy.deepcopy(model), int8=True))
        if not args.skip_compile:
            run("fp32_compiled", optimize(copy.deepcopy(model), compile=True))
            run(
                "bf16_compiled",
                optimize(copy.deepcopy(model), dtype=torch.bfloat16, compile=True),
            )
    return results


def onnx_paths(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, tmp: Path):
    import onnxruntime as ort

    from samkit.export.sam import decoder_example_inputs, export_sam_onnx

    t0 = time.perf_counter()
    paths = export_sam_onnx(model, tmp)
    export_s = time.perf_counter() - t0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    enc = ort.InferenceSession(str(paths["encoder"]), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(paths["decoder"]), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    with torch.inference_mode():
        ref = model.image_encoder(x)
    out = torch.from_numpy(enc.run(None, {"image": xn})[0])
    encoder = median_time(lambda: enc.run(None, {"image": xn}), args.repeats)
    feeds = {k: v.numpy() for k, v in decoder_example_inputs(model, 2).items()}
    feeds["orig_im_size"] = np.array([1200.0, 1800.0], np.float32)
    decoder = median_time(lambda: dec.run(None, feeds), max(5, args.repeats), warmup=2)
    return {
        "export_s": export_s,
        "encoder": {**encoder, "rel_err": rel_err(out, ref)},
        "decoder_1_prompt_with_postprocess": decoder,
    }


def decoder_paths(args: argparse.Namespace, model: torch.nn.Module) -> dict:
    """Prompt encoder + mask decoder only (no postprocess): 1 prompt, and 64 prompts in a batch."""
    emb = torch.randn(1, 256, 64, 64)
    pe, md = model.prompt_encoder, model.mask_decoder
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        dense_pe = pe.get_dense_pe()  # per image, as the predictor caches it

    def run(n: int) -> None:
        pts = torch.rand(n, 1, 2, generator=g) * 1024
        lbl = torch.ones(n, 1, dtype=torch.int)
        sparse, dense = pe((pts, lbl), None, None)
        md(emb, dense_pe, sparse, dense, multimask_output=True)

    with torch.inference_mode():
        one = median_time(lambda: run(1), max(5, args.repeats), warmup=2)
        many = median_time(lambda: run(64), args.repeats, warmup=1)
    return {
        "decoder_1_prompt": one,
        "decoder_64_prompts": {**many, "prompts_per_s": 64 / many["median_s"]},
    }


def predict_paths(args: argparse.Namespace, predictor: object, image_hw: tuple) -> dict:
    """`predict` (decoder + postprocess to the original size) on an image already set."""
    pt, lb = np.array([[500.0, 375.0]]), np.array([1])
    h, w = image_hw
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, w * 0.6, 16)
    y0 = rng.uniform(0, h * 0.6, 16)
    boxes = np.stack([x0, y0, x0 + w * 0.3, y0 + h * 0.3], 1)
    return {
        "predict_1pt_multimask": median_time(
            lambda: predictor.predict(pt, lb), max(10, args.repeats), 3
        ),
        "predict_16_boxes": median_time(
            lambda: predictor.predict(box=boxes, multimask_output=False), args.repeats, 1
        ),
    }


def sam2_paths(args: argparse.Namespace) -> dict:
    """SAM 2 image encoder (trunk + neck): fp32, bf16, int8, compiled, onnxruntime."""
    from samkit import build_sam2
    from samkit.runtime.accel import optimize

    model = build_sam2(args.sam2)
    x = torch.randn(1, 3, 1024, 1024)
    out: dict[str, dict] = {}
    with torch.inference_mode():
        ref = model.image_encoder(x)["vision_features"]
        out["fp32_eager"] = median_time(lambda: model.image_encoder(x), args.repeats)
        paths = [("bf16", {"dtype": torch.bfloat16}), ("int8", {"int8": True})]
        if not args.skip_compile:
            paths.append(("bf16_compiled", {"dtype": torch.bfloat16, "compile": True}))
        for name, kw in paths:
            m = optimize(copy.deepcopy(model), **kw)
            first = m.image_encoder(x)["vision_features"]
            out[name] = median_time(lambda m=m: m.image_encoder(x), args.repeats, warmup=1)
            out[name]["rel_err"] = rel_err(first, ref)
    if not args.skip_onnx:
        import onnxruntime as ort

        from samkit.export.sam2 import export_sam2_encoder

        with tempfile.TemporaryDirectory() as tmp:
            path = export_sam2_encoder(model, Path(tmp) / "encoder.onnx")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            xn = x.numpy()
            out["onnxruntime"] = median_time(lambda: sess.run(None, {"image": xn}), args.repeats)
    base = out["fp32_eager"]["median_s"]
    for r in out.values():
        r["speedup_vs_fp32"] = base / r["median_s"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="vit_b")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", default=str(IMAGES / "truck.jpg"))
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--sam2", default="sam2.1_hiera_small", help="SAM 2 variant ('' to skip)")
    ap.add_argument("--memory-variant", default="", help="also measure this encoder's forward")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from samkit import build_sam
    from samkit.runtime.accel import optimize

    load = Path("/proc/loadavg").read_text().split()[:3]
    model = build_sam(args.variant)
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        flops = count_flops(lambda: model.image_encoder(x))
    peak32, peak16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print("encoder paths...", file=sys.stderr, flush=True)
    enc = encoder_paths(args, model, x)
    result: dict = {
        "variant": args.variant,
        "loadavg_at_start": load,
        "encoder_gflop": flops / 1e9,
        "matmul_fp32_gflops_per_s": peak32,
        "matmul_bf16_gflops_per_s": peak16,
        "threads": args.threads,
        "encoder": enc,
    }
    base = enc["fp32_eager"]["median_s"]
    for r in enc.values():
        r["speedup_vs_fp32"] = base / r["median_s"]
    for name, peak in (("fp32_eager", peak32), ("bf16", peak16)):
        enc[name]["roofline_ratio"] = flops / enc[name]["median_s"] / 1e9 / peak
    if not args.skip_onnx:
        print("onnx...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result["onnxruntime"] = onnx_paths(args, model, x, Path(tmp))
        ort_enc = result["onnxruntime"]["encoder"]
        ort_enc["speedup_vs_fp32"] = base / ort_enc["median_s"]
    print("decoder / predict...", file=sys.stderr, flush=True)
    from samkit import SamPredictor

    fast = optimize(copy.deepcopy(model), dtype=torch.bfloat16)
    image = np.array(Image.open(args.image).convert("RGB"))
    predictor = SamPredictor(fast)
    predictor.set_image(image)
    result["decoder"] = {"fp32": decoder_paths(args, fast)}
    result["predict"] = {"image_hw": list(image.shape[:2])}
    result["predict"]["fp32"] = predict_paths(args, predictor, image.shape[:2])
    optimize(fast, decoder_autocast=torch.bfloat16)
    result["decoder"]["bf16_autocast"] = decoder_paths(args, fast)
    result["predict"]["bf16_autocast"] = predict_paths(args, predictor, image.shape[:2])
    if not args.skip_memory:
        print("memory...", file=sys.stderr, flush=True)
        mem = [
            measure_memory(args.variant, "set_image", b, args.threads, args.image)
            for b in (False, True)
        ]
        if args.memory_variant:
            mem.append(
                measure_memory(args.memory_variant, "encoder", False, args.threads, args.image)
            )
        result["memory"] = mem
    if args.sam2:
        print("sam2...", file=sys.stderr, flush=True)
        try:
            result["sam2"] = {"variant": args.sam2, "encoder": sam2_paths(args)}
        except Exception as e:  # SAM 2 is optional here: report instead of failing the run
            result["sam2"] = {"variant": args.sam2, "error": f"{type(e).__name__}: {e}"}
    # Last, since it changes the process for good: what `samkit` commands run with.
    from samkit.runtime.accel import tune_malloc

    if tune_malloc():
        print("tuned malloc...", file=sys.stderr, flush=True)
        tuned: dict = {}
        with torch.inference_mode():
            tuned["encoder_fp32"] = median_time(lambda: model.image_encoder(x), args.repeats)
            tuned["encoder_bf16"] = median_time(lambda: fast.image_encoder(x), args.repeats)
        optimize(fast, decoder_autocast=None)
        tuned["predict_fp32"] = predict_paths(args, predictor, image.shape[:2])
        tuned["encoder_fp32"]["roofline_ratio"] = (
            flops / tuned["encoder_fp32"]["median_s"] / 1e9 / peak32
        )
        result["tuned_malloc"] = tuned
    result["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    result["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    write_json(f"speed_{args.variant}", result, args.out)
    print_summary(result)
    return result


def print_summary(r: dict) -> None:
    ms = 1e3
    print(
        f"\n{r['variant']} encoder ({r['encoder_gflop']:.0f} GFLOP), load {r['loadavg_at_start']}"
    )
    print(f"{'path':16} {'median ms':>10} {'speed-up':>9} {'rel err':>9} {'roofline':>9}")
    rows = dict(r["encoder"])
    if "onnxruntime" in r:
        rows["onnxruntime"] = r["onnxruntime"]["encoder"]
    for name, e in rows.items():
        roof = f"{e['roofline_ratio']:.0%}" if "roofline_ratio" in e else ""
        print(
            f"{name:16} {e['median_s'] * ms:10.0f} {e['speedup_vs_fp32']:8.2f}x "
            f"{e['rel_err']:9.1e} {roof:>9}"
        )
    for name in ("fp32", "bf16_autocast"):
        d, p = r["decoder"][name], r["predict"][name]
        print(
            f"decoder {name}: 1 prompt {d['decoder_1_prompt']['median_s'] * ms:.1f} ms, 64 "
            f"prompts {d['decoder_64_prompts']['prompts_per_s']:.0f} prompts/s; predict 1 point "
            f"{p['predict_1pt_multimask']['median_s'] * ms:.1f} ms, 16 boxes "
            f"{p['predict_16_boxes']['median_s'] * ms:.0f} ms"
        )
    if "onnxruntime" in r:
        d = r["onnxruntime"]["decoder_1_prompt_with_postprocess"]
        print(f"onnxruntime decoder + postprocess, 1 prompt: {d['median_s'] * ms:.1f} ms")
    if "tuned_malloc" in r:
        t = r["tuned_malloc"]
        p = t["predict_fp32"]
        print(
            f"with samkit.runtime.accel.tune_malloc(): encoder fp32 {t['encoder_fp32']['median_s'] * ms:.0f}"
            f" ms (roofline {t['encoder_fp32']['roofline_ratio']:.0%}), bf16 "
            f"{t['encoder_bf16']['median_s'] * ms:.0f} ms; predict fp32 1 point "
            f"{p['predict_1pt_multimask']['median_s'] * ms:.1f} ms, 16 boxes "
            f"{p['predict_16_boxes']['median_s'] * ms:.0f} ms"
        )
    if "encoder" in r.get("sam2", {}):
        print(f"{r['sam2']['variant']} encoder:")
        for name, e in r["sam2"]["encoder"].items():
            print(f"  {name:16} {e['median_s'] * ms:10.0f} ms {e['speedup_vs_fp32']:8.2f}x")
    for m in r.get("memory", []):
        print(
            f"memory {m['variant']} {m['mode']} (bf16 encoder: {m['bf16_encoder']}): peak RSS "
            f"{m['peak_rss_gib']:.2f} GiB, {m['peak_above_before_gib']:.2f} GiB above the RSS before"
        )


if __name__ == "__main__":
    main()
