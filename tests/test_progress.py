"""The progress plugin (tests/progress.py) in a real pytest run: a long test is named while it
runs and when it ends, on lines of their own, outside the test's captured output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_long_test_is_named_while_it_runs_and_when_it_ends(
    tmp_path: Path, workers: list[str]
) -> None:
    if workers:
        pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(
        "from tests.progress import Progress\n\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(Progress(config, 1.0, 1.0), 'samkit-progress')\n"
    )
    (tmp_path / "test_x.py").write_text(
        "import time\nimport pytest\n\n"
        "def test_quick():\n    pass\n\n"
        "def test_long():\n    print('inside')\n    time.sleep(2.6)\n\n"
        "@pytest.mark.slow\ndef test_long_marked():\n    time.sleep(1.3)\n\n"
        "def test_after():\n    pass\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, "test_x.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    running = [ln for ln in lines if "test_x.py::test_long running for" in ln]
    assert len(running) >= 2 and running[0] == "  ... test_x.py::test_long running for 1 s"
    took = [ln for ln in lines if "test_x.py::test_long took" in ln]
    assert len(took) == 1 and float(took[0].split("took ")[1].split(" s")[0]) >= 2.6
    assert any("test_x.py::test_long_marked took" in ln for ln in lines)
    assert not any("test_quick" in ln or "test_after" in ln for ln in lines)
    assert "inside" not in r.stdout  # the test's own output stays captured
    # the dots of the four tests are all there, and the summary names the unmarked long test only
    assert "".join(ln for ln in lines if set(ln.split("[")[0].strip()) == {"."}).count(".") == 4
    summary = r.stdout.split("tests over 1 s not marked slow", 1)[1]
    assert "test_x.py::test_long\n" in summary and "test_long_marked" not in summary
    assert "4 passed" in lines[-1]
