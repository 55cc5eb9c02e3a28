"""`samkit embed --ray` with an HQ-SAM model on a real local Ray instance
(tests/distributed/conftest.py): the actors run the single-process per-image code, so the files
are the same bytes, the early feature HQ-SAM's files carry included. (`samkit auto --ray` with
MobileSAM also gave the same bytes, 44 s on the loaded machine; it runs SAM 1's code path, which
tests/distributed/test_ray_runs.py covers, so it is not repeated here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samkit.cli import main
from samkit.io.embeddings import load_embedding
from tests.distributed.test_ray_runs import _files, _images

pytest.importorskip("ray")
pytest.importorskip("pyarrow.parquet")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CASES = {
    "embed-sam_hq": ("embed", FIX / "sam_hq" / "vit_b" / "sam_hq_vit_b_tiny.pth", []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_light_models_on_ray_write_the_single_process_bytes(
    case: str, tmp_path: Path, ray_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command, ckpt, extra = CASES[case]
    src = tmp_path / "in"
    _images(src, n_generated=1, long_side=120, shared=1)
    one, dist = tmp_path / "one", tmp_path / "ray"
    model = ["--checkpoint", str(ckpt), *extra]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([command, str(src), "--out", str(one), *model]) == 0
    finally:
        torch.set_num_threads(threads)
    argv = [command, str(src), "--out", str(dist), *model, "--ray", "--num-workers", "2"]
    assert main(argv) == 0
    capsys.readouterr()
    expected = _files(one)
    assert len(expected) >= 2
    assert _files(dist) == expected  # same names, same bytes
    if command == "embed":
        emb = load_embedding(next(iter(sorted(one.glob("*.safetensors")))))
        assert emb.family == "sam_hq" and "interm_embedding" in emb.tensors
