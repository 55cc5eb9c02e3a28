"""Every path samkit offers for a predictor call, behind one interface.

`get_path(family, name)` builds a path once per test session (models, ONNX exports and encoded
images are cached here) and returns a `Path` whose `predict(kw, multimask)` answers the same call
as `SamPredictor.predict` / `Sam2ImagePredictor.predict(**kw, multimask_output=multimask)`.
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from samkit.export.ort_sam import OnnxSamPredictor
from samkit.export.ort_sam2 import OnnxSam2Predictor
from samkit.export.sam import export_sam_onnx
from samkit.export.sam2 import export_sam2_onnx
from samkit.io.embeddings import features_of, load_embedding, save_embedding
from samkit.io.provenance import of_model
from samkit.io.rle import coco_decode_rle
from samkit.runtime.accel import optimize
from samkit.server.engine import Engine
from tests.conftest import FIXTURES
from tests.families import FAMILIES
from tests.paths import prompts

# The matrix's model of each family (SAM 1: the trained sam1_shapes, whose masks follow the
# picture's shapes) as (fixture folder, checkpoint), and its ONNX exporter and predictor.
MODELS = {"sam1": ("sam1_shapes", "sam1_shapes.pth"), "sam2": ("sam2_tiny", "sam2_tiny.pt")}
ONNX = {
    "sam1": (export_sam_onnx, OnnxSamPredictor),
    "sam2": (export_sam2_onnx, OnnxSam2Predictor),
}


@dataclass
class Out:
    """One call's answer: masks bool (B)xCxHxW, IoU predictions (B)xC, low-res logits or None."""

    masks: np.ndarray
    iou: np.ndarray
    low_res: np.ndarray | None


@dataclass
class Path:
    family: str
    name: str
    predict: Callable[[dict[str, Any], bool], Out]


def _out(result: tuple[Any, Any, Any]) -> Out:
    masks, iou, low_res = result
    return Out(np.asarray(masks).astype(bool), np.asarray(iou), np.asarray(low_res))


@functools.cache
def _tmp() -> FsPath:
    # Lives as long as the test process (exports of the tiny models: a few MB).
    return FsPath(tempfile.mkdtemp(prefix="samkit_paths_"))


def build(family: str, **kw: Any) -> Any:
    """A fresh fixture model of `family` (build_sam / build_sam2 keyword arguments)."""
    folder, checkpoint = MODELS[family]
    d = FIXTURES / folder
    return FAMILIES[family].build(d / "config.json", checkpoint=d / checkpoint, **kw)


def predictor_for(family: str, model: Any, image: np.ndarray | None = None) -> Any:
    p = FAMILIES[family].predictor(model)
    if image is not None:
        p.set_image(image)
    return p


@functools.cache
def reference(family: str) -> Any:
    """The fp32 eager predictor with the matrix image set: every path is compared with it."""
    return predictor_for(family, build(family), prompts.image())


def _torch_path(family: str, name: str, make_model: Callable[[], Any]) -> Path:
    p = predictor_for(family, make_model(), prompts.image())
    return Path(family, name, lambda kw, mm: _out(p.predict(**kw, multimask_output=mm)))


def _embed_file(family: str) -> Path:
    """`samkit embed`'s file: the reference's features saved, loaded and given to a fresh
    predictor (no encoder run)."""
    ref = reference(family)
    size = ref.model.image_size
    path = save_embedding(
        _tmp() / f"{family}.safetensors",
        features_of(ref, family),
        variant=MODELS[family][0],
        family=family,
        original_size=prompts.image().shape[:2],
        input_size=getattr(ref, "input_size", None) or (size, size),
        img_size=size,
        provenance=of_model(ref.model),
    )
    p = predictor_for(family, ref.model)
    load_embedding(path).apply(p)
    return Path(family, "embed_file", lambda kw, mm: _out(p.predict(**kw, multimask_output=mm)))


@functools.cache
def _onnx_files(family: str, single: bool) -> dict[str, FsPath]:
    """encoder.onnx (exported once per family) and a 4-mask or single-mask decoder.onnx."""
    out = _tmp() / f"onnx_{family}_{'single' if single else 'all'}"
    model = reference(family).model
    export = ONNX[family][0]
    if single:
        files = export(model, out, return_single_mask=True, encoder=False)
        return {"encoder": _onnx_files(family, False)["encoder"], **files}
    return export(model, out)


