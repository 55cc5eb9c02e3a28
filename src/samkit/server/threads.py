"""Which threads run torch, so that small CPU ops keep their speed in a multi-threaded server.

PyTorch's CPU build parallelises ops with GNU OpenMP, which gives every OS thread that runs a
parallel op its own team of worker threads, kept until that thread exits. Once the live teams hold
more threads than there are cores, libgomp's workers spin only ~100 iterations before sleeping, so
every op pays a futex wake-up. The mask decoder runs hundreds of small ops per click: on the 2-core
reference machine a click took 33 ms with one team and 45 ms as soon as a second thread (the
encoder, or the main thread that built the model) had ever run a parallel op.

The web app therefore runs torch on one long-lived decoding thread, and everything else (building
the model, encoding an upload, "segment everything") on a fresh thread that exits when done, taking
its team with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """Call `fn(*args)` on a new thread that exits afterwards; return its result or re-raise.

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
