"""The image list of a distributed run: files, folders and globs, local or behind a pyarrow URI."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from samkit.io.masks import IMAGE_SUFFIXES

_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class ImageList:
    """The images of a run, in the order `samkit auto` numbers them (`image_id`).

    Attributes:
        paths: the paths Ray Data reads (local absolute paths, or the filesystem's own paths
            such as `bucket/key` for s3://).
        uris: how each image is named in the manifest (the local path or the full URI).
        filesystem: the pyarrow filesystem of remote inputs, None for local files.
    """

    paths: list[str]
    uris: list[str]
    filesystem: Any = None

    @property
    def names(self) -> list[str]:
        """Each image's file name (its stem names the outputs)."""
        if self.filesystem is None:
            return [os.path.basename(p) for p in self.paths]
        return [PurePosixPath(p).name for p in self.paths]


def _is_uri(item: str) -> bool:
    return "://" in item


def _image_suffixes() -> tuple[str, ...]:
    return IMAGE_SUFFIXES


def _local(item: str) -> list[str]:
    if any(c in item for c in _GLOB_CHARS):
        found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
        if not found:
            raise ValueError(f"{item}: the pattern matches no file")
        return [os.path.abspath(p) for p in found]
    if os.path.isdir(item):
        suffixes = _image_suffixes()
        names = sorted(
            n
            for n in os.listdir(item)
            if os.path.isfile(os.path.join(item, n)) and os.path.splitext(n)[1].lower() in suffixes
        )
        return [os.path.abspath(os.path.join(item, n)) for n in names]
    if os.path.isfile(item):
        return [os.path.abspath(item)]
    raise ValueError(f"{item}: no such file or folder")


def _remote(item: str) -> tuple[Any, list[str], str]:
    """(filesystem, paths, scheme prefix) of a URI: a file, a folder or a glob."""
    from pyarrow import fs as pafs

    scheme = item.split("://", 1)[0] + "://"
    pattern = None
    if any(c in item for c in _GLOB_CHARS):
        head, pattern = item.rsplit("/", 1)
        item = head
    try:
        filesystem, path = pafs.FileSystem.from_uri(item)
        info = filesystem.get_file_info(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{item}: cannot open it with pyarrow ({e})") from None
    if info.type == pafs.FileType.File and pattern is None:
        return filesystem, [path], scheme
    if info.type != pafs.FileType.Directory:
        raise ValueError(f"{item}: no such file or folder")
    entries = filesystem.get_file_info(pafs.FileSelector(path, recursive=False))
    suffixes = _image_suffixes()
    files = sorted(e.path for e in entries if e.type == pafs.FileType.File)
    if pattern is not None:
        files = [f for f in files if fnmatch.fnmatchcase(PurePosixPath(f).name, pattern)]
    else:
        files = [f for f in files if PurePosixPath(f).suffix.lower() in suffixes]
    return filesystem, files, scheme


def list_images(inputs: Sequence[str]) -> ImageList:
    """List the images of `inputs` like `samkit auto` does (a folder: its images, sorted, not
    recursive; a glob: its matches, sorted; a file: itself), plus URIs of pyarrow filesystems.

    Raises:
        ValueError: nothing found, a missing input, local and remote inputs mixed, or two images
            with the same file stem (they would write the same outputs).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    inputs = [os.fspath(i) for i in inputs]
    if not inputs:
        raise ValueError("no inputs: give image files, folders, globs or URIs")
    remote = [_is_uri(i) for i in inputs]
    if any(remote) and not all(remote):
        raise ValueError("a mix of local paths and URIs: run them separately")
    paths: list[str] = []
    uris: list[str] = []
    filesystem = None
    for item in inputs:
        if _is_uri(item):
            fs_, found, scheme = _remote(item)
            if filesystem is not None and type(fs_) is not type(filesystem):
                raise ValueError("inputs on different filesystems: run them separately")
            filesystem = fs_
            paths += found
            uris += [scheme + p for p in found]
        else:
            found = _local(item)
            paths += found
            uris += found
    if not paths:
        raise ValueError(f"no image files in {' '.join(inputs)} (looked for {_image_suffixes()})")
    result = ImageList(paths, uris, filesystem)
    stems: dict[str, str] = {}
    for uri, name in zip(uris, result.names):
        stem = os.path.splitext(name)[0]
        if stem in stems and stems[stem] != uri:
            raise ValueError(
                f"{stems[stem]} and {uri} would write the same outputs ({stem}.*); "
                "rename one or run them with different output folders"
            )
        stems[stem] = uri
    return result
