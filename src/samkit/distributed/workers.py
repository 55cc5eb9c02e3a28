"""What runs inside Ray: the decode task and the model actors (imported by the Ray workers)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np
import torch

from samkit.io.limits import DEFAULT_MAX_PIXELS
from samkit.jobs import decode, make_generator, make_predictor
from samkit.runtime.accel import tune_malloc

_EMPTY = np.zeros((0, 0, 3), dtype=np.uint8)  # the image of a row whose decoding failed


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def decode_row(
    row: dict[str, Any], stretch: Any = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Ray Data task: one file's bytes -> its HxWx3 uint8 RGB pixels, or the decoding error
    (`stretch` and `max_pixels`: see `samkit.io.images.decode_image`)."""
    path = str(row["path"])
    try:
        image = decode(bytes(row["bytes"]), os.path.basename(path), stretch, max_pixels)
        error = ""
    except Exception as e:  # recorded in the manifest; the run goes on
        image, error = _EMPTY, _describe(e)
    return {"path": path, "image": image, "error": error}


class ModelWorker:
    """A Ray actor: builds the model once, then runs `samkit.jobs` on batches of decoded images.

    Args:
        kind: "auto" (mask generation) or "embed".
        job: the `AutoJob` / `EmbedJob` that writes each image's outputs.
        refs: [model ref, lookup ref]: the `RunModel` put once in the object store, and
            {path: (image_id, file_name)} of the run.
        threads: torch intra-op threads of this worker.
        amg_kwargs: the generator's options (auto).
    """

    def __init__(
        self, kind: str, job: Any, refs: list[Any], threads: int, amg_kwargs: dict | None = None
    ) -> None:
        import ray

        tune_malloc()  # as the `samkit` command does
        torch.set_num_threads(threads)
        run_model = ray.get(refs[0])
        self.lookup: dict[str, tuple[int, str]] = ray.get(refs[1])
        self.kind, self.job = kind, job
        if kind == "auto":
            self.engine = make_generator(run_model.model, run_model.family, amg_kwargs or {})
        else:
            self.engine = make_predictor(run_model.model, run_model.family)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def _one(self, path: str, image: np.ndarray, error: str) -> dict[str, Any]:
        image_id, file_name = self.lookup[path]
        row = {"image_id": image_id, "status": "failed", "error": error, "masks": None}
        t = time.perf_counter()
        if not error:
            try:
                if self.kind == "auto":
                    row["masks"] = self.job.run(self.engine, image, file_name, image_id)
                else:
                    self.job.run(self.engine, image, file_name)
                row["status"] = "done"
            except Exception as e:  # one bad image must not stop the run
                row["error"] = _describe(e)
        row.update(seconds=time.perf_counter() - t, worker=self.worker, finished=time.time())
        return row

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [
            self._one(str(p), np.asarray(im), str(err))
            for p, im, err in zip(batch["path"], batch["image"], batch["error"])
        ]
        return {
            "image_id": [r["image_id"] for r in rows],
            "status": [r["status"] for r in rows],
            "error": [r["error"] for r in rows],
            "masks": [-1 if r["masks"] is None else r["masks"] for r in rows],
            "seconds": [r["seconds"] for r in rows],
            "worker": [r["worker"] for r in rows],
            "finished": [r["finished"] for r in rows],
        }
