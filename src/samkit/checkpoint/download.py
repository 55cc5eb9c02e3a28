"""Download official checkpoints into a cache, verified by sha256, with clear offline errors.

The network side is the standard library (urllib). Files are streamed to a temporary file next to
the destination (`samkit.io.atomic.atomic_path`), hashed while streaming and moved into place once
verified, so the cache never holds a partial or unverified file under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from samkit.io.atomic import atomic_path, atomic_write_text
from samkit.io.progress import Progress

logger = logging.getLogger("samkit")

_CHUNK = 1 << 20
_STAMP_SUFFIX = ".sha256"

ProgressFn = Callable[[int, "int | None"], None]


class CheckpointUnavailableError(ValueError):
    """A checkpoint is not in the cache and cannot be downloaded (offline, refused, HTTP error).

    Attributes:
        url: what to download, path: where to put it, reason: why it failed (when known).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        path: Path | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.path = path
        self.reason = reason


def default_cache_dir() -> Path:
    """Where downloaded checkpoints live.

    `$SAMKIT_CACHE` if set, else `$XDG_CACHE_HOME/samkit`, else `~/.cache/samkit`.
    """
    env = os.environ.get("SAMKIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "samkit"


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    s = sha256.strip().lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return s


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download_file(
    url: str,
    dest: str | Path,
    sha256: str | None,
    progress: bool = True,
    timeout: float = 60,
    *,
    progress_fn: ProgressFn | None = None,
) -> Path:
    """Download `url` to `dest`, verifying its sha256, atomically.

    The body is streamed to a temporary file beside `dest` (`samkit.io.atomic.atomic_path`) and
    hashed on the way; only a complete file with the expected hash is moved to `dest`. On any
    failure the temporary file is removed and `dest` is left untouched.

    Args:
        url: `http://`, `https://` or `file://` URL.
        dest: final file path (parent directories are created).
        sha256: expected hex digest, or None to skip verification (a warning with the actual
            digest is logged).
        progress: show a progress bar (`samkit.io.progress`) when stderr is a terminal.
        timeout: socket timeout in seconds (connect and each read).
        progress_fn: optional callback ``(done_bytes, total_bytes_or_None)`` called while
            downloading (replaces the stderr line).

    Returns:
        `dest` as a Path.

    Raises:
        CheckpointUnavailableError: the server cannot be reached, times out, drops the
            connection or answers with an HTTP error.
        ValueError: the downloaded file's sha256 differs from `sha256`, or a bad argument.
    """
    dest = Path(dest)
    expected = _check_sha256(sha256)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL {url!r}: expected an http://, https:// or file:// URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    show_bar = progress_fn is None and progress and sys.stderr.isatty()
    bar: Progress | None = None
    h = hashlib.sha256()
    done = 0
    try:
        with atomic_path(dest) as part:  # removed on any failure; dest untouched until the end
            request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
            try:
                resp = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as e:
                raise _unavailable(
                    url, dest, f"the server answered HTTP {e.code} {e.reason}"
                ) from None
            except (urllib.error.URLError, OSError) as e:
                raise _unavailable(url, dest, _network_reason(e, timeout)) from None
            with resp, open(part, "wb") as out:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if show_bar:
                    bar = Progress(total, f"downloading {dest.name}", "B", scale=True)
                if progress_fn is not None:
                    progress_fn(0, total)
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _unavailable(url, dest, _network_reason(e, timeout)) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress_fn is not None:
                        progress_fn(done, total)
                    if bar is not None:
                        bar.update(len(chunk))
                if total is not None and done != total:
                    raise _unavailable(
                        url, dest, f"the connection closed after {done} of {total} bytes"
                    )
            got = h.hexdigest()
            if expected is not None and got != expected:
                raise ValueError(
                    f"sha256 mismatch for {url}: expected {expected}, got {got} ({done} bytes). "
                    "The download is corrupt or the file changed on the server; it was deleted"
                )
    finally:
        if bar is not None:
            bar.close()
    if expected is None:
        logger.warning(
            "downloaded %s without a known sha256 (not verified); its sha256 is %s", url, got
        )
    return dest


def _network_reason(e: BaseException, timeout: float) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)) or isinstance(
        getattr(e, "reason", None), (socket.timeout, TimeoutError)
    ):
        return f"no answer within {timeout:g} s"
    reason = getattr(e, "reason", None) or e
    return str(reason) or type(e).__name__


def _unavailable(url: str, dest: Path, reason: str) -> CheckpointUnavailableError:
    return CheckpointUnavailableError(
        f"could not download {url} ({reason}). Download it yourself and put it at {dest}",
        url=url,
        path=dest,
        reason=reason,
    )


