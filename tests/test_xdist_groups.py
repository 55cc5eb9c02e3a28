"""The README's test command runs pytest-xdist with `--dist loadgroup`; tests/conftest.py puts each
file's tests in one group, and the Ray tests in one. Checked in a real xdist run: a conftest hook
that ran after xdist read the groups would leave every test ungrouped, in silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RECORD = (
    "import os, time\nfrom pathlib import Path\n\n"
    "def _note(name):\n"
    "    time.sleep(0.3)\n"
    "    with open(Path(__file__).parents[2] / 'workers.txt', 'a') as f:\n"
    "        f.write(name + ' ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n\n"
)


def test_a_files_tests_and_the_ray_tests_each_run_in_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('samkit_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "pytest_collection_modifyitems = mod.pytest_collection_modifyitems\n"
    )  # fmt: skip
    for folder, names in (("distributed", ("ray_a", "ray_b", "ray_c")), ("video", ("v",))):
        d = tmp_path / "tests" / folder
        d.mkdir(parents=True)
        for name in names:
            body = "".join(f"def test_{k}():\n    _note('{name}')\n\n" for k in range(3))
            (d / f"test_{name}.py").write_text(RECORD + body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadgroup", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    seen: dict[str, set[str]] = {}
    for line in (tmp_path / "workers.txt").read_text().splitlines():
        name, worker = line.split()
        seen.setdefault("ray" if name.startswith("ray") else name, set()).add(worker)
    assert sum(1 for _ in (tmp_path / "workers.txt").read_text().splitlines()) == 12
    assert len(seen["ray"]) == 1, seen  # all 9 Ray tests, across 3 files, in one worker
    assert len(seen["v"]) == 1, seen
