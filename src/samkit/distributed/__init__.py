"""Dataset-scale `samkit auto` / `samkit embed` on Ray Data (the `[ray]` extra).

`label_images` and `embed_images` read images with Ray Data's readers (local files, folders, globs,
or any URI a pyarrow filesystem opens: s3://, gs://, ...), decode them in Ray Data tasks, and run
the model in a pool of Ray actors that each build it once from weights put once in the object
store. Each image's outputs are the bytes single-process `samkit auto` / `samkit embed` writes
(the same `samkit.jobs` code writes them); `DIR/manifest.parquet` has one row per image. Reruns
skip complete images, so a killed run resumes where it stopped.

This is the only samkit package that imports Ray, and only when its functions run.
"""

from __future__ import annotations

from typing import Any

from samkit.distributed.messages import RAY_MISSING

__all__ = ["RAY_MISSING", "RunSummary", "embed_images", "label_images"]


def __getattr__(name: str) -> Any:
    if name in ("label_images", "embed_images", "RunSummary"):
        from samkit.distributed import run

        return getattr(run, name)
    raise AttributeError(f"module 'samkit.distributed' has no attribute {name!r}")
