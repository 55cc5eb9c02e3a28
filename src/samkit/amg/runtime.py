"""Progress reporting for the generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[int, int, str], None]


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
