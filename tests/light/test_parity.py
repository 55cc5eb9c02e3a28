"""Parity of MobileSAM and HQ-SAM with their official implementations, on recorded outputs.

The fixtures (tests/fixtures/mobile_sam, tests/fixtures/sam_hq/{vit_b,vit_tiny}; how they were
made: their README and tools/reference/light_image/) hold tiny seeded models in the official
checkpoint format and what the official `mobile_sam` / `segment_anything_hq` code returned for
them: image features, `SamPredictor.predict` / `predict_torch` calls and an automatic-mask run.
Tolerances come from rerunning the official code in float64 (`drift_float64.json`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samkit.amg import rle_to_mask
from samkit.amg.sam import SamAutomaticMaskGenerator
from samkit.build.light import build_mobile_sam, build_sam_hq
from samkit.configs.light import TinyViTConfig
from samkit.predict.sam import SamPredictor
from samkit.predict.sam_hq import SamHQPredictor
from tests.conftest import IMAGES, load_rgb

HERE = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = {
    "mobile_sam": HERE / "mobile_sam",
    "sam_hq_vit_b": HERE / "sam_hq" / "vit_b",
    "sam_hq_vit_tiny": HERE / "sam_hq" / "vit_tiny",
}
# float32 vs the official float32: the float64 reruns moved low-res logits by < 2e-6 and IoUs by
# < 5e-7 (drift_float64.json); a 1e-5 bound leaves room for another summation order.
ATOL_LOGITS = 1e-5
ATOL_IOU = 1e-5
ATOL_FULL_LOGITS = 5e-5  # the two bilinear upsamplings' coordinate arithmetic
MAX_FLIP_FRACTION = 1e-4  # pixels whose logit is within float noise of 0


def _manifest(name: str) -> dict[str, Any]:
    return json.loads((MODELS[name] / "manifest.json").read_text())


@functools.lru_cache(maxsize=3)
def _model(name: str) -> torch.nn.Module:
    folder = MODELS[name]
    ckpt = folder / _manifest(name)["checkpoint"]["file"]
    build = build_mobile_sam if name == "mobile_sam" else build_sam_hq
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return build(checkpoint=ckpt)  # architecture inferred from the checkpoint


@functools.lru_cache(maxsize=2)
def _predictor(name: str, image: str) -> SamPredictor:
    model = _model(name)
    p = SamHQPredictor(model) if name.startswith("sam_hq") else SamPredictor(model)
    p.set_image(load_rgb(IMAGES / f"{image}.jpg"))
    return p


def _cases() -> list[Any]:
    out = []
    for name in MODELS:
        if not (MODELS[name] / "manifest.json").is_file():  # fails below, naming the folder
            out.append(pytest.param(name, None, id=f"{name}-missing"))
            continue
        for c in _manifest(name)["cases"]:
            out.append(pytest.param(name, c, id=f"{name}-{c['name']}"))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_loads_strictly_with_the_recorded_architecture(name: str) -> None:
    cfg = json.loads((MODELS[name] / "config.json").read_text())
    model = _model(name)
    sd = torch.load(MODELS[name] / cfg["checkpoint"], map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(sd)  # same keys, same order as the official model
    enc, want = model.image_encoder, cfg["encoder_args"]
    if cfg["encoder"] == "tiny_vit":
        assert list(enc.embed_dims) == want["embed_dims"]
        assert list(enc.depths) == want["depths"]
        for i, layer in enumerate(enc.layers[1:], start=1):
            for blk in layer.blocks:
                assert blk.attn.num_heads == want["num_heads"][i]
                assert blk.window_size == want["window_sizes"][i]
    else:
        assert len(enc.blocks) == want["depth"]
        assert [i for i, b in enumerate(enc.blocks) if b.window_size == 0] == want[
            "global_attn_indexes"
        ]
    dec = model.mask_decoder
    assert dec.transformer_dim == cfg["prompt_dim"]
    assert len(dec.transformer.layers) == cfg["decoder"]["depth"]
    if cfg["decoder"]["hq"]:
        assert dec.vit_dim == cfg["decoder"]["vit_dim"]
    assert model.family == ("mobile_sam" if name == "mobile_sam" else "sam_hq")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("image", ["truck", "groceries", "dog"])
def test_image_features(name: str, image: str) -> None:
    p = _predictor(name, image)
    z = np.load(MODELS[name] / f"image_{image}.npz")
    assert tuple(p.input_size) == tuple(z["input_size"])
    assert tuple(p.original_size) == tuple(z["original_size"])
    f = p.features.float()[0]
    torch.testing.assert_close(
        f[:, 30:34, 40:44], torch.from_numpy(z["features_crop"]), rtol=0, atol=1e-4
    )
    fd = f.double().flatten(1)
    torch.testing.assert_close(
        fd.mean(1), torch.from_numpy(z["features_chan_mean"]), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        fd.std(1), torch.from_numpy(z["features_chan_std"]), rtol=0, atol=1e-5
    )
    if "features_stride8" in z.files:
        torch.testing.assert_close(
            f[:, ::8, ::8], torch.from_numpy(z["features_stride8"]), rtol=0, atol=1e-4
        )
    if "interm_crop" in z.files:
        it = p.interm_features.float()[0]  # (h, w, C)
        torch.testing.assert_close(
            it[30:34, 40:44], torch.from_numpy(z["interm_crop"]), rtol=0, atol=1e-4
        )
        itd = it.double().flatten(0, 1)
        torch.testing.assert_close(
            itd.mean(0), torch.from_numpy(z["interm_chan_mean"]), rtol=0, atol=1e-5
        )


def _check_logits(low: np.ndarray, z: Any) -> None:
    low = np.asarray(low, np.float32)
    torch.testing.assert_close(
        torch.from_numpy(low[..., ::3, ::3]),
        torch.from_numpy(z["low_res_logits_stride3"]),
        rtol=0,
        atol=ATOL_LOGITS,
    )
    torch.testing.assert_close(
        torch.from_numpy(low[..., 96:160, 96:160]),
        torch.from_numpy(z["low_res_logits_crop"]),
        rtol=0,
        atol=ATOL_LOGITS,
    )
    mean = low.astype(np.float64).mean(axis=(-2, -1))
    np.testing.assert_allclose(mean, z["low_res_logits_mean"], rtol=0, atol=ATOL_LOGITS)


def _check_masks(masks: np.ndarray, z: Any) -> None:
    shape = tuple(z["masks_shape"])
    want = np.unpackbits(z["masks_packbits"], axis=-1)[..., : shape[-1]].astype(bool)
    assert masks.shape == shape and masks.dtype == bool
    assert (masks != want).mean() <= MAX_FLIP_FRACTION


@pytest.mark.parametrize(("name", "case"), _cases())
def test_predict_matches_official(name: str, case: dict[str, Any] | None) -> None:
    assert case is not None, f"no manifest.json in {MODELS[name]}"
    p = _predictor(name, case["image"])
    z = np.load(MODELS[name] / case["file"])
    kw = case["kwargs"]
    hq = {"hq_token_only": kw["hq_token_only"]} if "hq_token_only" in kw else {}
    if case["call"] == "predict_torch":
        boxes = torch.from_numpy(z["boxes_model"])
        masks_t, iou_t, low_t = p.predict_torch(
            None, None, boxes=boxes, multimask_output=False, **hq
        )
        masks, iou, low = masks_t.numpy(), iou_t.numpy(), low_t.numpy()
    else:
        args = {
            k: z[k] for k in ("point_coords", "point_labels", "box", "mask_input") if k in z.files
        }
        if "mask_input" in args:
            args["mask_input"] = args["mask_input"].astype(np.float32)
        masks, iou, low = p.predict(
            **args,
            multimask_output=bool(z["multimask_output"]),
            return_logits=bool(z["return_logits"]),
            **hq,
        )
    torch.testing.assert_close(
        torch.from_numpy(iou), torch.from_numpy(z["iou_predictions"]), rtol=0, atol=ATOL_IOU
    )
    _check_logits(low, z)
    if "logits_stride4" in z.files:
        assert masks.shape == tuple(z["masks_shape"])
        torch.testing.assert_close(
            torch.from_numpy(masks[..., ::4, ::4]),
            torch.from_numpy(z["logits_stride4"]),
            rtol=0,
            atol=ATOL_FULL_LOGITS,
        )
    else:
        _check_masks(masks, z)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_automatic_masks_match_official(name: str) -> None:
    run = _manifest(name)["amg"][0]
    z = np.load(MODELS[name] / run["file"])
    params = dict(run["params"])
    gen = SamAutomaticMaskGenerator(_model(name), **params)  # HQ: its family's SamHQPredictor
    recs = gen.generate(load_rgb(IMAGES / f"{run['image']}.jpg"))
    assert len(recs) == run["num_masks"] == len(z["area"])
    h, w = (int(v) for v in z["image_hw"])
    for i, r in enumerate(recs):
        counts = z["rle_counts"][z["rle_offsets"][i] : z["rle_offsets"][i + 1]]
        want = rle_to_mask({"size": [h, w], "counts": counts.tolist()})
        got = rle_to_mask(r["segmentation"])
        assert (got != want).mean() <= MAX_FLIP_FRACTION, i
        assert r["bbox"] == z["bbox_xywh"][i].tolist()
        assert r["crop_box"] == z["crop_box_xywh"][i].tolist()
        assert abs(r["predicted_iou"] - z["predicted_iou"][i]) <= ATOL_IOU
        assert abs(r["stability_score"] - z["stability_score"][i]) <= 1e-4
        np.testing.assert_allclose(r["point_coords"][0], z["point_coords"][i])


def test_tiny_vit_config_defaults_are_mobile_sam() -> None:
    cfg = TinyViTConfig()
    assert (cfg.embed_dims, cfg.depths, cfg.num_heads) == (
        (64, 128, 160, 320),
        (2, 2, 6, 2),
        (2, 4, 5, 10),
    )
