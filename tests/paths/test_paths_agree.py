"""One call, every path: each alternative path answers as the fp32 torch predictor, or refuses.

The matrix crosses every path samkit offers for a predictor call with every kind of prompt, for
SAM 1 (`sam1_shapes`: trained, its masks follow the picture's shapes) and SAM 2 (`sam2_tiny`),
with `multimask_output` on and off. The reference is `SamPredictor` / `Sam2ImagePredictor` on the
fp32 eager model. Each cell expects one of:

* `exact`: the same computation (float rounding only). Predicted IoUs within 1e-5, low-res
  logits within 1e-4, and a mask pixel may differ only where the reference's full-resolution
  logit is within 1e-4 of the threshold.
* `bf16` / `int8`: reduced precision, within the documented tolerances (`TOLERANCES`; measured
  worst cases on these fixtures in the comments, also in the README's "Backends agree").
* `refuse`: a ValueError that names the call (`multimask_output`) and the reason.

Paths (`tests/paths/backends.py`): `bf16` (`build_sam(dtype=torch.bfloat16)`), `int8`
(`accel.optimize(int8=True)`), `compile` (`accel.optimize(compile=True)`), `embed_file` (a
`samkit embed` file loaded into a fresh predictor), `onnx` / `onnx_single` (the onnxruntime
predictors with a 4-mask or a `--return-single-mask` decoder), `batch` (several boxes one by one
against one batched call; any other prompt batched with a second prompt), `image_batch` (SAM 2's
`set_image_batch` + `predict_batch`), `engine` (the web app's `Engine`).

Not offered, so not in the matrix: the web API takes one box and no mask input per request
(`engine` x `boxes`, `mask_input`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from tests.paths import backends, prompts

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@dataclass(frozen=True)
class Tolerance:
    """How far a path may be from the fp32 reference.

    Attributes:
        iou_atol: predicted IoU, absolute.
        low_res_atol: low-res logits, absolute (logit units).
        flip_band: a mask pixel may differ only where |reference logit| < flip_band.
        min_mask_iou: every mask's IoU with the reference mask at least this.
    """

    iou_atol: float
    low_res_atol: float
    flip_band: float
    min_mask_iou: float


TOLERANCES = {
    # Measured (sam1_shapes / sam2_tiny): dIoU <= 1.5e-7, low-res <= 2.5e-5, flips at |logit|
    # <= 4.2e-6, mask IoU 1.0.
    "exact": Tolerance(iou_atol=1e-5, low_res_atol=1e-4, flip_band=1e-4, min_mask_iou=0.999),
    # Measured: dIoU <= 4.2e-3, low-res <= 0.35, flips at |logit| <= 0.19, mask IoU >= 0.94
    # (sam1_shapes box + points, a thin mask: 291 pixels of 307,200 differ).
    "bf16": Tolerance(iou_atol=0.01, low_res_atol=0.5, flip_band=0.25, min_mask_iou=0.9),
    # Measured: dIoU <= 7.9e-5, low-res <= 0.015, flips at |logit| <= 6.1e-3, mask IoU >= 0.98.
    "int8": Tolerance(iou_atol=1e-3, low_res_atol=0.05, flip_band=0.05, min_mask_iou=0.97),
}

PATHS = {
    "sam1": ["bf16", "int8", "compile", "embed_file", "onnx", "onnx_single", "batch", "engine"],
    "sam2": [
        "bf16",
        "int8",
        "compile",
        "embed_file",
        "onnx",
        "onnx_single",
        "batch",
        "image_batch",
        "engine",
    ],
}
NOT_OFFERED = {("engine", "boxes"), ("engine", "mask_input")}
# SAM 1 single-mask decoders (official rule) pick the best multimask output for <= 2 decoder
# points: one point (+ padding), a box alone (2 corners), each of several boxes.
SAM1_SINGLE_REFUSED = {"point", "box", "boxes", "mask_input"}


def expected(family: str, path: str, prompt: str, multimask: bool) -> str:
    """'exact', 'bf16', 'int8' or 'refuse' for one cell of the matrix."""
    if path == "onnx_single" and (
        multimask or (family == "sam1" and prompt in SAM1_SINGLE_REFUSED)
    ):
        return "refuse"
    return path if path in ("bf16", "int8") else "exact"


CELLS = [
    pytest.param(
        family,
        path,
        prompt,
        mm,
        expected(family, path, prompt, mm),
        id=f"{family}-{path}-{prompt}-{'multi' if mm else 'single'}-"
        f"{expected(family, path, prompt, mm)}",
    )
    for family, paths in PATHS.items()
    for path in paths
    for prompt in prompts.PROMPTS
    for mm in (True, False)
    if (path, prompt) not in NOT_OFFERED
]


def _mask_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    out = []
    for x, y in zip(a, b):
        union = np.logical_or(x, y).sum()
        out.append(1.0 if union == 0 else float(np.logical_and(x, y).sum() / union))
    return out


def check_agrees(out: backends.Out, ref: backends.Out, logits: np.ndarray, tol: Tolerance) -> None:
    """Assert `out` is within `tol` of the reference answer `ref` (full-res `logits`)."""
    assert out.masks.shape == ref.masks.shape, (out.masks.shape, ref.masks.shape)
    assert out.iou.shape == ref.iou.shape
    np.testing.assert_allclose(out.iou, ref.iou, atol=tol.iou_atol, rtol=0)
    if out.low_res is not None:
        np.testing.assert_allclose(out.low_res, ref.low_res, atol=tol.low_res_atol, rtol=0)
    differ = out.masks != ref.masks
    if differ.any():
        worst = float(np.abs(logits[differ]).max())
        assert worst < tol.flip_band, (
            f"{int(differ.sum())} mask pixels differ, one where the reference logit is {worst:.3g} "
            f"(allowed only within {tol.flip_band} of the threshold)"
        )
    assert min(_mask_ious(out.masks, ref.masks)) >= tol.min_mask_iou


@pytest.mark.parametrize(("family", "path", "prompt", "multimask", "expect"), CELLS)
def test_path_agrees_with_fp32(family, path, prompt, multimask, expect):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.compile / ONNX export chatter while building
        runner = backends.get_path(family, path)
    kw, ref, logits = backends.reference_answer(family, prompt, multimask)
    if expect == "refuse":
        with pytest.raises(ValueError, match=r"(?s)(?=.*multimask_output)(?=.*single.mask)"):
            runner.predict(kw, multimask)
        return
    check_agrees(runner.predict(kw, multimask), ref, logits, TOLERANCES[expect])


def test_tolerance_check_can_fail():
    """The comparison rejects a wrong answer: the single-mask output offered as the best
    multimask one (the reported ONNX bug), and one flipped confident pixel."""
    _, ref, logits = backends.reference_answer("sam1", "box", False)
    _, multi, _ = backends.reference_answer("sam1", "box", True)
    best = int(np.argmax(multi.iou))
    wrong = backends.Out(multi.masks[best : best + 1], multi.iou[best : best + 1], None)
    with pytest.raises(AssertionError):
        check_agrees(wrong, ref, logits, TOLERANCES["bf16"])
    flipped = ref.masks.copy()
    y, x = np.unravel_index(np.argmax(np.abs(logits[0])), logits.shape[-2:])
    flipped[0, y, x] = ~flipped[0, y, x]
    with pytest.raises(AssertionError, match="mask pixels differ"):
        check_agrees(backends.Out(flipped, ref.iou, None), ref, logits, TOLERANCES["exact"])
