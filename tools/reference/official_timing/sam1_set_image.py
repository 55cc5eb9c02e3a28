"""Time SAM 1 vit_b `set_image` in samkit against the official `segment_anything` 1.0, same weights.

Run with an interpreter that has both samkit and the official wheel (never a samkit dependency):

    python3 -m venv --system-site-packages /tmp/venv-sa
    /tmp/venv-sa/bin/pip install --no-deps segment-anything==1.0
    PYTHONPATH=src /tmp/venv-sa/bin/python tools/reference/official_timing/sam1_set_image.py

The official package imports torchvision only for its resize / NMS helpers; where torchvision is
missing (no CPU wheel for this torch) a stand-in module offering `resize` / `to_pil_image` through
PIL is put on `sys.modules` first. It is used only for the official `ResizeLongestSide`, which
this script bypasses anyway: both sides get the same 1024-px float tensor, and the timed region is
the official `preprocess` + `image_encoder` against samkit's `SamPredictor.set_image` on the same
uint8 image (samkit's includes its own resize).

A B A B rounds in one process; best of each; `--threads 1` also reports process CPU time, which is
what to trust on a shared, loaded machine.

`--parts` (use with `--threads 1`) also prints, for the official and samkit's float32 encoder,
the CPU seconds of each part (forward hooks on the modules both name alike: `patch_embed`, the
blocks' `attn.qkv`, `attn.proj`, `mlp.lin1` / `lin2`, `neck`; "attention core" is `attn` less
its two linears, "block rest" the norms, window partition and residual adds), their GFLOP/s,
the `torch.mm` float32 rate measured in the same run, and the floor: the encoder's linear
layers at that rate, as a share of the official's time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _stub_torchvision() -> None:
    try:
        import torchvision  # noqa: F401

        return
    except ImportError:
        pass
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")

    def _unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision stand-in: not used by this timing script")

    functional.resize = _unavailable
    functional.to_pil_image = _unavailable
    boxes.batched_nms = _unavailable
    boxes.box_area = _unavailable
    ops.boxes = boxes
    transforms.functional = functional
    tv.transforms = transforms
    tv.ops = ops
    for name, mod in {
        "torchvision": tv,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
    }.items():
        sys.modules[name] = mod


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _linear_parts(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    return {"qkv": "attn qkv", "proj": "attn proj", "lin1": "mlp lin1", "lin2": "mlp lin2"}.get(
        leaf
    )


class PartClock:
    """CPU seconds and FLOPs (linear layers) per part of a SAM 1 ViT image encoder (hooks)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.on = False  # counts only while its own path runs (the official's autocast run
        # goes through the same modules)
        self.seconds: dict[str, float] = {}
        self.flops: dict[str, float] = {}
        self._start: dict[int, float] = {}
        for name, mod in encoder.named_modules():
            part = None
            if name in ("patch_embed", "neck"):
                part = name
            elif name.startswith("blocks.") and name.count(".") == 1:
                part = "blocks"
            elif name.endswith(".attn") and name.count(".") == 2:
                part = "attn"
            elif name.endswith(".mlp") and name.count(".") == 2:
                part = "mlp"
            elif name.count(".") == 3 and isinstance(mod, torch.nn.Linear):
                part = _linear_parts(name)
            if part is not None:
                mod.register_forward_pre_hook(self._pre)
                mod.register_forward_hook(self._post(part))

    def _pre(self, mod: torch.nn.Module, _args: object) -> None:
        self._start[id(mod)] = time.process_time()

    def _post(self, part: str):
        def hook(mod: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
            if not self.on:
                return
            self.seconds[part] = (
                self.seconds.get(part, 0.0) + time.process_time() - self._start[id(mod)]
            )
            if isinstance(mod, torch.nn.Linear):
                rows = args[0].numel() // mod.in_features
                self.flops[part] = self.flops.get(part, 0.0) + 2.0 * rows * mod.weight.numel()

        return hook

    def table(self, runs: int) -> dict[str, tuple[float, float]]:
        """part -> (CPU seconds per run, GFLOP per run or 0)."""
        s = {k: v / runs for k, v in self.seconds.items()}
        f = {k: v / runs / 1e9 for k, v in self.flops.items()}
        lin = ("attn qkv", "attn proj", "mlp lin1", "mlp lin2")
        rows = {k: (s.get(k, 0.0), f.get(k, 0.0)) for k in ("patch_embed", *lin, "neck")}
        rows["attention core"] = (s["attn"] - s["attn qkv"] - s["attn proj"], 0.0)
        rows["mlp GELU"] = (s["mlp"] - s["mlp lin1"] - s["mlp lin2"], 0.0)
        rows["block rest"] = (s["blocks"] - s["attn"] - s["mlp"], 0.0)
        rows["linears"] = (sum(s[k] for k in lin), sum(f[k] for k in lin))
        return rows


def mm_rate(n: int = 2048, reps: int = 3) -> float:
    """float32 `torch.mm` GFLOP/s (CPU time, best of `reps`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        c0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - c0)
    return 2 * n**3 / best / 1e9


def print_parts(clocks: dict[str, PartClock], runs: int) -> None:
    rate = mm_rate()
    tables = {k: c.table(runs) for k, c in clocks.items()}
    names = list(clocks)
    print(f"torch.mm float32: {rate:.1f} GFLOP/s (CPU time, this run)")
    print(f"{'part':16s}" + "".join(f"{n:>26s}" for n in names) + "   ratio")
    for part in tables[names[0]]:
        cells = []
        for n in names:
            sec, gf = tables[n][part]
            rate_s = f" {gf / sec:5.1f} GF/s" if gf and sec > 0 else " " * 11
            cells.append(f"{sec:13.3f} s{rate_s}")
        a, b = tables[names[0]][part][0], tables[names[-1]][part][0]
        print(f"{part:16s}" + "".join(f"{c:>26s}" for c in cells) + f"   {b / a if a else 0:.2f}x")
    gf = tables[names[-1]]["linears"][1]
    total = {n: sum(v[0] for k, v in tables[n].items() if k != "linears") for n in names}
    for n in names:
        print(f"{n}: parts sum {total[n]:.3f} s per run")
    floor = gf / rate
    print(
        f"floor: the linear layers' {gf:.0f} GFLOP at the mm rate take {floor:.2f} s, "
        f"{floor / total[names[0]]:.2f}x of the official encoder's {total[names[0]]:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="../shared/images/truck.jpg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", action="store_true", help="per-part CPU seconds (float32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _stub_torchvision()
    from segment_anything import sam_model_registry

    from samkit import SamPredictor, build_sam

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(
        f"CPU {cpu_name()}, AMX {'amx_tile' in flags}, AVX-512 BF16 {'avx512_bf16' in flags}, "
        f"threads {args.threads}, torch {torch.__version__}"
    )
    torch.manual_seed(0)
    official = sam_model_registry["vit_b"]().eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sam_vit_b_random.pth"
        torch.save(official.state_dict(), ckpt)
        ours32 = SamPredictor(build_sam("vit_b", checkpoint=str(ckpt)))
        ours16 = SamPredictor(build_sam("vit_b", checkpoint=str(ckpt), dtype=torch.bfloat16))

    image = np.asarray(Image.open(args.image).convert("RGB"))
    ours32.set_image(image)
    x = (
        torch.from_numpy(ours32.transform.apply_image(image).copy())
        if hasattr(ours32, "transform")
        else None
    )
    if x is None:
        raise SystemExit("samkit SamPredictor has no .transform to share the resized input")
    x = x.permute(2, 0, 1).contiguous()[None].float()

    def run_official() -> None:
        with torch.inference_mode():
            official.image_encoder(official.preprocess(x))

    def run_official_autocast() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            official.image_encoder(official.preprocess(x))

    paths = {
        "official fp32": run_official,
        "official bf16 autocast": run_official_autocast,
        "samkit fp32": lambda: ours32.set_image(image),
        "samkit bf16": lambda: ours16.set_image(image),
    }
    clocks: dict[str, PartClock] = {}
    if args.parts:
        clocks = {
            "official fp32": PartClock(official.image_encoder),
            "samkit fp32": PartClock(ours32.model.image_encoder),
        }
    wall = {k: float("inf") for k in paths}
    cpu = {k: float("inf") for k in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            for key, clock in clocks.items():
                clock.on = key == name
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    if clocks:
        print_parts(clocks, args.rounds)
    base_w, base_c = wall["official fp32"], cpu["official fp32"]
    for name in paths:
        print(
            f"{name:24s} wall {wall[name]:6.2f} s ({wall[name] / base_w:.2f}x)  "
            f"cpu {cpu[name]:6.2f} s ({cpu[name] / base_c:.2f}x)"
        )
    print(
        f"samkit fp32 / official fp32: {wall['samkit fp32'] / base_w:.2f}x wall; "
        f"samkit bf16 / official bf16 autocast: "
        f"{wall['samkit bf16'] / wall['official bf16 autocast']:.2f}x wall"
    )


if __name__ == "__main__":
    main()