# --------------------------------------------------------------------------------------------
# registered variants


def _variant(name: str):
    from samkit.configs import sam as configs

    v = configs.get_variant(name)
    if v.url is None or v.filename is None:
        raise ValueError(
            f"variant {name!r} has no official checkpoint to download; pass a checkpoint file "
            "(checkpoint=PATH / --checkpoint PATH)"
        )
    return v


def checkpoint_path(variant_name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the checkpoint of a registered variant lives: `cache_dir / variant.filename`."""
    v = _variant(variant_name)
    base = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return base / v.filename


def _unavailable_message(name: str, url: str, path: Path, reason: str) -> str:
    return (
        f"The checkpoint for {name!r} is not available: {reason}. "
        f"Download {url} yourself and put the file at {path} "
        f"(the cache folder is {path.parent}; the SAMKIT_CACHE environment variable sets another); "
        "or keep the file anywhere and point samkit at it with --checkpoint PATH on the command "
        "line or checkpoint=PATH in Python. To try samkit without the file (offline), add "
        "--random-weights: everything runs, but the masks are meaningless."
    )


def download_advice(name: str, url: str | None, path: Path | None, reason: str | None) -> str:
    """What `samkit download NAME` says when the file cannot be fetched: how to get it into the
    cache by hand, and that the other commands can use a file kept elsewhere (`download` itself
    has no --checkpoint or --random-weights)."""
    return (
        f"could not download the checkpoint for {name!r} ({reason or 'no reason given'}). "
        f"Fetch {url} another way (a browser, curl, another machine) and put the file at {path}; "
        f"`samkit download {name}` then checks its sha256 (--cache-dir DIR or the SAMKIT_CACHE "
        "environment variable picks another folder). A file kept elsewhere needs no download: "
        "the other commands (segment, auto, embed, track, ...) take --checkpoint PATH."
    )


def _read_stamp(stamp: Path) -> dict | None:
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    stamp = path.with_name(path.name + _STAMP_SUFFIX)
    data = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        atomic_write_text(stamp, json.dumps(data) + "\n")
    except OSError as e:  # a read-only cache still works, it just hashes again next time
        logger.debug("could not write %s: %s", stamp, e)


def _verify_cached(path: Path, expected: str, url: str) -> None:
    """Hash a cached file once; afterwards trust the stamp while size and mtime are unchanged."""
    st = path.stat()
    stamp = _read_stamp(path.with_name(path.name + _STAMP_SUFFIX))
    if (
        stamp is not None
        and stamp.get("sha256") == expected
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    ):
        return
    got = sha256_file(path)
    if got != expected:
        raise ValueError(
            f"{path} exists but its sha256 is {got}, expected {expected} (the official file is "
            f"{url}). It is corrupt, incomplete or a different version: delete it and run again "
            "to download it again"
        )
    _write_stamp(path, got)


def fetch_checkpoint(
    variant_name: str,
    cache_dir: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Path to the official checkpoint of a registered variant, downloading it if needed.

    A cached file is verified against the registry's sha256 once (a `<file>.sha256` stamp next to
    it records the result; later calls only compare size and mtime). A missing file is downloaded
    from the variant's URL unless `download=False`.

    Args:
        variant_name: a name known to `samkit.configs.sam.get_variant` (e.g. "vit_b").
        cache_dir: the cache folder; default `default_cache_dir()`.
        download: allow a download when the file is not cached.
        progress: show a progress line on stderr while downloading.

    Returns:
        The path of the verified checkpoint file.

    Raises:
        CheckpointUnavailableError: not cached and offline / `download=False` / HTTP error; the
            message says which URL to fetch and where to put the file.
        ValueError: unknown variant, or a cached or downloaded file with the wrong sha256.
    """
    v = _variant(variant_name)
    path = checkpoint_path(variant_name, cache_dir)
    expected = _check_sha256(v.sha256)
    if path.is_file():
        if expected is not None:
            _verify_cached(path, expected, v.url)
        return path
    if not download:
        reason = "it is not in the cache and download=False"
        raise CheckpointUnavailableError(
            _unavailable_message(v.name, v.url, path, reason), url=v.url, path=path, reason=reason
        )
    try:
        download_file(v.url, path, expected, progress=progress)
    except CheckpointUnavailableError as e:
        reason = f"downloading it failed ({e.reason or e})"
        raise CheckpointUnavailableError(
            _unavailable_message(v.name, v.url, path, reason), url=v.url, path=path, reason=e.reason
        ) from None
    if expected is not None:
        _write_stamp(path, expected)
    return path
