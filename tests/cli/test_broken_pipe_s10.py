"""`samkit info | head`: a reader that goes away ends the command quietly (exit 141, as SIGPIPE
would), not with a BrokenPipeError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("args", [["info"], ["info", "--json"]])
def test_closed_stdout_ends_quietly(args: list[str]) -> None:
    code = f"import sys; from samkit.cli import main; sys.exit(main({args!r}))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
