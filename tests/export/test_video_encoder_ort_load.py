"""The video export's image encoder loads in onnxruntime without a shape-merge warning, and
computes what `Sam2.forward_image` does (the SAM 2 fixture model).

The warning ("Error merging shape info for output '/image_encoder/trunk/Concat_3_output_0'
source:{4} target:{5}") came from the Hiera trunk's position embedding: traced, `Tensor.tile`
becomes an If whose two branches output shape vectors of 5 and 4 entries.
`samkit.export.video_parts.VideoImageEncoder` now stores that embedding as a constant, as the
image export's encoder does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.export.sam import _export
from samkit.export.video_parts import VideoImageEncoder, example_inputs
from tests.video.conftest import CKPT, CONFIG

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model():
    from samkit import build_sam2

    return build_sam2(CONFIG, checkpoint=CKPT).eval()


def test_image_encoder_part_is_forward_image(model):
    image = example_inputs(model)["image"]
    with torch.no_grad():
        got = VideoImageEncoder(model)(image)
        out = model.forward_image(image)
    fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
    n = model.num_feature_levels
    want = (fpn[-1], pos[-1], *fpn[-n:-1])
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_image_encoder_loads_without_a_shape_warning(model, tmp_path, capfd):
    image = example_inputs(model)["image"]
    path = tmp_path / "image_encoder.onnx"
    names = ["image_embed", "image_pos", "high_res_feats_0", "high_res_feats_1"]
    with torch.no_grad():
        _export(VideoImageEncoder(model), (image,), path, ["image"], names, None, 17)
        want = VideoImageEncoder(model)(image)
    capfd.readouterr()
    ort.set_default_logger_severity(2)  # warnings and worse, as by default
    opts = ort.SessionOptions()
    opts.log_severity_level = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": image.numpy()})
    err = capfd.readouterr().err
    assert "merging shape info" not in err.lower(), err
    assert "warn" not in err.lower(), err
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4)
