"""`samkit auto --text ... --ray` with a SAM 3 model on a real local Ray instance
(tests/distributed/conftest.py): the same per-image code as single-process `samkit auto --text`,
so the same files and bytes, the COCO dataset with one category per concept included.

The model is the 336 px SAM 3 checkpoint of the product tests (tests/fixtures/sam3_small.py:
the sam3_tiny weights, 24x24 tokens instead of 72x72); the claim is Ray = one process, not parity
with the official recording, and its scores are in the fixture's range, so THRESHOLD still keeps
some instances and not all."""

from __future__ import annotations

import json

import pytest
import torch

from samkit.cli import main
from samkit.jobs import DATASET_NAME
from tests.cli.test_sam3_commands import THRESHOLD
from tests.distributed.test_ray_runs import _files, _images, _manifest

pytest.importorskip("ray")
pytest.importorskip("pyarrow.parquet")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TEXT = ["--text", "car", "--text", "person", "--threshold", str(THRESHOLD)]
# The embed run has one image: one model worker, with all the CPUs of the 2-CPU test instance
# (tests/distributed/conftest.py) as torch threads (samkit.distributed.run._sizing); a second
# actor would only start up.
ONE_WORKER = ["--num-workers", "1"]
WORKER_THREADS = 2


@pytest.fixture(scope="module")
def model_args(sam3_small) -> list[str]:
    return ["--model", str(sam3_small.parent / "config.json"), "--checkpoint", str(sam3_small)]


def test_auto_text_on_ray_writes_the_single_process_bytes(
    tmp_path, ray_address, capsys, model_args
):
    src = tmp_path / "in"
    names = _images(src, n_generated=1, long_side=120, shared=1)
    one, dist = tmp_path / "one", tmp_path / "ray"
    # 2 workers of 1 torch thread each (one image each: one worker with 2 threads took longer):
    # the single-process run uses 1 thread too (float sums, and so scores, can differ in the
    # last bit with another thread count)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["auto", str(src), "--out", str(one), *model_args, *TEXT, "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    argv = ["auto", str(src), "--out", str(dist), *model_args, *TEXT, "--ray", "--num-workers", "2"]
    assert main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{len(names)} images segmented, 0 skipped" in out, out

    expected = _files(one)
    assert DATASET_NAME in expected and len(expected) == 1 + 2 * len(names)
    assert _files(dist) == expected  # same files, same bytes
    dataset = json.loads((dist / DATASET_NAME).read_text())
    assert [c["name"] for c in dataset["categories"]] == ["car", "person"]
    assert len(dataset["images"]) == len(names) and dataset["annotations"]
    rows = _manifest(dist)
    assert [r["status"] for r in rows] == ["done"] * len(names)
    assert sum(r["masks"] for r in rows) == len(dataset["annotations"])

    # a rerun on Ray skips every image and rebuilds the same dataset
    assert main([*argv, "--quiet"]) == 0
    assert f"0 images segmented, {len(names)} skipped" in capsys.readouterr().out
    assert _files(dist) == expected


def test_embed_on_ray_writes_the_single_process_bytes(tmp_path, ray_address, capsys, model_args):
    src = tmp_path / "in"
    _images(src, n_generated=0, long_side=120, shared=1)
    one, dist = tmp_path / "one", tmp_path / "ray"
    threads = torch.get_num_threads()
    torch.set_num_threads(WORKER_THREADS)
    try:
        assert main(["embed", str(src), "--out", str(one), *model_args]) == 0
    finally:
        torch.set_num_threads(threads)
    argv = ["embed", str(src), "--out", str(dist), *model_args, "--ray", *ONE_WORKER]
    assert main(argv) == 0
    capsys.readouterr()
    expected = _files(one)
    assert len(expected) == 1 and next(iter(expected)).endswith(".safetensors")
    assert _files(dist) == expected  # the SAM 3 features, same bytes
