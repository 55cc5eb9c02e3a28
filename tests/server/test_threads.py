"""Which threads run torch in the web app (see samkit.server.threads): a fixed set, reused."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.server.engine import Engine
from samkit.server.threads import JobThread, _omp_pause, run_in_fresh_thread


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_run_in_fresh_thread_returns_raises_and_sets_threads():
    caller = threading.get_ident()
    ident, n = run_in_fresh_thread(
        lambda: (threading.get_ident(), torch.get_num_threads()), threads=1
    )
    assert ident != caller and n == 1
    assert run_in_fresh_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError, match="boom"):
        run_in_fresh_thread(lambda: {}["boom"])
    assert not [t for t in threading.enumerate() if t.name == "samkit-torch-job"]


def test_job_thread_is_one_thread_reused_in_order_and_reraises():
    jobs = JobThread("samkit-test", threads=1)
    try:
        seen = [
            jobs.submit(lambda: (threading.get_native_id(), torch.get_num_threads()))
            for _ in range(20)
        ]
        results = [f.result(timeout=30) for f in seen]
        assert {n for _, n in results} == {1}
        tids = {tid for tid, _ in results}
        assert len(tids) == 1 and tids != {threading.get_native_id()}  # one OS thread, not ours
        order: list[int] = []
        for f in [jobs.submit(order.append, i) for i in range(10)]:
            f.result(timeout=30)
        assert order == list(range(10))
        with pytest.raises(KeyError, match="boom"):
            jobs.submit(lambda: {}["boom"]).result(timeout=30)
        assert jobs.submit(threading.get_native_id).result(timeout=30) in tids  # still that one
    finally:
        jobs.shutdown()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        JobThread("x", threads=0)


@pytest.mark.skipif(_omp_pause() is None, reason="torch does not run on libgomp here")
def test_job_thread_hands_its_openmp_team_back_after_each_job():
    """A parallel op makes OpenMP worker threads; after the job they are gone (as if the
    thread had exited), while the job thread itself stays."""
    jobs = JobThread("samkit-test", threads=2)
    a = torch.randn(384, 384)

    def parallel_op() -> int:
        for _ in range(3):
            (a @ a).relu_()
        return _os_threads()  # inside the job: the team is alive

    try:
        jobs.submit(int).result(timeout=30)  # the job thread exists now
        idle = _os_threads()
        for _ in range(3):
            during = jobs.submit(parallel_op).result(timeout=60)
            assert during > idle  # the team's worker thread(s)
            assert _os_threads() == idle  # handed back after the job
    finally:
        jobs.shutdown()


def test_engine_runs_every_job_on_two_fixed_threads(sam1_shapes):
    """Many encodes and "segment everything" runs: the encoder always runs on the same job
    thread, clicks on the same decoding thread, and no thread is added per job."""
    seen: list[tuple[str, int, int]] = []

    def record(module, inputs):
        t = threading.current_thread()
        seen.append((t.name, threading.get_native_id(), torch.get_num_threads()))

    engine = Engine(sam1_shapes, cache_bytes=64 * 2**20, max_upload_bytes=2**20, threads=1)
    handles = [
        sam1_shapes.image_encoder.register_forward_pre_hook(record),
        sam1_shapes.mask_decoder.register_forward_pre_hook(record),
    ]
    try:
        entries = []
        for k in range(6):
            _, fut = engine.submit_image(_png(k))
            entry, cached = fut.result(timeout=60)
            assert not cached
            entries.append(entry)
            if k == 0:
                threads_after_first = threading.active_count()
        params = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        for entry in entries[:2]:
            out = engine.everything(entry, params).result(timeout=60)
            assert out["filter_counts"]["candidates"] == 4 * 3
        encoder = {(name, tid, n) for name, tid, n in seen if name.startswith("samkit-jobs")}
        assert len(encoder) == 1 and next(iter(encoder))[2] == 1  # one thread, 1 torch thread
        assert len([s for s in seen if s[0].startswith("samkit-jobs")]) >= 6 + 2 * 1
        seen.clear()
        for entry in entries:
            out = engine.submit_predict(entry, [(10.0, 8.0)], [1], None, True).result(timeout=60)
            assert len(out["masks"]) == 3
        decoder = {(name, tid) for name, tid, _ in seen}
        assert len(decoder) == 1 and next(iter(decoder))[0].startswith("samkit-decoder")
        assert threading.active_count() <= threads_after_first + 1  # + the decoding thread
    finally:
        for h in handles:
            h.remove()
        engine.close()
