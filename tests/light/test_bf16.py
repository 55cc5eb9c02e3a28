"""bfloat16 MobileSAM / HQ-SAM (`build_*(..., dtype=torch.bfloat16)`: the encoder in bf16, the
decoder under bf16 autocast) against the official float32 outputs of the fixtures.

The bounds are those of tests/runtime/test_accel.py for SAM 1 (mask IoU >= 0.97, predicted IoU
within 0.02); measured here: mask IoU 0.995, IoU within 1.7e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.build.light import build_mobile_sam, build_sam_hq
from samkit.predict.sam import SamPredictor
from samkit.predict.sam_hq import SamHQPredictor
from tests.conftest import IMAGES, load_rgb

HERE = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("folder", "checkpoint"),
    [
        ("mobile_sam", "mobile_sam_tiny.pt"),
        ("sam_hq/vit_tiny", "sam_hq_vit_tiny_tiny.pth"),
        ("sam_hq/vit_b", "sam_hq_vit_b_tiny.pth"),
    ],
)
def test_bf16_keeps_the_official_masks(folder: str, checkpoint: str) -> None:
    hq = folder.startswith("sam_hq")
    build = build_sam_hq if hq else build_mobile_sam
    model = build(checkpoint=HERE / folder / checkpoint, dtype=torch.bfloat16)
    assert model.image_encoder.neck[0].weight.dtype == torch.bfloat16
    p = SamHQPredictor(model) if hq else SamPredictor(model)
    p.set_image(load_rgb(IMAGES / "dog.jpg"))
    assert p.features.dtype == torch.float32  # the encoder's output comes back as float32
    z = np.load(HERE / folder / "case_dog_3pts.npz")
    kw = {"hq_token_only": bool(z["hq_token_only"])} if hq else {}
    masks, iou, _ = p.predict(z["point_coords"], z["point_labels"], multimask_output=False, **kw)
    w = int(z["masks_shape"][-1])
    want = np.unpackbits(z["masks_packbits"], axis=-1)[..., :w].astype(bool)
    assert (masks & want).sum() / (masks | want).sum() >= 0.97
    np.testing.assert_allclose(iou, z["iou_predictions"], rtol=0, atol=0.02)
