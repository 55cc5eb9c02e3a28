"""Progress reporting for the generator (`progress=True`: the one samkit reporter)."""

from __future__ import annotations

from collections.abc import Callable

from samkit.io.progress import Progress

ProgressFn = Callable[[int, int, str], None]


def make_progress(progress: ProgressFn | bool | None) -> ProgressFn | None:
    """The generator's `progress` argument as a callable `(done, total, stage)`, or None.

    True gives `samkit.io.progress.Progress` over the batches (a bar on a terminal, lines
    elsewhere), started on the first call and closed at stage "done".

    Raises:
        ValueError: anything else that is not a callable.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        bar: dict[str, Progress] = {}

        def report(done: int, total: int, stage: str) -> None:
            if "bar" not in bar:
                bar["bar"] = Progress(total, "segment everything", "batches")
            bar["bar"].set(done, stage)
            if stage == "done":
                bar.pop("bar").close()

        return report
    if not callable(progress):
        raise ValueError(
            f"progress must be a callable(done, total, stage), True or None, got {progress!r}"
        )
    return progress
