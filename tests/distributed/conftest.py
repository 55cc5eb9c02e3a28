"""A real local Ray instance for the distributed tests, and a check that it leaves nothing behind."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid`."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            children.setdefault(int(parts[1]), []).append(
                (int(parts[0]), parts[2] if len(parts) > 2 else "")
            )
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, args in children.get(todo.pop(), []):
            found[child] = args
            todo.append(child)
    return found


@pytest.fixture(scope="session")
def ray_address():
    """`ray.init(num_cpus=2)` for the session; its GCS address for drivers in subprocesses."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    before = set(descendants(os.getpid()))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        logging_level=logging.WARNING,
    )
    started = set(descendants(os.getpid())) - before
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
    # Every process Ray started (GCS, raylet, workers) is gone soon after shutdown.
    deadline = time.monotonic() + 60
    while True:
        now = descendants(os.getpid())
        left = {p: now.get(p, "?") for p in (started | set(now)) - before if _alive(p)}
        left = {p: a for p, a in left.items() if not a.startswith("ps ")}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"Ray processes left behind: {left}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead but still listed until reaped
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
