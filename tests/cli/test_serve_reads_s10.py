"""`samkit serve` with a SAM 3 checkpoint reads it once: the served image model and the web
app's video tracker (`samkit.cli.video.serve_models`) are built from the same tensors. It read
the file twice (`--model sam3 --checkpoint`; three times with the checkpoint alone), and with
`--model sam3` and the cached sam3.pt it stopped on a TypeError (no path for the tracker).
Reads are counted where every checkpoint file is loaded (`samkit.checkpoint.read`), not timed."""

from __future__ import annotations

import pytest
import uvicorn

import samkit.checkpoint.read as checkpoint_read
from samkit.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def serve(monkeypatch):
    """Run `samkit serve ARGS` up to the server's start; returns (exit status, the app, the
    checkpoint files read)."""
    reads: list[str] = []
    apps: list = []
    torch_load = checkpoint_read._torch_load

    def counted(path, *, mmap):
        reads.append(str(path))
        return torch_load(path, mmap=mmap)

    monkeypatch.setattr(checkpoint_read, "_torch_load", counted)
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config.app)
    )

    def run(*argv: str):
        reads.clear()
        code = main(["serve", "--port", "0", *argv])
        return code, (apps.pop() if apps else None), list(reads)

    return run


@pytest.mark.parametrize("how", ["model_and_checkpoint", "checkpoint_alone", "cached"])
def test_sam3_checkpoint_read_once(serve, sam3_small, tmp_path, monkeypatch, how) -> None:
    path = str(sam3_small)
    if how == "cached":
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / "sam3.pt").symlink_to(sam3_small)
        monkeypatch.setenv("SAMKIT_CACHE", str(cache))
        path, argv = str(cache / "sam3.pt"), ["--model", "sam3"]
    elif how == "checkpoint_alone":
        argv = ["--checkpoint", path]
    else:
        argv = ["--model", "sam3", "--checkpoint", path]
    code, app, reads = serve(*argv)
    assert code == 0 and reads == [path], reads
    assert app.state.video_available == {"available": True, "reason": None}