def _onnx(family: str, single: bool) -> Path:
    files = _onnx_files(family, single)
    p = ONNX[family][1](files["encoder"], files["decoder"])
    p.set_image(prompts.image())
    name = "onnx_single" if single else "onnx"
    return Path(family, name, lambda kw, mm: _out(p.predict(**kw, multimask_output=mm)))


def _batch(family: str) -> Path:
    """Several boxes one at a time (stacked) against the reference's one batched call; any other
    prompt batched with a different prompt (B = 2), keeping the first answer."""
    ref = reference(family)

    def predict(kw: dict[str, Any], mm: bool) -> Out:
        if "box" in kw and np.ndim(kw["box"]) == 2:
            outs = [_out(ref.predict(box=b, multimask_output=mm)) for b in kw["box"]]
            return Out(*(np.stack(parts) for parts in zip(*(vars(o).values() for o in outs))))
        both = _out(ref.predict(**prompts.stack(kw, prompts.companion(kw)), multimask_output=mm))
        return Out(both.masks[0], both.iou[0], both.low_res[0])

    return Path(family, "batch", predict)


def _image_batch() -> Path:
    """SAM 2's set_image_batch + predict_batch with the matrix image and another one."""
    p = predictor_for("sam2", reference("sam2").model)
    p.set_image_batch([prompts.image(), prompts.other_image()])
    keys = {
        "point_coords": "point_coords_batch",
        "point_labels": "point_labels_batch",
        "box": "box_batch",
        "mask_input": "mask_input_batch",
    }

    def predict(kw: dict[str, Any], mm: bool) -> Out:
        other = prompts.companion(kw)
        args = {keys[k]: [kw[k], other[k]] for k in kw}
        masks, iou, low_res = p.predict_batch(**args, multimask_output=mm)
        return _out((masks[0], iou[0], low_res[0]))

    return Path("sam2", "image_batch", predict)


def _engine(family: str) -> Path:
    """The web app's engine: the uploaded PNG's bytes, then one prompt per call (points and at
    most one box, no mask input: the web API has no such inputs)."""
    engine = Engine(reference(family).model, cache_bytes=256 * 2**20, family=family)
    buf = io.BytesIO()
    Image.fromarray(prompts.image()).save(buf, format="PNG")
    _, fut = engine.submit_image(buf.getvalue())
    entry, _ = fut.result()

    def predict(kw: dict[str, Any], mm: bool) -> Out:
        if "mask_input" in kw or np.ndim(kw.get("box")) == 2:
            raise NotImplementedError("the web API has no mask input and one box per request")
        points = [tuple(p) for p in kw.get("point_coords", [])]
        labels = [int(v) for v in kw.get("point_labels", [])]
        box = tuple(kw["box"]) if "box" in kw else None
        res = engine.predict(entry, points, labels, box, mm)
        masks = np.stack([coco_decode_rle(r["segmentation"]) for r in res["masks"]])
        return Out(masks, np.array([r["score"] for r in res["masks"]]), None)

    return Path(family, "engine", predict)


def _int8(family: str) -> Any:
    return optimize(build(family), int8=True)


def _compiled(family: str) -> Any:
    return optimize(build(family), compile=True)


BUILDERS: dict[str, Callable[[str], Path]] = {
    "bf16": lambda f: _torch_path(f, "bf16", lambda: build(f, dtype=torch.bfloat16)),
    "int8": lambda f: _torch_path(f, "int8", lambda: _int8(f)),
    "compile": lambda f: _torch_path(f, "compile", lambda: _compiled(f)),
    "embed_file": _embed_file,
    "onnx": lambda f: _onnx(f, single=False),
    "onnx_single": lambda f: _onnx(f, single=True),
    "batch": _batch,
    "image_batch": lambda f: _image_batch(),
    "engine": _engine,
}


@functools.cache
def get_path(family: str, name: str) -> Path:
    return BUILDERS[name](family)


@functools.cache
def reference_answer(family: str, prompt: str, multimask: bool) -> tuple[dict[str, Any], Out, Any]:
    """(call kwargs, the reference's answer, its full-resolution logits) for one matrix cell."""
    ref = reference(family)
    kw = prompts.PROMPTS[prompt](ref)
    logits, iou, low_res = ref.predict(**kw, multimask_output=multimask, return_logits=True)
    logits = np.asarray(logits)
    return kw, Out(logits > 0, np.asarray(iou), np.asarray(low_res)), logits
