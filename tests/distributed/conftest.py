"""A real local Ray instance for the distributed tests, and a check that it leaves nothing behind."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time

import pytest


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid`."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True
    ).stdout
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


def _cluster_processes(raylet_pids: set[int]) -> dict[int, str]:
    """Live processes of our Ray instance: the raylet(s) and every process they started (a Ray
    worker keeps `RAY_RAYLET_PID` in its environment, even once orphaned)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ours = any(e == f"RAY_RAYLET_PID={r}".encode() for e in env for r in raylet_pids)
        if (ours or pid in raylet_pids) and _alive(pid):
            found[pid] = args
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
    raylets = {p for p, a in descendants(os.getpid()).items() if "raylet" in a and p in started}
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        workers_seen = set(_cluster_processes(raylets)) - raylets  # the check below can see them
        ray.shutdown()
    # Every process Ray started (GCS, raylet, workers, actors) is gone soon after shutdown.
    deadline = time.monotonic() + 60
    while True:
        left = _cluster_processes(raylets)
        left.update({p: "started by ray.init" for p in started if _alive(p)})
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for pid in left:  # clean up before failing, so that no test run leaves them behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert raylets and workers_seen, "the raylet or its workers were not found by RAY_RAYLET_PID"
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
