"""Atomic file writes that give the new file the user's normal permissions, and the mask PNG.

`tempfile.mkstemp` (and safetensors' writer) create files with mode 0600 whatever the umask, and a
rename keeps that mode, so outputs written "temporary file + rename" end up private (0600)
instead of the 0644 / 0664 the user's umask asks for. The helpers here give the temporary file
0666 minus the umask before renaming it, exactly the mode `open(path, "w")` would give.

The temporary file is `<name>.<pid>.<random>.tmp` in the destination's folder (same file system,
so the rename is atomic); `remove_stale_temporaries` removes leftovers of exactly that pattern after
a killed run. Every atomic output of samkit (JSON, PNGs, safetensors, embeddings, the overlay MP4)
is written through this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh, unused name `<name>.<pid>.<hex>.tmp` beside `path` (the file is not created)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


_TEMPORARY = re.compile(r"^(?P<name>.+)\.\d+\.[0-9a-f]{12}\.tmp$")


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether a file name has the pattern of `temporary_sibling`."""
    return _TEMPORARY.match(Path(path).name) is not None


def remove_stale_temporaries(
    folder: str | os.PathLike, names: Iterable[str] | None = None
) -> list[Path]:
    """Delete the temporary files a killed run left in `folder` (not its subfolders).

    Only names of the `temporary_sibling` pattern are touched (files, and `atomic_dir` folders):
    of the outputs `names` (e.g. `["a.json", "a_overlay.png"]`), or of any when `names` is None. Call it before a run
    writes into `folder`, not while another run writes there.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else set(names)
    removed = []
    for p in folder.iterdir():
        m = _TEMPORARY.match(p.name)
        if m is None or (wanted is not None and m["name"] not in wanted) or p.is_symlink():
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)  # an `atomic_dir` folder
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside `path`; on success it becomes `path` (a folder
    already there is replaced), else it is deleted.

    For outputs that are several files read together (a training checkpoint): a reader sees the
    old folder or the complete new one, never a half-written one under the final name (between
    removing an old folder and the rename there is briefly none). `remove_stale_temporaries`
    removes the folders a killed run left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
