"""A distributed run on Ray Data: the Ray session, the sizing of the model actors, and the
execution of a plan (read and decode tasks, then `ModelWorker` actors), with the manifest rows
filled in as results arrive. The driver (`samkit.distributed.run`) makes the plan."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samkit.distributed.inputs import ImageList
from samkit.distributed.manifest import write_manifest
from samkit.distributed.messages import RAY_MISSING
from samkit.distributed.models import RunModel
from samkit.distributed.workers import ModelWorker, decode_row
from samkit.io.progress import Progress

DECODE_CPUS = 0.1  # logical CPUs of a read / decode task: they must fit beside the actors
MANIFEST_EVERY_S = 5.0


def import_ray() -> Any:
    """`ray` with Ray Data, or ImportError naming the `[ray]` extra."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(f"{RAY_MISSING} ({e})") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Use the connected Ray, or connect to `address`, or start a local instance sized to the
    machine; what this function started or connected is shut down on exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def sizing(ray: Any, num_workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, torch threads per worker) from the cluster's CPUs."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    node_cpus = min((int(n["Resources"]["CPU"]) for n in nodes), default=1)
    total = sum(int(n["Resources"]["CPU"]) for n in nodes) or 1
    if threads is None:
        threads = min(node_cpus, 8) if num_workers is None else max(1, total // num_workers)
        threads = min(threads, node_cpus)
    if num_workers is None:
        num_workers = max(1, len(nodes) * max(1, node_cpus // threads))
    if num_workers < 1 or threads < 1:
        raise ValueError(f"num_workers and threads must be >= 1, got {num_workers}, {threads}")
    return num_workers, threads


class RowProgress(Progress):
    """Images done / total, images per second, failures, ETA (`samkit.io.progress`); and the
    caller's function, if any, called with each image's manifest row."""

    def __init__(self, kind: str, total: int, skipped: int, enabled: bool | Callable) -> None:
        super().__init__(total, kind, "images", enabled=enabled is True, initial=skipped)
        self.failed = 0
        self.callback = enabled if callable(enabled) else None

    def row_done(self, row: dict[str, Any]) -> None:
        self.failed += row["status"] == "failed"
        if self.callback is not None:
            self.callback(row)
        self.update(1, f"{self.failed} failed")


@dataclass
class Plan:
    """The images still to do and what the workers need for them."""

    kind: str
    images: ImageList
    todo: list[str]
    run_model: RunModel
    job: Any
    lookup: dict[str, tuple[int, str]]  # path -> (image_id, file_name)
    amg_kwargs: dict[str, Any] | None
    out: Path
    rows: dict[str, dict[str, Any]]  # path -> manifest row, filled in as results arrive


def execute(
    ray: Any, plan: Plan, num_workers: int | None, threads: int | None, batch_size: int,
    show: RowProgress,
) -> None:  # fmt: skip
    import ray.data

    workers, threads = sizing(ray, num_workers, threads)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    refs = [ray.put(plan.run_model), ray.put(plan.lookup)]  # the weights go in once
    ds = ray.data.read_binary_files(
        plan.todo,
        include_paths=True,
        filesystem=plan.images.filesystem,
        num_cpus=DECODE_CPUS,
        override_num_blocks=len(plan.todo),
    )
    decode_kwargs = {"stretch": plan.job.stretch, "max_pixels": plan.job.max_pixels}
    ds = ds.map(decode_row, fn_kwargs=decode_kwargs, num_cpus=DECODE_CPUS)
    ds = ds.map_batches(
        ModelWorker,
        fn_constructor_kwargs={
            "kind": plan.kind,
            "job": plan.job,
            "refs": refs,
            "threads": threads,
            "amg_kwargs": plan.amg_kwargs,
        },
        batch_size=batch_size,
        # one image batch at a time per actor: a queue per actor would let the first actor up
        # take the images of a short run while the others start (costs ~ms per image)
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        # a little under the threads, so that the read / decode tasks always find a CPU
        num_cpus=max(threads - 2 * DECODE_CPUS, DECODE_CPUS),
    )
    uris = dict(zip(plan.images.paths, plan.images.uris))
    by_id = {image_id: path for path, (image_id, _) in plan.lookup.items()}
    last_write = time.perf_counter()
    for r in ds.iter_rows():
        path = by_id[int(r["image_id"])]
        image_id, name = plan.lookup[path]
        plan.rows[path] = {
            "image_id": image_id,
            "path": uris[path],
            "file_name": name,
            "status": str(r["status"]),
            "error": str(r["error"]),
            "masks": None if int(r["masks"]) < 0 else int(r["masks"]),
            "seconds": float(r["seconds"]),
            "worker": str(r["worker"]),
            "finished": float(r["finished"]),
        }
        show.row_done(plan.rows[path])
        if time.perf_counter() - last_write > MANIFEST_EVERY_S:
            write_manifest(plan.out, plan.rows.values())
            last_write = time.perf_counter()
