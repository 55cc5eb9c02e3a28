"""Progress for long tests: say which test is running once it takes a while, and how long it took.

`python -m pytest -q` prints one dot per test, so a test that runs for minutes looks like a hang.
With this plugin (registered by tests/conftest.py), a test that is still running after
`--progress-after` seconds (default 10; 0 turns this off) gets a line, repeated every
`--progress-every` seconds (default 60) while it runs, and a line with its duration when it ends::

    ........
      ... tests/amg/test_parity_sam2.py::test_amg2_matches_official[amg2_dog] running for 10 s
      ... tests/amg/test_parity_sam2.py::test_amg2_matches_official[amg2_dog] took 24.3 s
    .....

With pytest-xdist the plugin runs in the controller, which replays each worker's log hooks: several
tests can be running at once, each named on its own.

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


def shown(nodeid: str) -> str:
    """The node id without the `@group` suffix that xdist's `--dist loadgroup` appends."""
    return nodeid.rsplit("@", 1)[0] if "@" in nodeid.rsplit("::", 1)[-1] else nodeid


class Progress:
    """The plugin object: one per session."""

    def __init__(self, config: pytest.Config, after: float, every: float) -> None:
        self.config = config
        self.after = after
        self.every = every
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        # node id -> [start, seconds into the test of its next line]; several at once with
        # pytest-xdist, whose controller replays each worker's logstart / logfinish here
        self.running: dict[str, list[float]] = {}
        self.slow: set[str] = set()  # node ids whose reports carry the `slow` marker
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
                if not self.running:
                    self.wake.wait()
                    continue
                now = time.monotonic()
                wait = self.every
                for nodeid, timing in self.running.items():
                    elapsed = now - timing[0]
                    if elapsed >= timing[1]:
                        self._line(f"  ... {nodeid} running for {elapsed:.0f} s")
                        timing[1] = elapsed + self.every
                    wait = min(wait, timing[1] - elapsed)
                self.wake.wait(max(wait, 0.05))

    # ------------------------------------------------------------------ hooks
    # logstart / logreport / logfinish run in the process that runs the tests, and in the xdist
    # controller for its workers' tests; the terminal reporter writes in them, under the lock.
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logstart(self, nodeid: str) -> Iterator[None]:
        with self.lock:
            self.running[shown(nodeid)] = [time.monotonic(), self.after]
            self.wake.notify_all()
            yield
            self._flush()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Iterator[None]:
        with self.lock:
            if "slow" in report.keywords:
                self.slow.add(shown(report.nodeid))
            yield
            self._flush()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> Iterator[None]:
        with self.lock:
            yield
            nodeid = shown(nodeid)
            timing = self.running.pop(nodeid, None)
            if timing is not None:
                took = time.monotonic() - timing[0]
                if took >= self.after:
                    self._line(f"  ... {nodeid} took {took:.1f} s")
                    if nodeid not in self.slow:
                        self.unmarked_slow.append((nodeid, took))
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
