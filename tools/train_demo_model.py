"""Train samkit's built-in demo model (the offline quickstart's SAM) and write it into the package.

    python tools/train_demo_model.py            # a few minutes on an idle machine
    python tools/train_demo_model.py --steps 50 --out /tmp/demo_try   # a quick dry run

What it does, all seeded (the same machine and thread count gives the same file):
1. generates textured shapes on cluttered backgrounds with `samkit.train.synthetic`
   (`--images` images, half at 192 x 256 and half at 384 x 512 pixels, seeds [SEED, i]);
2. trains the 256 px SAM 1 of `small_sam_config()` (1.06 M parameters) from random weights with
   `samkit finetune` (points only, 3 clicks, tied decoder query / key init), 10 % held out;
3. stores the weights as float16 safetensors (about 2 MB) together with `shapes_demo.json`: the
   config, this command line, the held-out metrics of `samkit finetune` and of the float16 file,
   and the versions used. The demo image (`samkit.train.demo.demo_sample`) comes from a seed
   stream the training data never use.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ROOT / "src" / "samkit" / "checkpoint" / "demo"


def _git_commit() -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return r.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=600, help="generated training images")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=11, help="data seed (the demo image uses others)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: fastest on a busy machine)",
    )
    ap.add_argument(
        "--out", type=Path, default=PACKAGE_DATA, help=f"where to write (default {PACKAGE_DATA})"
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep the data and the run here (default: a temporary folder); data already there "
        "are reused",
    )
    args = ap.parse_args(argv)

    from samkit import __version__
    from samkit.checkpoint import read_metadata, save_checkpoint
    from samkit.cli import main as samkit_main
    from samkit.io.atomic import atomic_write_text
    from samkit.train.demo import CONFIG_NAME, DEMO_SEED, WEIGHTS_NAME, evaluate_demo_model
    from samkit.train.synthetic import make_shapes_sample, small_sam_config, write_folder_dataset

    if args.seed == DEMO_SEED:
        raise ValueError(f"--seed {args.seed} is the demo image's seed: pick another")
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="samkit_demo_"))
    sizes = [(192, 256), (384, 512)]
    data = work / "data"
    wanted = [f"shapes_{i:04d}" for i in range(args.images)]
    names = sorted(p.stem for p in (data / "images").glob("*.png")) if data.is_dir() else []
    if names and names != wanted:
        raise ValueError(f"{data} holds other images: give an empty or a new --work folder")
    if not names:  # else this --work folder holds them already (same seed: same images)
        samples = [
            make_shapes_sample(np.random.default_rng([args.seed, i]), sizes[i % 2], name=n)
            for i, n in enumerate(wanted)
        ]
        write_folder_dataset(samples, data)
    config = small_sam_config()
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps(config))
    finetune = [
        "finetune", "--data", str(data), "--model", str(cfg_path), "--out", str(work / "run"),
        "--val-fraction", "0.1", "--split-seed", "0", "--steps", str(args.steps),
        "--lr", "4e-3", "--warmup-steps", "40", "--weight-decay", "0.05",
        "--images-per-step", "2", "--prompts-per-image", "8", "--box-prob", "0",
        "--init-tied-qk", "2", "--seed", "0", "--clicks", "3", "--log-every", "50",
        "--no-progress",
    ]  # fmt: skip
    rc = samkit_main(finetune)
    if rc != 0:
        return rc
    summary = json.loads((work / "run" / "train_summary.json").read_text())

    from safetensors.torch import load_file

    sd = load_file(str(work / "run" / "model.safetensors"))
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in sd.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(work / "run" / "model.safetensors")  # provenance, training config
    weights = save_checkpoint(half, args.out / WEIGHTS_NAME, meta)
    shipped = evaluate_demo_model(weights_path=weights)
    record = {
        "what": "samkit's built-in demo model: a 256 px SAM 1 trained from random weights on "
        "generated shapes (samkit.train.synthetic); it segments such shapes, not photos",
        "config": config,
        "weights": {"file": WEIGHTS_NAME, "dtype": "float16 (loaded as float32)"},
        "training": {
            "command": "python tools/train_demo_model.py " + " ".join(argv or sys.argv[1:]),
            "samkit_finetune_args": finetune[finetune.index("--val-fraction") :],
            "data": f"{args.images} images from make_shapes_sample(default_rng([{args.seed}, i]), "
            "size), sizes alternating 192x256 / 384x512",
            "wall_s": round(summary["wall_s"], 1),
            "threads": args.threads,
            "val_float32": summary.get("val"),
        },
        "demo_image": shipped,
        "versions": {
            "samkit": __version__,
            "git_commit": _git_commit(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    atomic_write_text(args.out / CONFIG_NAME, json.dumps(record, indent=1) + "\n")
    print(json.dumps({"val": summary.get("val"), "demo_image": shipped}, indent=1))
    print(f"wrote {weights} and {args.out / CONFIG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
