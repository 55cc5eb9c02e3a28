"""ONNX export (encoder + official-interface decoder) and the onnxruntime predictor backend."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from samkit import SamPredictor, build_sam  # noqa: E402
from samkit.cli import main  # noqa: E402
from samkit.export.ort_sam import OnnxSamPredictor  # noqa: E402
from samkit.export.sam import (  # noqa: E402
    SamOnnxDecoder,
    decoder_example_inputs,
    export_decoder,
    export_sam_onnx,
)
from samkit.runtime.accel import is_plain_float32, optimize  # noqa: E402
from tests.conftest import FIXTURES, ROOT, load_rgb  # noqa: E402
from tests.fixture_cases import (  # noqa: E402
    SAM1_MODELS,
    check_sam1_case,
    fixture_image,
    predict_sam1_case,
    sam1_case,
    sam1_case_ids,
)

OFFICIAL_INPUTS = [
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
OFFICIAL_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, sam1_tiny):
    """sam1_tiny through the Python API (4 masks + a single-mask decoder), sam1_shapes via the CLI."""

    root = tmp_path_factory.mktemp("onnx")
    export_sam_onnx(sam1_tiny, root / "sam1_tiny")
    export_decoder(sam1_tiny, root / "sam1_tiny_single" / "decoder.onnx", return_single_mask=True)
    d = FIXTURES / "sam1_shapes"
    rc = main(
        [
            "export",
            "onnx",
            "--model",
            str(d / "config.json"),
            "--checkpoint",
            str(d / "sam1_shapes.pth"),
            "--out",
            str(root / "sam1_shapes"),
            "--quiet",
        ]
    )
    assert rc == 0
    return root


@pytest.fixture(scope="module")
def ort_predictors(onnx_dir):
    return {
        m: OnnxSamPredictor(onnx_dir / m / "encoder.onnx", onnx_dir / m / "decoder.onnx")
        for m in SAM1_MODELS
    }


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_interface_names_and_dynamic_points(onnx_dir):
    dec = _session(onnx_dir / "sam1_tiny" / "decoder.onnx")
    assert [i.name for i in dec.get_inputs()] == OFFICIAL_INPUTS
    assert [o.name for o in dec.get_outputs()] == OFFICIAL_OUTPUTS
    shapes = {i.name: i.shape for i in dec.get_inputs()}
    assert shapes["image_embeddings"] == [1, 256, 64, 64]
    assert isinstance(shapes["point_coords"][1], str)  # dynamic number of points
    assert shapes["mask_input"][1:] == [1, 256, 256] and shapes["orig_im_size"] == [2]
    enc = _session(onnx_dir / "sam1_tiny" / "encoder.onnx")
    assert [(i.name, i.shape) for i in enc.get_inputs()] == [("image", [1, 3, 1024, 1024])]
    assert [o.name for o in enc.get_outputs()] == ["image_embeddings"]


@pytest.mark.parametrize("single", [False, True])
def test_decoder_matches_torch_for_1_to_n_points(onnx_dir, sam1_tiny, single):
    folder = "sam1_tiny_single" if single else "sam1_tiny"
    sess = _session(onnx_dir / folder / "decoder.onnx")
    module = SamOnnxDecoder(sam1_tiny, return_single_mask=single)
    for n in (1, 2, 3, 6):
        inputs = decoder_example_inputs(sam1_tiny, n)
        inputs["has_mask_input"] = torch.tensor([float(n % 2)])
        out = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
        ref = module(*inputs.values())
        assert out[0].shape == (1, 1 if single else 4, 1500, 2250)
        np.testing.assert_allclose(out[1], ref[1].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[2], ref[2].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[0][..., ::4, ::4], ref[0][..., ::4, ::4], atol=5e-5, rtol=0)


def test_single_mask_selection_rule(onnx_dir, sam1_tiny):
    """Official rule: > 2 points (padding / corners included) -> token 0, else best multimask."""
    full = _session(onnx_dir / "sam1_tiny" / "decoder.onnx")
    single = _session(onnx_dir / "sam1_tiny_single" / "decoder.onnx")
    for n in (1, 2, 3, 4):
        feeds = {k: v.numpy() for k, v in decoder_example_inputs(sam1_tiny, n).items()}
        _, iou4, low4 = full.run(None, feeds)
        _, iou1, low1 = single.run(None, feeds)
        idx = 0 if n > 2 else 1 + int(np.argmax(iou4[0, 1:]))
        np.testing.assert_allclose(iou1[0, 0], iou4[0, idx], atol=1e-6)
        np.testing.assert_allclose(low1[0, 0], low4[0, idx], atol=1e-5)


def test_decoder_batch_of_prompts_matches_singles(onnx_dir, sam1_tiny):
    sess = _session(onnx_dir / "sam1_tiny" / "decoder.onnx")
    feeds = {k: v.numpy() for k, v in decoder_example_inputs(sam1_tiny, 3).items()}
    singles = []
    for shift in (0.0, 100.0, 300.0):
        f = dict(feeds, point_coords=feeds["point_coords"] + shift)
        singles.append(sess.run(None, f))
    batch = dict(feeds)
    batch["point_coords"] = np.concatenate([feeds["point_coords"] + s for s in (0, 100, 300)])
    batch["point_labels"] = np.repeat(feeds["point_labels"], 3, 0)
    out = sess.run(None, batch)
    for i, ref in enumerate(singles):
        np.testing.assert_allclose(out[1][i], ref[1][0], atol=1e-6)
        np.testing.assert_allclose(out[2][i], ref[2][0], atol=1e-5)


def test_encoder_matches_fixture_features(ort_predictors):
    p = ort_predictors["sam1_tiny"]
    p.set_image(load_rgb("truck.jpg"))
    ref = np.load(FIXTURES / "sam1_tiny" / "image_truck.npz")
    assert p.input_size == tuple(ref["input_size"])
    assert p.original_size == tuple(ref["original_size"])
    feats = p.get_image_embedding()[0]
    stored = ref["features"].astype(np.float32)[0]
    assert np.allclose(feats, stored, rtol=2e-3, atol=1e-4)
    flat = feats.astype(np.float64).reshape(256, -1)
    np.testing.assert_allclose(flat.mean(1), ref["features_chan_mean"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("model_dir", "case"), sam1_case_ids())
def test_ort_predictor_fixture_case(ort_predictors, model_dir, case):
    c, z = sam1_case(model_dir, case)
    p = ort_predictors[model_dir]
    if getattr(p, "_test_image", None) != c["image"]:
        p.set_image(fixture_image(model_dir, c["image"]))
        p._test_image = c["image"]
    check_sam1_case(model_dir, z, *predict_sam1_case(p, c, z))


def test_mask_only_prompt_matches_torch_predictor(ort_predictors, sam1_shapes):
    image = fixture_image("sam1_shapes", "shapes_1.png")
    p = ort_predictors["sam1_shapes"]
    p.set_image(image)
    p._test_image = None
    tp = SamPredictor(sam1_shapes)
    tp.set_image(image)
    _, _, low = tp.predict(np.array([[163.0, 346.0]]), np.array([1]), multimask_output=False)
    ref = tp.predict(mask_input=low, multimask_output=False)
    out = p.predict(mask_input=low, multimask_output=False)
    np.testing.assert_allclose(out[2], ref[2], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out[1], ref[1], atol=1e-5)


def test_single_mask_decoder_in_predictor(onnx_dir, ort_predictors):
    p = OnnxSamPredictor(None, onnx_dir / "sam1_tiny_single" / "decoder.onnx")
    full = ort_predictors["sam1_tiny"]
    full.set_image(load_rgb("truck.jpg"))
    full._test_image = "truck.jpg"
    p.set_embedding(full.get_image_embedding(), full.original_size)
    pts, lbl = np.array([[500.0, 375.0], [1125.5, 625.25]]), np.array([1, 0])
    masks, iou, _ = p.predict(pts, lbl, multimask_output=False)  # 3 points incl. padding: token 0
    ref_masks, ref_iou, _ = full.predict(pts, lbl, multimask_output=False)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-6)
    assert (masks == ref_masks).all()
    with pytest.raises(ValueError, match="return-single-mask"):
        p.predict(pts, lbl)
    with pytest.raises(ValueError, match="set_embedding"):
        p.set_image(load_rgb("truck.jpg"))


def test_bad_inputs(ort_predictors, onnx_dir):
    p = ort_predictors["sam1_tiny"]
    with pytest.raises(ValueError, match="no image"):
        OnnxSamPredictor(None, onnx_dir / "sam1_tiny" / "decoder.onnx").predict(
            np.array([[1.0, 2.0]]), np.array([1])
        )
    p.set_embedding(np.zeros((1, 256, 64, 64), np.float32), (100, 200))
    p._test_image = None
    with pytest.raises(ValueError, match="point_labels must be in"):
        p.predict(np.array([[1.0, 2.0]]), np.array([5]))
    with pytest.raises(ValueError, match="NaN"):
        p.predict(np.array([[np.nan, 2.0]]), np.array([1]))
    with pytest.raises(ValueError, match="one label per point"):
        p.predict(np.array([[1.0, 2.0]]), np.array([1, 0]))
    with pytest.raises(ValueError, match="no prompt"):
        p.predict()
    with pytest.raises(ValueError, match="x1 >= x0"):
        p.predict(box=np.array([10, 10, 5, 20]))
    with pytest.raises(ValueError, match="mask_input must have shape"):
        p.predict(mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="embedding must have shape"):
        p.set_embedding(np.zeros((1, 256, 16, 16)), (10, 10))
    with pytest.raises(ValueError, match=r"float image must hold values in \[0, 1\]"):
        OnnxSamPredictor(
            onnx_dir / "sam1_tiny" / "encoder.onnx", onnx_dir / "sam1_tiny" / "decoder.onnx"
        ).set_image(np.full((10, 10, 3), 2.0, np.float32))
    with pytest.raises(FileNotFoundError):
        OnnxSamPredictor(None, onnx_dir / "missing.onnx")
    with pytest.raises(ValueError, match="decoder inputs"):
        OnnxSamPredictor(None, onnx_dir / "sam1_tiny" / "encoder.onnx")


def test_export_rejects_bad_opset(sam1_tiny, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_decoder(sam1_tiny, tmp_path / "d.onnx", opset=9)


def test_predictor_runs_without_torch(onnx_dir):
    """The whole onnxruntime path (preprocess, encoder, decoder, postprocess) never imports torch."""
    d = onnx_dir / "sam1_tiny"
    z = np.load(FIXTURES / "sam1_tiny" / "case_truck_2pts.npz")
    code = f"""
