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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="../shared/images/truck.jpg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
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
    wall = {k: float("inf") for k in paths}
    cpu = {k: float("inf") for k in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
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
