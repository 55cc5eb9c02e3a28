"""`DIR/manifest.parquet` (JSONL without pyarrow): one row per image of a distributed run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from samkit.io.masks import atomic_write_bytes

# Column -> meaning. `masks` is None for embeddings and images that were not segmented.
COLUMNS = {
    "image_id": "the image's COCO id: 1 + the rank of its file name among the run's",
    "path": "the input file or URI",
    "file_name": "the image's file name",
    "status": "done, failed or skipped (outputs already complete)",
    "error": "why the image failed ('' otherwise)",
    "masks": "number of masks written (auto), None otherwise",
    "seconds": "time the worker spent on the image (decode excluded)",
    "worker": "host:pid of the worker that did it ('' when skipped)",
    "finished": "when the worker finished it (Unix time, s; None when skipped)",
}
STATUSES = ("done", "failed", "skipped")


def _has_pyarrow() -> bool:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def manifest_path(out: str | os.PathLike[str]) -> Path:
    """`manifest.parquet` when pyarrow is installed, else `manifest.jsonl`."""
    return Path(out) / ("manifest.parquet" if _has_pyarrow() else "manifest.jsonl")


def write_manifest(out: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write the rows (sorted by image_id) atomically; returns the manifest's path."""
    rows = sorted(({k: r.get(k) for k in COLUMNS} for r in rows), key=lambda r: r["image_id"])
    path = manifest_path(out)
    if path.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("image_id", pa.int64()),
                ("path", pa.string()),
                ("file_name", pa.string()),
                ("status", pa.string()),
                ("error", pa.string()),
                ("masks", pa.int64()),
                ("seconds", pa.float64()),
                ("worker", pa.string()),
                ("finished", pa.float64()),
            ]
        )
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
        data = buf.getvalue()
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return atomic_write_bytes(path, data)


def read_manifest(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of `out`'s manifest ([] when there is none or it is unreadable)."""
    path = manifest_path(out)
    if not path.is_file():
        return []
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
