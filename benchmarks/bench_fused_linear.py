"""The encoders' MLPs with Linear + activation fused by oneDNN, against the plain modules (#21).

`samkit.layers.fused_linear.linear_act` runs `act(linear(x))` as `torch.ops.mkldnn._linear_pointwise`
(the activation applied as the matmul writes its output) wherever only the time can change.
Prints the CPU model and ISA, then:

1. per MLP first layer samkit runs (tokens x in -> hidden, activation): milliseconds plain
   (`F.linear` then the activation) and fused, GFLOP/s of each (the fused one also as a share
   of the same dtype's `torch.mm` rate, measured first), and fused / plain, timed
   alternately (A B A B) in this process after a warm-up call;
2. per image encoder (random weights, a 1024x1024 input): seconds per forward with the fusion on
   and off (`fused_linear(False)`), alternating in one process, the ratio, and the largest
   difference between the two outputs.

With `--cpu-time` every time is the process's CPU time on one thread (the number a shared
machine moves least).

    python benchmarks/bench_fused_linear.py --cpu-time
    python benchmarks/bench_fused_linear.py --cpu-time --encoders sam2.1_hiera_t vit_b --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_attention import CLOCK, alternate, mm_gflops
from benchmarks.bench_light import build_image_model
from benchmarks.common import write_json
from benchmarks.sam3_pipeline import machine
from samkit.layers.fused_linear import fused_linear, linear_act

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# name: (tokens, in, hidden, activation)
SHAPES: dict[str, tuple[int, int, int, str]] = {
    "hiera_t stage 1 (256x256 tokens)": (65536, 96, 384, "gelu"),
    "hiera_t stage 2": (16384, 192, 768, "gelu"),
    "hiera_t stage 3": (4096, 384, 1536, "gelu"),
    "hiera_t stage 4 / vit_b (64x64 tokens)": (4096, 768, 3072, "gelu"),
    "sam3 ViT (72x72 tokens)": (5184, 1024, 4736, "gelu"),
    "sam2 memory attention MLP": (4096, 256, 2048, "relu"),
    "tiny_vit stage 2 (mobile_sam)": (16384, 128, 512, "gelu"),
}
ENCODERS = ("sam2.1_hiera_t", "vit_b", "mobile_sam")


def shape_row(
    name: str, shape: tuple[int, int, int, str], dtype: str, rounds: int, mm: float
) -> dict:
    tokens, n_in, hidden, act_name = shape
    torch.manual_seed(0)
    lin = nn.Linear(n_in, hidden).to(DTYPES[dtype])
    act = nn.GELU() if act_name == "gelu" else nn.ReLU()
    x = torch.randn(tokens, n_in).to(DTYPES[dtype])
    with torch.inference_mode():
        plain_fn = (lambda: F.gelu(lin(x))) if act_name == "gelu" else (lambda: F.relu(lin(x)))
        plain, fused = alternate([plain_fn, lambda: linear_act(x, lin, act)], rounds)
    gflop = 2 * tokens * n_in * hidden / 1e9
    row = {"shape": name, "dtype": dtype, "plain_ms": plain * 1e3, "fused_ms": fused * 1e3}
    row.update(
        plain_gflops=gflop / plain, fused_gflops=gflop / fused, fused_over_plain=fused / plain
    )
    row.update(plain_share=gflop / plain / mm, fused_share=gflop / fused / mm)
    print(
        f"{name:40s} {dtype:8s} plain {plain * 1e3:7.1f} ms ({gflop / plain:5.0f} GFLOP/s)  "
        f"fused {fused * 1e3:7.1f} ms ({gflop / fused:5.0f}, {gflop / fused / mm:4.0%} of mm)  "
        f"{fused / plain:.2f}x",
        flush=True,
    )
    return row


def _encoder(name: str, dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    from samkit import build_sam2

    torch.manual_seed(0)
    if name.startswith("sam2"):
        model = build_sam2(name, dtype=dtype)
    else:
        model = build_image_model(name, dtype)
    return model.image_encoder, torch.randn(1, 3, 1024, 1024)


def _first(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return _first(next(iter(out.values())))
    return _first(out[0])


def encoder_row(name: str, dtype: str, rounds: int) -> dict:
    enc, x = _encoder(name, DTYPES[dtype])
    outs: dict[bool, torch.Tensor] = {}

    def run(on: bool) -> Callable[[], None]:
        def fn() -> None:
            with fused_linear(on):
                outs[on] = _first(enc(x))

        return fn

    with torch.inference_mode():
        fused, plain = alternate([run(True), run(False)], rounds)
    diff = (outs[True].float() - outs[False].float()).abs().max().item()
    row = {"encoder": name, "dtype": dtype, "plain_s": plain, "fused_s": fused}
    row.update(fused_over_plain=fused / plain, max_abs_diff=diff)
    print(
        f"{name:16s} {dtype:8s} plain {plain:6.2f} s  fused {fused:6.2f} s  "
        f"{fused / plain:.3f}x  max |diff| {diff:.2e}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="A B rounds (best of)")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--encoders", nargs="*", default=list(ENCODERS), choices=list(ENCODERS))
    ap.add_argument("--no-shapes", action="store_true", help="skip the per-shape table")
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, process CPU time")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.cpu_time:
        CLOCK["clock"] = time.process_time
    torch.set_num_threads(1 if args.cpu_time else args.threads)
    info = machine()
    print(info, f"threads={torch.get_num_threads()}", "clock=" + CLOCK["clock"].__name__)
    shapes = []
    if not args.no_shapes:
        for dtype in args.dtypes:
            mm = mm_gflops(DTYPES[dtype], args.rounds)
            print(f"torch.mm 2048^3 {dtype}: {mm:.0f} GFLOP/s", flush=True)
            for name, shape in SHAPES.items():
                shapes.append(shape_row(name, shape, dtype, args.rounds, mm))
    encoders = [encoder_row(e, d, args.rounds) for d in args.dtypes for e in args.encoders]
    payload = {"machine": info, "threads": torch.get_num_threads(), "cpu_time": args.cpu_time}
    payload.update(shapes=shapes, encoders=encoders)
    print("wrote", write_json("bench_fused_linear", payload, args.out))


if __name__ == "__main__":
    main()
