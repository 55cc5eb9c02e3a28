"""Run samkit in a child process: the environment, and a run killed at its first output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def samkit_env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout's src/ on PYTHONPATH (plus `extra`)."""
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}


def kill_at_first_output(
    argv: list[str], out: Path, cwd: Path, timeout: float, pattern: str = "*.json"
) -> None:
    """Start `python -m samkit *argv` and SIGKILL it as soon as `out` holds a file matching
    `pattern` (a run killed mid-way, for resume tests).

    Raises:
        AssertionError: the run ended before writing such a file (its output in the message),
            or wrote none within `timeout` seconds.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "samkit", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=samkit_env(),
        cwd=cwd,
    )
    deadline = time.monotonic() + timeout
    try:
        while not list(out.glob(pattern)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no output within {timeout:g} s"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
