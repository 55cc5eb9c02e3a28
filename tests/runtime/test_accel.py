"""Fast paths (bf16 encoder, int8 encoder Linear layers, torch.compile) keep the fixtures' masks."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from samkit import Sam2ImagePredictor, SamPredictor, build_sam, build_sam2
from samkit.runtime.accel import autocast_decoder, encoder_to_dtype, optimize, quantize_encoder_int8
from samkit.runtime.precision import decoder_autocast_dtype, encoder_cast_dtype
from tests.conftest import FIXTURES, load_rgb, manifest

MODELS = ["sam1_tiny", "sam1_shapes"]


def _build(model_dir: str, dtype: torch.dtype | None = None):
    d = FIXTURES / model_dir
    return build_sam(d / "config.json", checkpoint=d / f"{model_dir}.pth", dtype=dtype)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _run_cases(predictor: SamPredictor, model_dir: str):
    """(case name, masks, iou predictions, reference masks, reference iou) for every case."""
    current = None
    for c in manifest(model_dir)["cases"]:
        z = np.load(FIXTURES / model_dir / c["file"])
        if current != c["image"]:
            local = FIXTURES / model_dir / c["image"]
            predictor.set_image(load_rgb(str(local) if local.exists() else c["image"]))
            current = c["image"]
        multimask = bool(z["multimask_output"])
        if c["call"] == "predict_torch":
            masks, iou, _ = predictor.predict(box=z["boxes"], multimask_output=multimask)
            ref = z["masks"]
        else:
            kw = {
                k: z[k]
                for k in ("point_coords", "point_labels", "box", "mask_input")
                if k in z.files
            }
            logits, iou, _ = predictor.predict(**kw, multimask_output=multimask, return_logits=True)
            if "logits_stride4" in z.files:
                masks, ref = logits[..., ::4, ::4] > 0, z["logits_stride4"] > 0
            else:
                masks, ref = logits > 0, z["masks"]
        yield c["name"], masks, iou, ref, z["iou_predictions"]


def _check_keeps_masks(model, model_dir: str) -> None:
    for name, masks, iou, ref, ref_iou in _run_cases(SamPredictor(model), model_dir):
        assert masks.shape == ref.shape, name
        flat, ref_flat = masks.reshape(-1, *masks.shape[-2:]), ref.reshape(-1, *ref.shape[-2:])
        worst = min(_iou(a, b) for a, b in zip(flat, ref_flat))
        assert worst >= 0.97, f"{model_dir}/{name}: mask IoU {worst:.4f} < 0.97"
        np.testing.assert_allclose(iou, ref_iou, atol=0.02, rtol=0, err_msg=name)


@pytest.mark.parametrize("model_dir", MODELS)
def test_bf16_encoder_keeps_masks(model_dir):
    model = optimize(_build(model_dir), dtype=torch.bfloat16)
    assert model.image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32
    _check_keeps_masks(model, model_dir)


@pytest.mark.parametrize("model_dir", MODELS)
def test_build_sam_bf16_keeps_masks(model_dir):
    model = _build(model_dir, dtype=torch.bfloat16)
    assert model.image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert decoder_autocast_dtype(model.mask_decoder) == torch.bfloat16
    _check_keeps_masks(model, model_dir)


def test_build_sam2_bf16_keeps_masks():
    d = FIXTURES / "sam2_tiny"
    ref_model = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt")
    model = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt", dtype=torch.bfloat16)
    assert next(model.image_encoder.parameters()).dtype == torch.bfloat16
    predictors: dict = {}
    for c in manifest("sam2_tiny")["cases"]:
        if c["call"] != "predict" or c["mask_input_from"] is not None:
            continue
        z = np.load(d / c["file"])
        if c["image"] not in predictors:
            predictors[c["image"]] = []
            for m in (model, ref_model):
                predictors[c["image"]].append(Sam2ImagePredictor(m))
                predictors[c["image"]][-1].set_image(load_rgb(c["image"]))
        kw = {k: z[k] for k in ("point_coords", "point_labels", "box") if k in z.files}
        kw.update(
            multimask_output=bool(z["multimask_output"]), normalize_coords=c["normalize_coords"]
        )
        fast, exact = (p.predict(**kw, return_logits=True) for p in predictors[c["image"]])
        for a, b in zip(fast[0] > 0, exact[0] > 0):
            assert _iou(a, b) >= 0.97, c["name"]
        np.testing.assert_allclose(fast[1], z["iou_predictions"], atol=0.02, rtol=0)


@pytest.mark.parametrize("model_dir", MODELS)
def test_bf16_encoder_and_autocast_decoder_keep_masks(model_dir):
    model = optimize(_build(model_dir), dtype=torch.bfloat16, decoder_autocast=torch.bfloat16)
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32  # weights stay fp32
    _check_keeps_masks(model, model_dir)
    optimize(model, decoder_autocast=torch.bfloat16)  # re-applying does not nest
    assert len(model.mask_decoder._forward_pre_hooks) == len(model.mask_decoder._forward_hooks) == 1
    autocast_decoder(model, None)
    assert decoder_autocast_dtype(model.mask_decoder) is None
    assert not model.mask_decoder._forward_pre_hooks and not model.mask_decoder._forward_hooks


@pytest.mark.parametrize("model_dir", MODELS)
def test_int8_encoder_keeps_masks(model_dir):
    model = optimize(_build(model_dir), int8=True)
    linears = [m for m in model.image_encoder.modules() if type(m) is torch.nn.Linear]
    assert not linears  # every encoder Linear was replaced by a quantised one
    assert any("quantized" in type(m).__module__ for m in model.image_encoder.modules())
    _check_keeps_masks(model, model_dir)


def test_compiled_encoder_graph_capture_keeps_masks():
    """torch.compile traces the encoder (aot_eager: dynamo + AOT autograd, no codegen)."""
    model = optimize(_build("sam1_shapes"), compile=True, compile_backend="aot_eager")
    _check_keeps_masks(model, "sam1_shapes")


# The inductor-compiled model (`optimize(compile=True)`, the default backend) is checked by the
# backends matrix: tests/paths/test_paths_agree.py's `compile` cells answer every prompt kind as
# the fp32 eager model within the `exact` tolerance (SAM 1 sam1_shapes and SAM 2 sam2_tiny), and
# the eager model matches the official recordings (tests/predict/test_parity_sam*.py).


def test_optimize_keeps_state_dict_keys_and_hooks_are_not_stacked():
    model = _build("sam1_shapes")
    keys = list(model.state_dict())
    optimize(model, dtype=torch.bfloat16)
    optimize(model, dtype=torch.bfloat16)
    assert encoder_cast_dtype(model) == torch.bfloat16
    assert (
        len(model.image_encoder._forward_pre_hooks) == len(model.image_encoder._forward_hooks) == 1
    )
    assert list(model.state_dict()) == keys
    x = torch.zeros(1, 3, 256, 256)
    with torch.inference_mode():
        assert model.image_encoder(x).dtype == torch.float32  # back in the decoder's dtype
    encoder_to_dtype(model, torch.float32)  # back to fp32: the hooks go away
    assert encoder_cast_dtype(model) is None
    assert not model.image_encoder._forward_pre_hooks and not model.image_encoder._forward_hooks
    assert model.image_encoder.patch_embed.proj.weight.dtype == torch.float32


def test_decoder_dtype_casts_the_rest_but_keeps_pixel_stats_float32():
    model = optimize(_build("sam1_shapes"), dtype=torch.bfloat16, decoder_dtype=torch.bfloat16)
    assert model.mask_decoder.iou_token.weight.dtype == torch.bfloat16
    assert model.pixel_mean.dtype == torch.float32 and model.pixel_std.dtype == torch.float32
    p = SamPredictor(model)
    p.set_image(load_rgb(str(FIXTURES / "sam1_shapes" / "shapes_1.png")))
    masks, iou, low = p.predict(np.array([[163.0, 346.0]]), np.array([1]))
    assert masks.shape == (3, 480, 640) and iou.dtype == np.float32 and low.dtype == np.float32


def test_bad_options():
    model = _build("sam1_shapes")
    with pytest.raises(ValueError, match="int8"):
        optimize(model, dtype=torch.bfloat16, int8=True)
    with pytest.raises(ValueError, match="dtype must be"):
        optimize(model, dtype=torch.int8)
    with pytest.raises(ValueError, match="image_encoder"):
        optimize(torch.nn.Linear(2, 2), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        quantize_encoder_int8(optimize(_build("sam1_shapes"), dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="not supported"):
        quantize_encoder_int8(model, engine="nope")
    with pytest.raises(ValueError, match="autocast dtype"):
        optimize(model, decoder_autocast=torch.float32)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_malloc_page_faults_fewer_big_temporaries():
    """In fresh processes (the setting is process-wide): an MLP block's 48 MiB temporaries."""
    code = """
import resource, sys, torch
from samkit.runtime.accel import tune_malloc
if sys.argv[1] == "1":
    assert tune_malloc() is True
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.set_num_threads(1)
x = torch.randn(4096, 768)
w1, w2 = torch.randn(768, 3072) * 0.02, torch.randn(3072, 768) * 0.02
counts = []
for _ in range(5):
    before = faults()
    y = torch.nn.functional.gelu(x @ w1) @ w2
    counts.append(faults() - before)
print(sum(counts[2:]))
"""
    pages = {
        tuned: int(
            subprocess.run(
                [sys.executable, "-c", code, str(int(tuned))],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
        )
        for tuned in (False, True)
    }
    # Measured: 82950 pages by default (every 48 MiB block mapped and faulted in again), 36864
    # tuned (one of the two reused).
    assert pages[True] < pages[False] / 2, pages


def test_bf16_sam2_encoder_gives_float32_position_encodings_without_a_round_trip():
    """The neck's sine encodings come out in the decoder's dtype (float32) straight from the
    float32 cache: exact values, and the same storage every call (no per-frame cast copies)."""
    d = FIXTURES / "sam2_tiny"
    ref = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt")
    model = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt", dtype=torch.bfloat16)
    s = model.image_size
    x = torch.rand(1, 3, s, s)
    with torch.inference_mode():
        want = ref.image_encoder(x)["vision_pos_enc"]
        first = model.image_encoder(x)
        second = model.image_encoder(x)
    assert first["backbone_fpn"][0].dtype == torch.float32
    for a, b, w in zip(first["vision_pos_enc"], second["vision_pos_enc"], want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, w, rtol=0, atol=0)
        assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    # back to float32: the encodings follow the encoder's dtype again
    encoder_to_dtype(model, torch.float32)
    with torch.inference_mode():
        again = model.image_encoder(x)["vision_pos_enc"]
    for a, w in zip(again, want, strict=True):
        torch.testing.assert_close(a, w, rtol=0, atol=0)


def test_decoder_autocast_is_hooks_that_copies_keep_and_errors_leave():
    model = optimize(_build("sam1_shapes"), decoder_autocast=torch.bfloat16)
    pe, dec = model.prompt_encoder, model.mask_decoder
    pts = (torch.tensor([[[100.0, 120.0]]]), torch.ones(1, 1, dtype=torch.int))
    shape = (1, pe.embed_dim, *pe.image_embedding_size)
    emb = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        sparse, dense = pe(points=pts, boxes=None, masks=None)
        args = (emb, pe.get_dense_pe(), sparse, dense, True)
        masks, iou = dec(*args)
        assert masks.dtype == iou.dtype == torch.float32  # outputs back in the weights' dtype
        # A deep copy runs its own weights under its own autocast.
        other = copy.deepcopy(model)
        assert decoder_autocast_dtype(other.mask_decoder) == torch.bfloat16
        with torch.no_grad():
            other.mask_decoder.iou_prediction_head.layers[-1].bias.add_(1.0)
        torch.testing.assert_close(other.mask_decoder(*args)[1], iou + 1.0, atol=0.05, rtol=0)
        # An error inside the forward leaves no autocast behind.
        with pytest.raises(RuntimeError):
            dec(emb[:, :3], *args[1:])
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_sam2_encoder_position_encodings_are_float32_exact():
    d = FIXTURES / "sam2_tiny"
    model = build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt")
    optimize(model, dtype=torch.bfloat16)
    neck = model.image_encoder.neck
    with torch.inference_mode():
        out = model.image_encoder(torch.zeros(1, 3, model.image_size, model.image_size))
    for pos in out["vision_pos_enc"]:
        assert pos.dtype == torch.float32
        ref = neck.position_encoding.encode_grid(*pos.shape[-2:])
        torch.testing.assert_close(pos[0], ref, atol=0, rtol=0)  # not rounded through bf16
