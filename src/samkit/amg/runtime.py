"""Runtime helpers of the generator: progress reporting and per-mask threading."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

ProgressFn = Callable[[int, int, str], None]


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run per-mask CPU work on one intra-op thread.

    Each mask is a handful of ~10 MB memory-bound passes: a second thread gains little when the
    machine is idle, but on a busy machine every op waits for both threads (5-10x slower).
    """
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def make_progress(progress: ProgressFn | bool | None) -> ProgressFn | None:
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError as e:
            raise ValueError("progress=True needs tqdm: pip install tqdm") from e
        bar: dict[str, Any] = {}

        def report(done: int, total: int, stage: str) -> None:
            if "bar" not in bar:
                bar["bar"] = tqdm(total=total, desc="segment everything", unit="batch")
            b = bar["bar"]
            b.set_postfix_str(stage)
            b.update(done - b.n)
            if stage == "done":
                b.close()
                bar.clear()

        return report
    if not callable(progress):
        raise ValueError(
            f"progress must be a callable(done, total, stage), True or None, got {progress!r}"
        )
    return progress
