"""Which threads run torch in the web app, so that memory stays bounded and small CPU ops keep
their speed.

Two rules, each learned from a measurement:

* A fixed set of long-lived threads. glibc's malloc serves each thread from an arena (a new thread
  takes a free one or makes one, up to 8 per core), and memory freed in an arena stays there, up to
  the 1 GiB trim threshold of `samkit.runtime.accel.tune_malloc` (which `samkit serve` applies, as every
  `samkit` command), for that arena's later allocations. When every job ran on a fresh thread, the
  jobs' big temporaries were spread over ever other arenas and the server's RSS grew by about
  0.9 GB a round of 4 video sessions, even with every session closed (issue 24). The app therefore
  runs torch on three threads that live as long as the app: the decoding thread (clicks), the image
  job thread (encoding an upload, "segment everything") and the video job thread
  (`samkit.server.video_manager`); `benchmarks/bench_server.py --video-rounds` measures the RSS.
* One OpenMP team at rest. PyTorch's CPU build parallelises ops with GNU OpenMP, which gives every
  OS thread that runs a parallel op its own team of worker threads. Once the live teams hold more
  threads than there are cores, libgomp's workers spin only ~100 iterations before sleeping, so
  every op pays a futex wake-up: on the 2-core reference machine a click (hundreds of small ops in
  the mask decoder) took 33 ms with one team and 45 ms as soon as a second thread had run a
  parallel op. A `JobThread` therefore hands its team back after every job
  (`omp_pause_resource_all`, OpenMP 5.0), as a thread that exits would; only the decoding thread
  keeps its team between clicks.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """Call `fn(*args)` on a new thread that exits afterwards; return its result or re-raise.

    For one-off work before the app starts (building the model), so that the main thread never
    holds an OpenMP team.

    Args:
        fn: the function.
        *args: its arguments.
        threads: torch intra-op threads inside the call (default: the caller's setting).
    """
    n = torch.get_num_threads() if threads is None else int(threads)
    result: dict[str, Any] = {}

    def target() -> None:
        torch.set_num_threads(n)
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            result["error"] = e

    thread = threading.Thread(target=target, name="samkit-torch-job", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@functools.cache
def _omp_pause() -> Callable[[int], int] | None:
    """libgomp's `omp_pause_resource_all` if torch runs on an already loaded libgomp, else None."""
    if not sys.platform.startswith("linux"):
        return None
    names = [str(p) for p in sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*"))]
    for name in [*names, "libgomp.so.1"]:
        try:  # RTLD_NOLOAD: only the copy this process uses already, never a new one
            fn = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


def release_openmp_team() -> bool:
    """Let the calling thread's OpenMP worker threads exit (the next parallel op makes new ones).

    Returns:
        Whether libgomp did it (False: torch does not use libgomp here, or the call failed).
    """
    pause = _omp_pause()
    return pause is not None and pause(1) == 0  # 1: omp_pause_soft


class JobThread:
    """One long-lived thread that runs torch jobs one at a time, in submission order.

    The thread is made at the first job and lives until `shutdown`; after every job it releases
    its OpenMP team (see the module docstring).

    Args:
        name: the thread's name prefix.
        threads: torch intra-op threads of every job.
    """

    def __init__(self, name: str, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.name = name
        self.threads = int(threads)
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=name,
            initializer=torch.set_num_threads,
            initargs=(self.threads,),
        )

    def submit(self, fn: Callable[..., T], *args: Any) -> Future:
        """Run `fn(*args)` after the jobs before it; a future of its result (or its error)."""
        return self._pool.submit(self._run, fn, *args)

    @staticmethod
    def _run(fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        finally:
            release_openmp_team()

    def shutdown(self) -> None:
        """Cancel the queued jobs; the running one finishes, then the thread exits."""
        self._pool.shutdown(wait=False, cancel_futures=True)
