"""`samkit auto --ray` / `samkit embed --ray`: the same outputs, computed on Ray Data."""

from __future__ import annotations

import argparse
from typing import Any

from samkit.cli.common import CliError, _model_from_args, families_with


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """The options of a distributed run (need the [ray] extra)."""
    g = p.add_argument_group("distributed (pip install 'samkit[ray]')")
    g.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray Data (same outputs, plus OUT/manifest.parquet with one row per image)",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="a running Ray cluster (e.g. auto, or HOST:6379 of `ray start --head`); default: "
        "start a local Ray instance sized to this machine for the run",
    )
    g.add_argument(
        "--num-workers",
        type=int,
        metavar="N",
        help="model workers (Ray actors); default: one per node's CPUs (at most 8 threads each)",
    )


def run_on_ray(
    args: argparse.Namespace, kind: str, amg_kwargs: dict[str, Any] | None = None
) -> int:
    """Run `samkit auto` (kind "auto", with the generator's `amg_kwargs`) or `samkit embed`
    ("embed") through `samkit.distributed`."""
    try:
        from samkit.distributed.run import import_ray

        import_ray()
    except ImportError as e:
        raise CliError(f"--ray: {e}") from None
    from samkit.cli.imageopts import image_max_pixels, image_stretch
    from samkit.distributed import embed_images, label_images

    if args.num_workers is not None and args.num_workers < 1:
        raise CliError(f"--num-workers {args.num_workers}: give 1 or more")
    sam3 = kind == "auto" and "text_prompts" in (amg_kwargs or {})  # samkit auto --text
    # built here, as without --ray, so the outputs record the same
    # text concepts; embeddings: every family with a predictor; automatic masks
    slot = "concepts" if sam3 else "predictor" if kind == "embed" else "amg_generator"
    families = families_with(slot)
    lm = _model_from_args(args, families=families)
    common = {
        "model": lm.model,
        "model_name": lm.name,
        "random_weights": lm.random_weights,
        "num_workers": args.num_workers,
        "ray_address": args.ray_address,
        "resume": not args.overwrite,
        "progress": not getattr(args, "quiet", False),
        "stretch": image_stretch(args),
        "max_pixels": image_max_pixels(args),
    }
    if kind == "auto":
        summary = label_images(
            args.inputs,
            args.out,
            generator_kwargs=amg_kwargs,
            coco_format=getattr(args, "format", "coco"),
            **common,
        )
        what = "segmented"
    else:
        summary = embed_images(args.inputs, args.out, **common)
        what = "embedded"
    print(
        f"{summary.count('done')} images {what}, {summary.count('skipped')} skipped (already "
        f"complete), {summary.count('failed')} failed; outputs in {args.out}; "
        + (f"COCO dataset {summary.dataset}; " if summary.dataset else "")
        + f"manifest {summary.manifest}"
    )
    for r in summary.failed:
        print(f"  failed: {r['path']}: {r['error']}")
    return 1 if summary.failed else 0
