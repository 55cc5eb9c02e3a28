"""One timing process for `bench_sam3.py official`: SAM 3 set_image + one text prompt.

    python benchmarks/sam3_official_timing.py --impl samkit [--full] [--repeats 1] [--threads 2]
    <oracle venv>/bin/python benchmarks/sam3_official_timing.py --impl official \
        --oracle-dir ../shared/oracle/sam3 [--full]

`--impl official` runs Meta's `sam3` 0.1.4 through the oracle's helpers (`refmodels3.py`: the
official builder on CPU with its documented device-placement patches; this file never imports
samkit there), `--impl samkit` runs samkit's `build_sam3_image_model` + `Sam3Processor`. Model:
the `sam3_tiny` fixture checkpoint, or with `--full` the official sizes with random weights
(seed 0). After one untimed warm-up call, each repeat times `set_image(truck.jpg)` and then
`set_text_prompt("truck")` (threshold 0.5). Prints one JSON line: times in seconds, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _build(impl: str, full: bool, oracle_dir: Path) -> object:
    ckpt = SHARED / "fixtures" / "sam3_tiny" / "sam3_tiny.pt"
    if impl == "official":
        sys.path.insert(0, str(oracle_dir))
        import refmodels3 as ref  # the oracle venv only

        if full:
            model, _ = ref.build_image_model("full", 0, perturb=False)
        else:
            cfg = ref.load_config(str(ckpt.parent))
            model, _ = ref.build_image_model(cfg, cfg["seed"], checkpoint_path=str(ckpt))
        return ref.make_processor(model, confidence_threshold=0.5)
    import torch

    from samkit.build.sam3 import build_sam3_image_model, sam3_from_config
    from samkit.configs.sam3 import Sam3Config
    from samkit.predict.sam3 import Sam3Processor

    if full:
        torch.manual_seed(0)
        model = sam3_from_config(Sam3Config()).eval()
    else:
        model = build_sam3_image_model(checkpoint_path=ckpt)
    return Sam3Processor(model, confidence_threshold=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impl", choices=("samkit", "official"), required=True)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--oracle-dir", type=Path, default=SHARED / "oracle" / "sam3")
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    proc = _build(args.impl, args.full, args.oracle_dir)
    build_s = time.perf_counter() - t0
    image = Image.open(SHARED / "images" / "truck.jpg").convert("RGB")
    set_image, text = [], []
    with torch.inference_mode():
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            state = proc.set_image(image)
            t1 = time.perf_counter()
            state = proc.set_text_prompt(prompt="truck", state=state)
            t2 = time.perf_counter()
            if i:  # the first call is the warm-up
                set_image.append(t1 - t0)
                text.append(t2 - t1)
    print(
        json.dumps(
            {
                "impl": args.impl,
                "full": args.full,
                "threads": args.threads,
                "build_s": build_s,
                "set_image_s": set_image,
                "text_prompt_s": text,
                "kept": len(state["scores"]),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            }
        )
    )


if __name__ == "__main__":
    main()
