"""Atomic file writes that give the new file the user's normal permissions, and the mask PNG.

`tempfile.mkstemp` (and safetensors' writer) create files with mode 0600 whatever the umask, and a
rename keeps that mode, so outputs written "temporary file + rename" end up private (0600)
instead of the 0644 / 0664 the user's umask asks for. The helpers here give the temporary file
0666 minus the umask before renaming it, exactly the mode `open(path, "w")` would give.

The temporary file is `<name>.<pid>.<random>.tmp` in the destination's folder (same file system,
so the rename is atomic); `samkit.cli.common._remove_stale_temporaries` removes leftovers of that
pattern after a killed run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh, unused name `<name>.<pid>.<hex>.tmp` beside `path` (the file is not created)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (the lock keeps our own threads consistent)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0666 minus the umask (e.g. 0644)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    For writers that want a file name (safetensors, PIL, `torch.save`). Before the rename the
    file gets `default_file_mode()` (some writers create 0600 files: safetensors 0.8 does).
    The parent folder is created.

    Example:
        with atomic_path("out/x.safetensors") as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    A reader never sees a partial file; the file's mode is 0666 minus the process umask (as for
    a plain `open(path, "wb")`). Returns the path written.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def mask_png_bytes(mask: np.ndarray, compress_level: int = 6) -> bytes:
    """THE mask PNG of samkit: a 1-bit black (0) / white (1) PNG of an HxW mask.

    Every mask PNG samkit writes (`samkit segment`, `examples/quickstart.py`, the web app's
    "Download mask PNG") comes from here, so they all have this one pixel format. PIL reads it
    back as the same bool array (`np.array(Image.open(p))`); tools that know only 8-bit images
    (OpenCV, most viewers) read it as 0 / 255 greyscale.

    Args:
        mask: HxW array; non-zero pixels are the object.
        compress_level: zlib level 0-9 (the web app uses 1 for speed).

    Raises:
        ValueError: `mask` is not two-dimensional or is empty.
    """
    import io

    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty HxW array, got shape {mask.shape}")
    buf = io.BytesIO()
    Image.fromarray(mask.astype(bool)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write `mask_png_bytes(mask)` to `path` atomically (user's umask permissions)."""
    return atomic_write_bytes(path, mask_png_bytes(mask))
