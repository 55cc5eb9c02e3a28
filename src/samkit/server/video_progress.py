"""Progress of the video mode's tracking runs (`VideoSession.job`, `GET .../track`).

One `TrackJob` per `POST /api/videos/{id}/track`: a new run counts from 0. A run is one pass
("forward" or "reverse") or two ("both"); each pass is counted on its own as well (`pass` in
the summary: index, direction, done, total), so the progress restarts with the second pass.

The frames a pass will yield are known in advance for SAM 2 (`samkit.video.track.frames_to_track`,
the official range rule), but a predictor may yield more: SAM 3's concept tracker starts a
reverse pass with the start frame again when that frame was tracked before (a second Track).
A pass's total therefore grows with its frames (`done` never exceeds `total`), and a finished
run reports the frames it tracked as its total.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrackJob:
    """Progress of one tracking run (read by the polling route while the job thread writes).

    Args:
        passes: (direction, expected frames) of each pass, in order.
        direction: the run's direction ("forward", "reverse" or "both").
    """

    passes: list[tuple[str, int]]
    direction: str
    status: str = "running"  # running | done | error | cancelled
    order: list[int] = field(default_factory=list)  # frames in the order they were tracked
    error: str | None = None
    t0: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    cancel: bool = False
    pass_index: int = 0  # the pass running now (0-based)
    pass_done: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.passes:
            raise ValueError("a tracking run has at least one pass")
        self.pass_done = [0] * len(self.passes)

    def start_pass(self, index: int) -> None:
        """Pass `index` (0-based) starts: its count restarts from 0."""
        self.pass_index = index

    def add(self, t: int) -> None:
        """Frame t was tracked by the current pass."""
        self.order.append(t)
        self.pass_done[self.pass_index] += 1

    def finish(self, status: str, error: str | None = None) -> None:
        """End the run; a run that tracked every pass ("done") takes its frames as its totals."""
        if status == "done":
            self.passes = [(d, n) for (d, _), n in zip(self.passes, self.pass_done)]
        self.status, self.error = status, error
        self.seconds = time.perf_counter() - self.t0

    def pass_total(self, i: int) -> int:
        """Pass i's total: the frames expected, or more once it yielded more."""
        return max(self.passes[i][1], self.pass_done[i])

    @property
    def total(self) -> int:
        return sum(self.pass_total(i) for i in range(len(self.passes)))

    def summary(self, since: int = 0) -> dict[str, Any]:
        """The run's progress: `done` / `total` frames (all passes; done <= total), the current
        `pass` (`index` from 1, `count`, `direction`, `done`, `total`), speed and ETA, and the
        frames tracked after the first `since`."""
        done, total, i = len(self.order), self.total, self.pass_index
        elapsed = self.seconds if self.status != "running" else time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        return {
            "status": self.status,
            "direction": self.direction,
            "done": done,
            "total": total,
            "pass": {
                "index": i + 1,
                "count": len(self.passes),
                "direction": self.passes[i][0],
                "done": self.pass_done[i],
                "total": self.pass_total(i),
            },
            "frames": self.order[max(0, since) :],
            "seconds": elapsed,
            "frames_per_s": rate,
            "eta_s": (total - done) / rate if rate > 0 and self.status == "running" else 0.0,
            "error": self.error,
        }
