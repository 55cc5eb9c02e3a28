"""`samkit track VIDEO --text ...` that finds no instance on any frame says so on stderr with
what to try, and still writes its (empty) outputs. The sam3_tiny random weights (queries score
about 0.23, under the official 0.5 / 0.7) as the 336 px checkpoint of the product tests (the
`sam3_small` fixture, tests/fixtures/sam3_small.py: 24x24 tokens instead of 72x72, same scores)
on 2 small frames: 2 detector passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from tests.conftest import FIXTURES

CKPT = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
pytestmark = pytest.mark.skipif(not CKPT.is_file(), reason="no ../shared/fixtures/sam3_tiny")


def test_nothing_found_is_said_with_what_to_try(tmp_path, capsys, sam3_small) -> None:
    clip = tmp_path / "clip"
    clip.mkdir()
    src = FIXTURES / "sam2_video" / "frames"
    for t in range(2):
        Image.open(src / f"{t:05d}.jpg").convert("RGB").resize((96, 54)).save(clip / f"{t}.jpg")
    out = tmp_path / "out"
    argv = ["track", str(clip), "--out", str(out), "--checkpoint", str(sam3_small)]
    assert main([*argv, "--text", "person", "--no-overlay", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["objects"] == []
    err = cap.err
    assert "found no instance of 'person' on any frame" in err, err
    assert "default thresholds" in err and "a lower --threshold (e.g. " in err, err
    assert "another phrase" in err and "written but empty" in err, err
    # the outputs are still written: an empty label map per frame, no annotations
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in pngs] == ["0", "1"]
    assert all(not np.asarray(Image.open(p)).any() for p in pngs)
    assert json.loads((out / "annotations.json").read_text())["annotations"] == []
