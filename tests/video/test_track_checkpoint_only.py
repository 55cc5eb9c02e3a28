"""`samkit track --checkpoint PATH` without --model: the family and variant come from the tensors,
as for the other commands (README: "With only --checkpoint PATH ...")."""

from __future__ import annotations

import re

import pytest

from samkit.cli import main
from tests.conftest import FIXTURES
from tests.video.clips import moving_shapes, write_jpeg_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckonly") / "frames"
    write_jpeg_folder(d, moving_shapes(n=2, h=48, w=64))
    return d


@pytest.mark.parametrize(
    "checkpoint,msg",
    [
        # reaches build_sam2's architecture inference, which asks a custom SAM 2 for its config
        (FIXTURES / "sam2_tiny" / "sam2_tiny.pt", r"custom SAM 2 architecture needs its config"),
        (FIXTURES / "sam1_tiny" / "sam1_tiny.pth", r"needs a SAM 2\b.* checkpoint .*not a SAM 1"),
        (None, r"track needs --model: .*\(or only --checkpoint"),
    ],
)
def test_track_with_only_a_checkpoint_infers_the_model(folder, tmp_path, capsys, checkpoint, msg):
    argv = ["track", str(folder), "--out", str(tmp_path / "out"), "--point", "0:1:5,5"]
    if checkpoint is not None:
        argv += ["--checkpoint", str(checkpoint)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(msg, err), err
    assert not (tmp_path / "out").exists()
