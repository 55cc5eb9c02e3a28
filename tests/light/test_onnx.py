"""ONNX export of MobileSAM (SAM 1's files), HQ-SAM (`samkit.export.sam_hq`) and EfficientTAM
(`samkit.export.efficienttam`: SAM 2's files without high-res features), served by onnxruntime
(`OnnxSamPredictor`, `OnnxSamHQPredictor`, `OnnxEfficientTamPredictor`) with the torch
predictors' numbers.

The fixtures' tiny official-format checkpoints are exported once per module (MobileSAM and
EfficientTAM through `samkit export onnx`, HQ-SAM vit_b through the registry's exporter);
measured: low-res logits within 2e-6 of torch, full-size logits within 3e-5, IoUs within 1e-7.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from samkit.build.efficienttam import build_efficienttam
from samkit.build.light import build_mobile_sam, build_sam_hq
from samkit.build.registry import get_family
from samkit.cli import main
from samkit.export.efficienttam import export_efficienttam_onnx
from samkit.export.ort_efficienttam import OnnxEfficientTamPredictor
from samkit.export.ort_sam import OnnxSamPredictor
from samkit.export.ort_sam2 import OnnxSam2Predictor
from samkit.export.ort_sam_hq import OnnxSamHQPredictor
from samkit.export.sam import export_sam_onnx
from samkit.export.sam_hq import export_sam_hq_onnx
from samkit.io.embeddings import load_embedding, save_embedding
from samkit.io.provenance import of_model
from samkit.predict.sam import SamPredictor
from samkit.predict.sam2 import Sam2ImagePredictor
from samkit.predict.sam_hq import SamHQPredictor
from tests.conftest import IMAGES, load_rgb

HERE = Path(__file__).resolve().parents[1] / "fixtures"
MOBILE = HERE / "mobile_sam" / "mobile_sam_tiny.pt"
HQ_B = HERE / "sam_hq" / "vit_b" / "sam_hq_vit_b_tiny.pth"
ET_CONFIG = HERE / "efficienttam" / "config.json"
ET_CKPT = HERE / "efficienttam" / "efficienttam_tiny.pt"
POINT = (np.array([[500.0, 375.0], [300.0, 420.0]]), np.array([1, 0]))
BOXES = np.array([[10.0, 20.0, 300.0, 400.0], [50.0, 60.0, 500.0, 300.0]])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("light_onnx")
    torch.set_num_threads(1)
    rc = main(["export", "onnx", "--checkpoint", str(MOBILE), "--out", str(root / "mobile")])
    assert rc == 0
    export = get_family("sam_hq").load("exporter")
    assert export is export_sam_hq_onnx
    export(build_sam_hq(checkpoint=HQ_B), root / "hq")
    et = ["--model", str(ET_CONFIG), "--checkpoint", str(ET_CKPT)]
    assert main(["export", "onnx", *et, "--out", str(root / "et")]) == 0
    return {"mobile": root / "mobile", "hq": root / "hq", "et": root / "et"}


@pytest.fixture(scope="module")
def truck() -> np.ndarray:
    return load_rgb(IMAGES / "truck.jpg")


def _ort(cls: type, folder: Path) -> OnnxSamPredictor:
    one_thread = {"threads" if issubclass(cls, OnnxSam2Predictor) else "intra_op_num_threads": 1}
    return cls(folder / "encoder.onnx", folder / "decoder.onnx", **one_thread)


def _close(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    """(logits, iou, low-res) of onnxruntime vs torch."""
    assert a[0].shape == b[0].shape and a[1].shape == b[1].shape
    np.testing.assert_allclose(a[2], b[2], rtol=0, atol=1e-4)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=5e-4)


def test_mobile_sam_onnx_matches_torch(exported: dict[str, Path], truck: np.ndarray) -> None:
    assert get_family("mobile_sam").load("onnx_predictor") is OnnxSamPredictor
    ort = _ort(OnnxSamPredictor, exported["mobile"])
    assert ort.family == "mobile_sam"
    ort.set_image(truck)
    torch_p = SamPredictor(build_mobile_sam(checkpoint=MOBILE))
    torch_p.set_image(truck)
    np.testing.assert_allclose(ort.features, torch_p.features.numpy(), rtol=0, atol=1e-4)
    for mm in (True, False):
        got = ort.predict(*POINT, multimask_output=mm, return_logits=True)
        want = torch_p.predict(*POINT, multimask_output=mm, return_logits=True)
        _close(got, want)
    got_b = ort.predict(box=BOXES, multimask_output=False)
    want_b = torch_p.predict_torch(
        None,
        None,
        boxes=torch_p.transform.apply_boxes_torch(torch.from_numpy(BOXES), torch_p.original_size),
        multimask_output=False,
    )
    assert got_b[0].shape == tuple(want_b[0].shape) == (2, 1, *truck.shape[:2])
    assert (got_b[0] != want_b[0].numpy()).mean() < 1e-4


@pytest.mark.parametrize("mm", [True, False])
@pytest.mark.parametrize("hq_only", [True, False])
def test_hq_onnx_matches_torch_for_every_output(
    exported: dict[str, Path], truck: np.ndarray, mm: bool, hq_only: bool, hq_pair: tuple
) -> None:
    ort, torch_p = hq_pair
    got = ort.predict(*POINT, multimask_output=mm, return_logits=True, hq_token_only=hq_only)
    want = torch_p.predict(*POINT, multimask_output=mm, return_logits=True, hq_token_only=hq_only)
    assert got[0].shape == (1, *truck.shape[:2])
    _close(got, want)


@pytest.fixture(scope="module")
def hq_pair(exported: dict[str, Path], truck: np.ndarray) -> tuple:
    ort = _ort(OnnxSamHQPredictor, exported["hq"])
    ort.set_image(truck)
    torch_p = SamHQPredictor(build_sam_hq(checkpoint=HQ_B))
    torch_p.set_image(truck)
    return ort, torch_p


def test_hq_onnx_boxes_and_features(
    exported: dict[str, Path], hq_pair: tuple, truck: np.ndarray, tmp_path: Path
) -> None:
    ort, torch_p = hq_pair
    assert ort.family == "sam_hq"
    feats = {k: v.numpy() for k, v in torch_p.get_image_features().items()}
    for key, value in ort.get_image_features().items():
        np.testing.assert_allclose(value, feats[key], rtol=0, atol=1e-4)
    got = ort.predict(box=BOXES, multimask_output=False, hq_token_only=True)
    assert got[0].shape == (2, 1, *truck.shape[:2]) and got[1].shape == (2, 1)
    # an embedding file of the torch predictor serves the onnxruntime one (and the reverse)
    path = save_embedding(
        tmp_path / "truck.safetensors",
        torch_p.get_image_features(),
        variant="sam_hq_vit_b_tiny",
        family="sam_hq",
        original_size=torch_p.original_size,
        input_size=torch_p.input_size,
        img_size=torch_p.model.image_size,
        provenance=of_model(torch_p.model),
    )
    fresh = _ort(OnnxSamHQPredictor, exported["hq"])
    load_embedding(path).apply(fresh)
    again = fresh.predict(box=BOXES, multimask_output=False, hq_token_only=True)
    np.testing.assert_allclose(again[2], got[2], rtol=0, atol=1e-4)
    back = SamHQPredictor(torch_p.model)
    back.set_image_features(
        {k: torch.from_numpy(v) for k, v in fresh.get_image_features().items()},
        fresh.original_size,
    )
    want = torch_p.predict(*POINT, return_logits=True)
    np.testing.assert_allclose(back.predict(*POINT, return_logits=True)[2], want[2], atol=1e-4)


def test_efficienttam_onnx_matches_torch(exported: dict[str, Path], truck: np.ndarray) -> None:
    assert get_family("efficienttam").load("onnx_predictor") is OnnxEfficientTamPredictor
    ort = _ort(OnnxEfficientTamPredictor, exported["et"])
    assert ort.family == "efficienttam"
    ort.set_image(truck)
    torch_p = Sam2ImagePredictor(build_efficienttam(ET_CONFIG, checkpoint=ET_CKPT))
    torch_p.set_image(truck)
    feats = torch_p.get_image_features()
    assert sorted(ort.get_image_features()) == sorted(feats) == ["image_embedding"]
    np.testing.assert_allclose(
        ort.get_image_features()["image_embedding"], feats["image_embedding"].numpy(), atol=1e-4
    )
    for mm in (True, False):
        got = ort.predict(*POINT, multimask_output=mm, return_logits=True)
        want = torch_p.predict(*POINT, multimask_output=mm, return_logits=True)
        _close(got, want)
    got_b = ort.predict(box=BOXES, multimask_output=False)
    want_b = torch_p.predict(box=BOXES, multimask_output=False)
    assert got_b[0].shape == want_b[0].shape == (2, 1, *truck.shape[:2])
    assert (got_b[0] != want_b[0]).mean() < 1e-4
    fresh = OnnxEfficientTamPredictor(None, exported["et"] / "decoder.onnx")
    fresh.set_image_features(feats, truck.shape[:2])  # a torch embedding file's tensors
    np.testing.assert_allclose(fresh.predict(*POINT)[2], ort.predict(*POINT)[2], atol=1e-4)
    with pytest.raises(ValueError, match="use OnnxEfficientTamPredictor"):
        _ort(OnnxSam2Predictor, exported["et"])
    with pytest.raises(ValueError, match="expects an EfficientTAM model"):
        export_efficienttam_onnx(build_mobile_sam(checkpoint=MOBILE), exported["et"] / "x")


def test_light_onnx_refusals(exported: dict[str, Path], hq_pair: tuple, tmp_path: Path) -> None:
    hq_model = hq_pair[1].model
    with pytest.raises(ValueError, match="export_sam_hq_onnx"):
        export_sam_onnx(hq_model, tmp_path / "x")  # SAM 1's files would drop the HQ token
    with pytest.raises(ValueError, match="without --return-single-mask"):
        export_sam_hq_onnx(hq_model, tmp_path / "y", return_single_mask=True)
    with pytest.raises(ValueError, match="export_sam_onnx"):
        export_sam_hq_onnx(build_mobile_sam(checkpoint=MOBILE), tmp_path / "z")
    with pytest.raises(ValueError, match="use OnnxSamHQPredictor"):
        _ort(OnnxSamPredictor, exported["hq"])
    with pytest.raises(ValueError, match="use OnnxSamPredictor"):
        _ort(OnnxSamHQPredictor, exported["mobile"])
    ort = OnnxSamHQPredictor(None, exported["hq"] / "decoder.onnx")
    with pytest.raises(ValueError, match="early feature"):
        ort.set_embedding(np.zeros((1, 32, 64, 64), np.float32), (64, 64))
    with pytest.raises(ValueError, match="interm_embedding"):
        ort.set_image_features({"image_embedding": np.zeros((1, 32, 64, 64))}, (64, 64))
    with pytest.raises(ValueError, match="interm_embeddings must have shape"):
        ort.set_image_features(
            {
                "image_embedding": np.zeros((1, 32, 64, 64)),
                "interm_embedding": np.zeros((1, 8, 64, 64)),
            },
            (64, 64),
        )


def test_light_onnx_predictors_run_without_torch(exported: dict[str, Path]) -> None:
    """The HQ-SAM and EfficientTAM onnxruntime paths (set_image, predict) import no torch."""
    code = f"""
import json, sys
import numpy as np
from samkit.export.ort_efficienttam import OnnxEfficientTamPredictor
from samkit.export.ort_sam_hq import OnnxSamHQPredictor
image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
out = []
for cls, d in ((OnnxSamHQPredictor, {str(exported["hq"])!r}), (OnnxEfficientTamPredictor, {str(exported["et"])!r})):
    p = cls(d + "/encoder.onnx", d + "/decoder.onnx")
    p.set_image(image)
    out.append(p.predict(np.array([[30.0, 20.0]]), np.array([1]))[0].shape)
print(json.dumps({{"torch": "torch" in sys.modules, "shapes": out}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert res == {"torch": False, "shapes": [[1, 60, 80], [3, 60, 80]]}
