"""`build_sam3_video_predictor` reads its checkpoint once: the detector and the tracker are built
from the same tensors (`build_sam3_image_model(checkpoint_state=...)`), so `torch.load` runs once
for the whole predictor (it ran twice before), and what it builds answers as before (the parity
tests in this folder replay the official recordings on it)."""

from __future__ import annotations

import pytest
import torch

from samkit.build.sam3 import build_sam3_image_model
from samkit.build.sam3_video import build_sam3_tracker
from samkit.checkpoint import read_state_dict
from samkit.video.sam3.build import build_sam3_video_predictor
from tests.conftest import FIXTURES

CKPT = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
pytestmark = pytest.mark.skipif(not CKPT.is_file(), reason="no ../shared/fixtures/sam3_tiny")


def test_the_checkpoint_is_read_once(monkeypatch, sam3_small) -> None:
    loads: list[str] = []
    real = torch.load

    def counting(f, *args, **kwargs):
        loads.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    predictor = build_sam3_video_predictor(checkpoint_path=sam3_small)
    assert loads == [str(sam3_small)], loads
    monkeypatch.setattr(torch, "load", real)
    # the same weights as two reads gave: the image model, then the tracker from its own read
    model = build_sam3_image_model(checkpoint_path=sam3_small, enable_inst_interactivity=True)
    tracker = build_sam3_tracker(read_state_dict(sam3_small))
    for got, want in ((predictor.model, model), (predictor.tracker, tracker)):
        a, b = got.state_dict(), want.state_dict()
        assert list(a) == list(b)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
