"""Progress for long tests: say which test is running once it takes a while, and how long it took.

`python -m pytest -q` prints one dot per test, so a test that runs for minutes looks like a hang.
With this plugin (registered by tests/conftest.py), a test that is still running after
`--progress-after` seconds (default 10; 0 turns this off) gets a line, repeated every
`--progress-every` seconds (default 60) while it runs, and a line with its duration when it ends::

    ........
      ... tests/amg/test_parity_sam2.py::test_amg2_matches_official[amg2_dog] running for 10 s
      ... tests/amg/test_parity_sam2.py::test_amg2_matches_official[amg2_dog] took 24.3 s
    .....

The time is the whole test (setup, call and teardown). Lines come from a timer thread, under a
lock that the terminal reporter's per-test writes also take, so they never cut into its output.
The summary lists tests that took longer than `--progress-after` seconds but are not marked
`slow` (candidates for the marker that `-m "not slow"` deselects).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest


class Progress:
    """The plugin object: one per session."""

    def __init__(self, config: pytest.Config, after: float, every: float) -> None:
        self.config = config
        self.after = after
        self.every = every
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.current: tuple[str, float] | None = None  # (nodeid, start)
        self.due = after  # seconds into the current test of the next line
        self.unmarked_slow: list[tuple[str, float]] = []
        self.stopped = False
        try:  # the terminal as it is now, before any test's capture redirects it
            self.out: TextIO | None = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        except (AttributeError, OSError, ValueError):  # no real stdout: no running lines
            self.out = None
        self.thread = threading.Thread(target=self._watch, name="test-progress", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ output
    def _line(self, text: str) -> None:
        """Write `text` on a line of its own, to the terminal (not to a test's captured output).

        During a test, pytest's capture has redirected file descriptor 1, so the line goes to
        the descriptor saved at start-up, through the reporter's writer (which keeps track of
        the current line's width for the `[ 42%]` column).
        """
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.out is None:
            return
        tw = tr._tw
        saved = tw._file
        tw._file = self.out
        try:
            if tw.width_of_current_line:
                tw.line()
            if tr.verbosity <= 0:
                tw.line(text)  # the dots go on below
            else:
                tw.write(text)  # the reporter ends the line before its next file / test name
            tw.flush()
        finally:
            tw._file = saved
        tr.currentfspath = None

    def _flush(self) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr._tw.flush()

    # ------------------------------------------------------------------ timer thread
    def _watch(self) -> None:
        with self.lock:
            while not self.stopped:
                if self.current is None:
                    self.wake.wait()
                    continue
                nodeid, start = self.current
                elapsed = time.monotonic() - start
                if elapsed < self.due:
                    self.wake.wait(self.due - elapsed)
                    continue
                self._line(f"  ... {nodeid} running for {elapsed:.0f} s")
                self.due = elapsed + self.every

    # ------------------------------------------------------------------ hooks
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        with self.lock:
            self.current = (item.nodeid, time.monotonic())
            self.due = self.after
            self.wake.notify_all()
        yield
        with self.lock:
            nodeid, start = self.current or (item.nodeid, time.monotonic())
            self.current = None
            took = time.monotonic() - start
            if took >= self.after:
                self._line(f"  ... {nodeid} took {took:.1f} s")
                if item.get_closest_marker("slow") is None:
                    self.unmarked_slow.append((nodeid, took))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logstart(self) -> Iterator[None]:
        with self.lock:
            yield
            self._flush()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logreport(self) -> Iterator[None]:
        with self.lock:
            yield
            self._flush()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logfinish(self) -> Iterator[None]:
        with self.lock:
            yield
            self._flush()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unmarked_slow:
            return
        terminalreporter.section(f"tests over {self.after:g} s not marked slow")
        for nodeid, took in sorted(self.unmarked_slow, key=lambda x: -x[1]):
            terminalreporter.write_line(f"{took:7.1f} s  {nodeid}")

    def pytest_unconfigure(self) -> None:
        with self.lock:
            self.stopped = True
            self.wake.notify_all()
        self.thread.join(timeout=5)
        if self.out is not None:
            self.out.close()
