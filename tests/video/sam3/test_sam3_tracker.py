"""SAM 3's tracker (`Sam3Tracker`): the checkpoint's `tracker.*` tensors load unchanged, and
incomplete tensors are refused. Its numbers against the official ones (object 0 started from
its frame-0 detection, its frame-0 output, memory update and tracked frame 1, and every later
tracker step of the recorded sessions) are compared call by call in test_parity_sam3_video."""

from __future__ import annotations

import pytest
import torch

from samkit.build.sam3_video import build_sam3_tracker
from samkit.modeling.sam3.tracker import Sam3Tracker, samkit_to_official_key
from tests.video.sam3 import recorded as rec

pytestmark = pytest.mark.skipif(
    not rec.CHECKPOINT.is_file(), reason="the SAM 3 tiny checkpoint is not in ../shared"
)


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return torch.load(rec.CHECKPOINT, weights_only=True)["model"]


def test_tracker_loads_every_tracker_tensor_unchanged(checkpoint) -> None:
    tracker = build_sam3_tracker(checkpoint)
    assert isinstance(tracker, Sam3Tracker)
    back = {"tracker." + samkit_to_official_key(k): v for k, v in tracker.state_dict().items()}
    official = {k for k in checkpoint if k.startswith("tracker.")}
    assert set(back) == official
    for k in official:
        assert torch.equal(back[k], checkpoint[k]), k
    assert tracker.low_res_mask_size == 288 and tracker.input_mask_size == 1152


def test_tracker_refuses_incomplete_tensors(checkpoint) -> None:
    detector_only = {k: v for k, v in checkpoint.items() if k.startswith("detector.")}
    with pytest.raises(ValueError, match="no tracker"):
        build_sam3_tracker(detector_only)
    broken = {k: v for k, v in checkpoint.items() if "obj_ptr_proj.layers.2" not in k}
    with pytest.raises(ValueError, match="missing"):
        build_sam3_tracker(broken)