import sys, json
import numpy as np
from PIL import Image
from samkit.export.ort_sam import OnnxSamPredictor
p = OnnxSamPredictor({str(d / "encoder.onnx")!r}, {str(d / "decoder.onnx")!r})
p.set_image(np.array(Image.open({str(ROOT.parent / "shared" / "images" / "truck.jpg")!r}).convert("RGB")))
m, iou, low = p.predict(np.array({z["point_coords"].tolist()}), np.array([1, 0]), multimask_output=False)
print(json.dumps({{"torch": "torch" in sys.modules, "iou": iou.tolist()}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["torch"] is False
    np.testing.assert_allclose(res["iou"], z["iou_predictions"], atol=1e-5)


def test_low_precision_models_export_float32_graphs(tmp_path, sam1_tiny):
    """`build_sam(dtype=bf16)` / `optimize` hooks are left out: the file equals the fp32 export."""

    d = FIXTURES / "sam1_tiny"
    fast = build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth", dtype=torch.bfloat16)
    assert not is_plain_float32(fast)
    export_decoder(fast, tmp_path / "fast.onnx")
    export_decoder(sam1_tiny, tmp_path / "exact.onnx")
    assert not is_plain_float32(fast)  # the exporter copied, the model is unchanged
    inputs = {k: v.numpy() for k, v in decoder_example_inputs(sam1_tiny).items()}
    a = _session(tmp_path / "fast.onnx").run(None, inputs)
    b = _session(tmp_path / "exact.onnx").run(None, inputs)
    for x, y in zip(a, b):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)  # the decoder kept fp32 weights
    with pytest.raises(ValueError, match="int8"):
        export_decoder(optimize(build_sam(d / "config.json"), int8=True), tmp_path / "q.onnx")


@pytest.mark.parametrize("num_masks", [1, 3], ids=["shared-mask-input", "mask-per-prompt"])
def test_decoder_batches_prompts_each_with_its_own_mask_input(onnx_dir, sam1_tiny, num_masks):
    """B prompts in one call give each prompt's single-prompt answer (the trace is not batch-1)."""
    sess = _session(onnx_dir / "sam1_tiny" / "decoder.onnx")
    inputs = decoder_example_inputs(
        sam1_tiny, num_points=3, num_prompts=3, num_mask_inputs=num_masks
    )
    inputs["point_labels"] = torch.tensor([[1.0, 0.0, -1.0], [1.0, 1.0, -1.0], [2.0, 3.0, 1.0]])
    inputs["mask_input"] = inputs["mask_input"] * 5
    out = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
    decoder = SamOnnxDecoder(sam1_tiny)
    for i in range(3):
        one = dict(inputs)
        for k in ("point_coords", "point_labels"):
            one[k] = inputs[k][i : i + 1]
        one["mask_input"] = (
            inputs["mask_input"][i : i + 1] if num_masks > 1 else inputs["mask_input"]
        )
        with torch.no_grad():
            ref = decoder(*one.values())
        np.testing.assert_allclose(out[2][i], ref[2][0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[1][i], ref[1][0].numpy(), atol=1e-5, rtol=0)
