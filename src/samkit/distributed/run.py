"""`label_images` and `embed_images`: the driver side of a distributed run (which images to do,
the manifest, the summary); running the plan on Ray Data is `samkit.distributed.ray_exec`."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samkit.amg import SamAutomaticMaskGenerator
from samkit.amg.sam3 import (
    CONCEPT_OPTIONS,
    OFFICIAL_CONFIDENCE_THRESHOLD,
    check_confidence_threshold,
    check_text_prompts,
)
from samkit.amg.select import SAM2_ONLY
from samkit.distributed.inputs import ImageList, list_images
from samkit.distributed.manifest import read_manifest, write_manifest
from samkit.distributed.models import RunModel, resolve_model
from samkit.distributed.ray_exec import Plan, RowProgress, execute, ray_session
from samkit.distributed.ray_exec import import_ray as import_ray
from samkit.io.limits import DEFAULT_MAX_PIXELS
from samkit.jobs import (
    AutoJob,
    EmbedJob,
    image_ids,
    make_generator,
    remove_stale_temporaries,
    settled_amg_kwargs,
)


@dataclass
class RunSummary:
    """What a distributed run did.

    Attributes:
        rows: one manifest row per image (see `samkit.distributed.manifest.COLUMNS`).
        manifest: the manifest's path.
        seconds: wall time of the run, Ray start-up included.
        dataset: `label_images`' COCO dataset file (`samkit.jobs.AutoJob.write_dataset`);
            None for `embed_images`.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None
    seconds: float = 0.0
    dataset: Path | None = None

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def _amg_kwargs(generator_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Every numeric option of the generator, defaults filled in, in `samkit auto`'s order; a
    SAM 3 run's (`text_prompts`, optional `confidence_threshold`) checked and completed."""
    if generator_kwargs and "text_prompts" in generator_kwargs:
        unknown = set(generator_kwargs) - set(CONCEPT_OPTIONS)
        if unknown:
            raise ValueError(
                f"SAM 3 text prompts take only {', '.join(CONCEPT_OPTIONS)}; got {sorted(unknown)}"
            )
        t = generator_kwargs.get("confidence_threshold", OFFICIAL_CONFIDENCE_THRESHOLD)
        return {
            "text_prompts": check_text_prompts(generator_kwargs["text_prompts"]),
            "confidence_threshold": check_confidence_threshold(t),
        }
    params = inspect.signature(SamAutomaticMaskGenerator).parameters
    full = {
        n: p.default
        for n, p in params.items()
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    }
    full["pred_iou_thresh"] = None  # the model family's default, settled when the model is built
    unknown = set(generator_kwargs or {}) - set(full) - set(SAM2_ONLY)
    if unknown:
        raise ValueError(f"unknown generator options {sorted(unknown)}; known: {sorted(full)}")
    full.update(generator_kwargs or {})
    return full


def _run(
    kind: str,
    inputs: Sequence[str] | str,
    out_dir: str | os.PathLike[str],
    run_model: Callable[[], RunModel],
    make_job: Callable[[RunModel], Any],
    amg_kwargs: dict[str, Any] | None,
    num_workers: int | None,
    threads_per_worker: int | None,
    batch_size: int,
    ray_address: str | None,
    resume: bool,
    progress: bool | Callable[[dict[str, Any]], None],
) -> RunSummary:
    t0 = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images: ImageList = list_images(inputs if not isinstance(inputs, str) else [inputs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rm = run_model()
    if any(p.device.type != "cpu" for p in rm.model.parameters()):
        raise ValueError("distributed runs use CPU workers; build the model on the CPU")
    job = make_job(rm)
    if kind == "auto":
        job.start_run(images.names)
    ids = image_ids(images.names)
    previous = {r.get("path"): r for r in read_manifest(out)}
    rows: dict[str, dict[str, Any]] = {}
    lookup: dict[str, tuple[int, str]] = {}
    todo: list[str] = []
    stale: list[str] = []
    for path, uri, name in zip(images.paths, images.uris, images.names):
        if path in lookup:
            continue  # the same file twice: once is enough
        image_id = ids[name]
        lookup[path] = (image_id, name)
        base = {"image_id": image_id, "path": uri, "file_name": name, "error": ""}
        stem = Path(name).stem
        if resume and job.is_complete(stem):
            old = previous.get(uri) or {}
            masks = old.get("masks") if old.get("status") in ("done", "skipped") else None
            rows[path] = {**base, "status": "skipped", "masks": masks, "seconds": 0.0,
                          "worker": "", "finished": None}  # fmt: skip
        else:
            stale.extend(job.output_names(stem))
            todo.append(path)
    remove_stale_temporaries(out, stale)  # one pass over the folder
    summary = RunSummary()
    summary.manifest = write_manifest(out, rows.values())
    if todo:
        plan = Plan(kind, images, todo, rm, job, lookup, amg_kwargs, out, rows)
        show = RowProgress(kind, len(lookup), len(rows), progress)
        try:
            with ray_session(ray_address) as ray:
                execute(ray, plan, num_workers, threads_per_worker, batch_size, show)
        finally:  # also when interrupted: the rows that arrived are kept
            show.close()
            summary.manifest = write_manifest(out, rows.values())
    summary.rows = sorted(rows.values(), key=lambda r: r["image_id"])
    if kind == "auto":  # from the per-image files, as single-process `samkit auto` does
        ok = [(r["image_id"], r["file_name"]) for r in summary.rows if r["status"] != "failed"]
        summary.dataset = job.write_dataset(ok)
    summary.seconds = time.perf_counter() - t0
    return summary


def label_images(
    inputs: Sequence[str] | str,
    out_dir: str | os.PathLike[str],
    model: Any = "vit_b",
    checkpoint: str | os.PathLike[str] | None = None,
    generator_kwargs: dict[str, Any] | None = None,
    num_workers: int | None = None,
    batch_size: int = 1,
    ray_address: str | None = None,
    resume: bool = True,
    *,
    random_weights: bool = False,
    model_name: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    threads_per_worker: int | None = None,
    progress: bool | Callable[[dict[str, Any]], None] = True,
    stretch: tuple[float, float] | None = None,
    coco_format: str = "coco",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RunSummary:
    """`samkit auto` on Ray: `<stem>.json` (COCO RLE) + `<stem>_overlay.png` per image in `out_dir`,
    and the run's COCO dataset `out_dir/_annotations.coco.json` (the bytes `samkit auto` writes).

    Args:
        inputs: image files, folders (their images, not recursive), globs, or URIs of a pyarrow
            filesystem (s3://bucket/dir, gs://...).
        out_dir: output folder every worker can write (a shared filesystem on a cluster).
        model, checkpoint, random_weights, model_name, device, dtype: see `resolve_model`; a
            built `Sam` module may be passed as `model`.
        generator_kwargs: `SamAutomaticMaskGenerator` options (points_per_side, ...); for a
            SAM 3 model `{"text_prompts": [...], "confidence_threshold": 0.5}` (one COCO
            category per prompt, `samkit.amg.sam3.Sam3ConceptGenerator`).
        num_workers: model actors (default: one per `threads_per_worker` CPUs of each node).
        batch_size: images per actor call.
        ray_address: a running cluster (`ray start --head`'s address or `auto`); None uses the
            connected Ray or starts a local instance for the run.
        resume: skip images whose outputs are complete (same settings); False redoes them.
        threads_per_worker: torch threads per actor (default: a node's CPUs, at most 8, shared
            by the workers of a node).
        progress: print progress lines on stderr; or a function called with each image's
            manifest row as it arrives (and no printing).
        stretch: decode images with this percentile stretch (`samkit.io.images`; None: the
            default rule), as `samkit auto --stretch`.
        coco_format: the per-image JSON layout, "coco" or "sa1b" (`samkit auto --format`).
        max_pixels: refuse (as a failed image) files of more pixels than this
            (`samkit.io.images.decode_image`; `samkit auto --max-pixels`).

    Returns:
        A `RunSummary`; the manifest is `out_dir/manifest.parquet`, the dataset
        `summary.dataset`.

    Raises:
        ValueError: bad inputs or settings.  ImportError: Ray Data is not installed.
    """
    amg = _amg_kwargs(generator_kwargs)

    def build() -> RunModel:
        rm = resolve_model(
            model, checkpoint, random_weights=random_weights, model_name=model_name,
            device=device, dtype=dtype,
        )  # fmt: skip
        # refuse bad settings before starting Ray; record the family's defaults as `auto` does
        amg.update(settled_amg_kwargs(make_generator(rm.model, rm.family, amg), amg))
        return rm

    return _run(
        "auto", inputs, out_dir, build,
        lambda rm: AutoJob.create(
            out_dir, rm.name, rm.random_weights, amg, stretch, coco_format, max_pixels
        ),
        amg, num_workers, threads_per_worker, batch_size, ray_address, resume, progress,
    )  # fmt: skip


def embed_images(
    inputs: Sequence[str] | str,
    out_dir: str | os.PathLike[str],
    model: Any = "vit_b",
    checkpoint: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    batch_size: int = 1,
    ray_address: str | None = None,
    resume: bool = True,
    *,
    random_weights: bool = False,
    model_name: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    threads_per_worker: int | None = None,
    progress: bool | Callable[[dict[str, Any]], None] = True,
    stretch: tuple[float, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RunSummary:
    """`samkit embed` on Ray: `<stem>.safetensors` per image in `out_dir`.

    Arguments as in `label_images` (without generator options). Returns a `RunSummary`.
    """

    def build() -> RunModel:
        return resolve_model(
            model, checkpoint, random_weights=random_weights, model_name=model_name,
            device=device, dtype=dtype,
        )  # fmt: skip

    return _run(
        "embed", inputs, out_dir, build,
        lambda rm: EmbedJob(Path(out_dir), rm.name, rm.family, rm.img_size(), stretch, max_pixels),
        None, num_workers, threads_per_worker, batch_size, ray_address, resume, progress,
    )  # fmt: skip
