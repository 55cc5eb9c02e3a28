"""THE progress reporter of samkit, on tqdm: `samkit auto` (also on Ray), `track`, `eval-video`,
fine-tuning, evaluation and the generators' `progress=True`.

- On a terminal: one tqdm bar rewritten in place (rate, elapsed, ETA, a note).
- Not on a terminal (a log file, a pipe, a test's captured stderr): no bar and no carriage
  returns, plain lines `desc: 3/10 images | 1.52 images/s | ETA 00:04, note`, one per update or at
  most one every `every_s` seconds (the first and the last update always get one).
- Quiet (`enabled=False`): nothing is written.

Rates and times come from tqdm (`tqdm.format_meter`), so the bar and the lines agree.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
    "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
)
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt}{unit} | {rate_noinv_fmt} | ETA {remaining}{postfix}"
OPEN_BAR_FORMAT = "{desc}: {n_fmt}{unit} [{elapsed}, {rate_noinv_fmt}{postfix}]"  # total unknown
OPEN_LINE_FORMAT = "{desc}: {n_fmt}{unit} | {rate_noinv_fmt}{postfix}"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Progress of `total` items (a bar on a terminal, lines elsewhere, nothing when quiet).

    Args:
        total: number of items (>= 0; 0 is shown as 1 so the rate and ETA stay defined), or
            None when unknown (no percentage or ETA then).
        desc: what is being done ("auto", "tracking", "finetune").
        unit: the items, plural ("images", "frames", "steps"), or "B" with `scale`.
        scale: show counts with SI prefixes (5.30M/12.0MB, 2.65MB/s), for bytes.
        enabled: False for quiet mode.
        initial: items already done (a resumed run); the rate counts only the new ones.
        every_s: off a terminal, the least seconds between two lines (0: a line per update).
        file: the stream (default: stderr).

    Use `update(n, note)` after each item (or `set(done, note)` with a running count), and
    `close()` at the end (or use it as a context manager).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        *,
        scale: bool = False,
        enabled: bool = True,
        initial: int = 0,
        every_s: float = 0.0,
        file: TextIO | None = None,
    ) -> None:
        if (total is not None and total < 0) or initial < 0:
            raise ValueError(f"total and initial must be >= 0, got {total} and {initial}")
        self.total = None if total is None else max(int(total), 1)
        self.n = self.initial = int(initial)
        self.desc, self.unit, self.scale = desc, unit if scale else f" {unit}", scale
        self.enabled, self.every_s = enabled, float(every_s)
        self.file = file if file is not None else sys.stderr
        self.note = ""
        self.t0 = time.perf_counter()
        self._last_line: float | None = None
        self._bar: tqdm | None = None
        if enabled and _is_terminal(self.file):
            self._bar = tqdm(
                total=self.total,
                initial=self.n,
                desc=desc,
                unit=self.unit,
                unit_scale=scale,
                bar_format=BAR_FORMAT if self.total is not None else OPEN_BAR_FORMAT,
                file=self.file,
                dynamic_ncols=True,
            )

    def update(self, n: int = 1, note: str = "") -> None:
        """`n` more items done; `note` (e.g. "dog.jpg: 12 masks") is shown after the ETA."""
        self.set(self.n + n, note)

    def set(self, done: int, note: str = "") -> None:
        """`done` items done in all (never more than `total`)."""
        step = int(done) - self.n
        self.n, self.note = int(done), note
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(step)
        elif self.enabled:
            now = time.perf_counter()
            last = self.total is not None and self.n >= self.total
            if self._last_line is None or last or now - self._last_line >= self.every_s:
                self._last_line = now
                self.file.write(self.line() + "\n")
                self.file.flush()

    def working(self, note: str, every_s: float = 10.0) -> None:
        """A note on the item in progress (e.g. "dog.jpg: crop 3/21, batch 40/84") without
        counting it: a terminal's bar shows it at once; elsewhere a line is written at most
        every `every_s` seconds, so a long item still shows that it moves."""
        self.note = note
        if self._bar is not None:
            self._bar.set_postfix_str(note)
        elif self.enabled:
            now = time.perf_counter()
            if now - (self._last_line if self._last_line is not None else self.t0) >= every_s:
                self._last_line = now
                self.file.write(self.line() + "\n")
                self.file.flush()

    def line(self) -> str:
        """The plain progress line of now (what is written off a terminal)."""
        return tqdm.format_meter(
            self.n,
            self.total,
            time.perf_counter() - self.t0,
            prefix=self.desc,
            unit=self.unit,
            unit_scale=self.scale,
            bar_format=LINE_FORMAT if self.total is not None else OPEN_LINE_FORMAT,
            postfix=self.note or None,
            initial=self.initial,
        )

    def close(self) -> None:
        """End the bar (a terminal gets its newline); further updates are not shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
