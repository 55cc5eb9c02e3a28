"""Which threads run torch in the web app (see samkit.server.threads)."""

from __future__ import annotations

import threading

import pytest
import torch

from samkit.server.engine import Engine
from samkit.server.threads import run_in_fresh_thread
from tests.conftest import IMAGES


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


def test_engine_decodes_on_one_thread_and_encodes_on_threads_that_exit(sam1_shapes):
    seen: list[tuple[str, int]] = []

    def record(module, inputs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))

    engine = Engine(sam1_shapes, cache_bytes=64 * 2**20, max_upload_bytes=2**20, threads=1)
    handles = [
        sam1_shapes.image_encoder.register_forward_pre_hook(record),
        sam1_shapes.mask_decoder.register_forward_pre_hook(record),
    ]
    try:
        _, fut = engine.submit_image((IMAGES / "dog.jpg").read_bytes())
        entry, cached = fut.result(timeout=60)
        assert not cached
        assert seen == [("samkit-torch-job", 1)]  # the encoder ran on a short-lived thread...
        assert not [t for t in threading.enumerate() if t.name == "samkit-torch-job"]  # ...gone
        seen.clear()
        for _ in range(3):
            out = engine.submit_predict(entry, [(100.0, 80.0)], [1], None, True).result(timeout=60)
            assert len(out["masks"]) == 3
        names = {name for name, _ in seen}
        assert len(names) == 1 and next(iter(names)).startswith("samkit-decoder")
        assert {n for _, n in seen} == {1}
    finally:
        for h in handles:
            h.remove()
        engine.close()
