"""Record MobileSAM / HQ-SAM ground truth with the official code (see README.md next to this file).

usage (in the recording venv, see setup_env.sh):
    OMP_NUM_THREADS=2 python record.py MODEL OUT_DIR [--images DIR] [--probe-amg]
MODEL: mobile_sam | sam_hq_vit_b | sam_hq_vit_tiny

Builds the tiny model with the official classes under a seed, perturbs and rounds its weights
(refio.py), saves the checkpoint in the official format, runs the official SamPredictor and
SamAutomaticMaskGenerator on ../shared/images, then reruns everything in float64 to measure the
float drift that sets the tolerances. Outputs are byte-reproducible.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refio import (
    load_rgb,
    perturb_and_round_,
    save_json,
    save_npz,
    save_torch,
    sha256_array,
    sha256_file,
    state_dict_fp16,
)

TINY_VIT = dict(
    img_size=1024,
    in_chans=3,
    num_classes=10,
    embed_dims=[16, 32, 48, 320],
    depths=[1, 2, 1, 1],
    num_heads=[1, 2, 3, 4],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=1.0,
    drop_rate=0.0,
    drop_path_rate=0.0,
    use_checkpoint=False,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    layer_lr_decay=0.8,
)
VIT = dict(
    img_size=1024,
    patch_size=16,
    in_chans=3,
    embed_dim=64,
    depth=4,
    num_heads=2,
    mlp_ratio=4.0,
    out_chans=32,
    qkv_bias=True,
    use_abs_pos=True,
    use_rel_pos=True,
    rel_pos_zero_init=True,
    window_size=14,
    global_attn_indexes=[1, 3],
)
MODELS = {
    "mobile_sam": dict(
        package="mobile_sam",
        reference="mobile_sam 1.0 (github ChaoningZhang/MobileSAM @ 34bbbfd)",
        seed=11,
        encoder="tiny_vit",
        encoder_args=TINY_VIT,
        prompt_dim=256,
        decoder=dict(hq=False, depth=1, mlp_dim=64, num_heads=8, iou_head_hidden_dim=32),
        checkpoint="mobile_sam_tiny.pt",
    ),
    "sam_hq_vit_b": dict(
        package="segment_anything_hq",
        reference="segment-anything-hq 0.3 (PyPI; github SysCV/sam-hq)",
        seed=12,
        encoder="vit",
        encoder_args=VIT,
        prompt_dim=32,
        decoder=dict(hq=True, depth=2, mlp_dim=64, num_heads=8, iou_head_hidden_dim=32, vit_dim=64),
        checkpoint="sam_hq_vit_b_tiny.pth",
    ),
    "sam_hq_vit_tiny": dict(
        package="segment_anything_hq",
        reference="segment-anything-hq 0.3 (PyPI; github SysCV/sam-hq)",
        seed=13,
        encoder="tiny_vit",
        encoder_args=dict(TINY_VIT, depths=[1, 2, 1, 0]),
        prompt_dim=256,
        decoder=dict(hq=True, depth=1, mlp_dim=64, num_heads=8, iou_head_hidden_dim=32, vit_dim=48),
        checkpoint="sam_hq_vit_tiny_tiny.pth",
    ),
}
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]

# (name, image, predict kwargs). Coordinates in original pixels (W x H: truck 1800x1200,
# groceries and dog 800x534). HQ runs add hq_token_only from HQ_ONLY.
CASES = [
    (
        "truck_point_mm",
        "truck",
        dict(point_coords=[[500.0, 375.0]], point_labels=[1], multimask_output=True),
    ),
    (
        "truck_2pts",
        "truck",
        dict(
            point_coords=[[500.0, 375.0], [1125.0, 625.0]],
            point_labels=[1, 0],
            multimask_output=False,
        ),
    ),
    (
        "truck_maskin_point",
        "truck",
        dict(
            point_coords=[[575.5, 550.25]],
            point_labels=[1],
            mask_input_from="truck_point_mm",
            multimask_output=False,
        ),
    ),
    ("groceries_box", "groceries", dict(box=[60.0, 80.0, 420.0, 460.0], multimask_output=False)),
    (
        "groceries_box_point",
        "groceries",
        dict(
            box=[200.5, 100.0, 700.0, 480.75],
            point_coords=[[450.0, 300.0]],
            point_labels=[0],
            multimask_output=True,
        ),
    ),
    (
        "dog_point_logits",
        "dog",
        dict(
            point_coords=[[400.5, 250.0]],
            point_labels=[1],
            multimask_output=False,
            return_logits=True,
        ),
    ),
    (
        "dog_3pts",
        "dog",
        dict(
            point_coords=[[300.0, 200.0], [500.0, 300.0], [100.0, 450.0]],
            point_labels=[1, 1, 0],
            multimask_output=False,
        ),
    ),
]
HQ_ONLY = {
    "truck_point_mm": False,
    "truck_2pts": False,
    "truck_maskin_point": True,
    "groceries_box": True,
    "groceries_box_point": False,
    "dog_point_logits": False,
    "dog_3pts": True,
}
BATCH_BOXES = [[60.0, 80.0, 420.0, 460.0], [300.0, 50.0, 780.0, 500.0], [0.0, 0.0, 800.0, 534.0]]
AMG_BASE = dict(
    points_per_side=8,
    points_per_batch=64,
    crop_n_layers=0,
    box_nms_thresh=1.0,
    stability_score_offset=0.05,
    min_mask_region_area=0,
    output_mode="uncompressed_rle",
)


def build(spec: dict, dtype=torch.float32):
    m = importlib.import_module(spec["package"] + ".modeling")
    if spec["encoder"] == "tiny_vit":
        enc = m.TinyViT(**spec["encoder_args"])
    else:
        enc = m.ImageEncoderViT(
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **spec["encoder_args"]
        )
    d, c = spec["decoder"], spec["prompt_dim"]
    tr = m.TwoWayTransformer(
        depth=d["depth"], embedding_dim=c, mlp_dim=d["mlp_dim"], num_heads=d["num_heads"]
    )
    common = dict(num_multimask_outputs=3, transformer=tr, transformer_dim=c, iou_head_depth=3)
    if d["hq"]:
        dec = m.MaskDecoderHQ(
            iou_head_hidden_dim=d["iou_head_hidden_dim"], vit_dim=d["vit_dim"], **common
        )
    else:
        dec = m.MaskDecoder(iou_head_hidden_dim=d["iou_head_hidden_dim"], **common)
    pe = m.PromptEncoder(
        embed_dim=c, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
    )
    return m.Sam(
        image_encoder=enc,
        prompt_encoder=pe,
        mask_decoder=dec,
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    )


def patch_for_float64(package: str) -> None:
    """For the float64 drift run: the official code casts prompt inputs to float32 in two places.

    Each patched method casts its input to its own parameters' dtype first: a no-op for the float32
    model (the inputs are float32 already), so the recorded float32 outputs are unaffected.
    """
    pe_mod = importlib.import_module(package + ".modeling.prompt_encoder")
    orig_pe, orig_masks = (
        pe_mod.PositionEmbeddingRandom._pe_encoding,
        pe_mod.PromptEncoder._embed_masks,
    )

    def _pe_encoding(self, coords):
        return orig_pe(self, coords.to(self.positional_encoding_gaussian_matrix.dtype))

    def _embed_masks(self, masks):
        return orig_masks(self, masks.to(self.no_mask_embed.weight.dtype))

    pe_mod.PositionEmbeddingRandom._pe_encoding = _pe_encoding
    pe_mod.PromptEncoder._embed_masks = _embed_masks


def features_record(predictor, hq: bool, full: bool) -> dict:
    f = predictor.features.double()
    out = {
        "input_size": np.array(predictor.input_size, np.int64),
        "original_size": np.array(predictor.original_size, np.int64),
        "features_chan_mean": f[0].flatten(1).mean(1).numpy(),
        "features_chan_std": f[0].flatten(1).std(1).numpy(),
        "features_crop": predictor.features[0, :, 30:34, 40:44].float().numpy(),
    }
    if full:
        out["features_stride8"] = predictor.features[0, :, ::8, ::8].float().numpy()
    if hq:
        it = predictor.interm_features[0]  # (1, 64, 64, C), channels last
        out["interm_chan_mean"] = it[0].double().flatten(0, 1).mean(0).numpy()
        out["interm_chan_std"] = it[0].double().flatten(0, 1).std(0).numpy()
        out["interm_crop"] = it[0, 30:34, 40:44, :].float().numpy()
    return out


def logits_record(low: np.ndarray) -> dict:
    low = np.asarray(low, np.float32)
    return {
        "low_res_logits_stride3": low[..., ::3, ::3],
        "low_res_logits_crop": low[..., 96:160, 96:160],
        "low_res_logits_mean": low.astype(np.float64).mean(axis=(-2, -1)),
        "low_res_logits_std": low.astype(np.float64).std(axis=(-2, -1)),
        "low_res_logits_absmax": np.abs(low).max(axis=(-2, -1)),
    }


def run_case(predictor, name, kw, hq_only, sources, return_all_logits=False):
    """One SamPredictor.predict call; returns (record, low_res_logits, full_res_logits_or_masks)."""
    kw = dict(kw)
    rec: dict = {}
    args: dict = {}
    src = kw.pop("mask_input_from", None)
    if src is not None:
        args["mask_input"] = sources[src]
        rec["mask_input"] = sources[src].astype(np.float16)
    if "point_coords" in kw:
        args["point_coords"] = np.array(kw["point_coords"], np.float64)
        args["point_labels"] = np.array(kw["point_labels"], np.int64)
        rec["point_coords"], rec["point_labels"] = args["point_coords"], args["point_labels"]
        rec["point_coords_model"] = predictor.transform.apply_coords(
            args["point_coords"], predictor.original_size
        )
    if "box" in kw:
        args["box"] = np.array(kw["box"], np.float64)
        rec["box"] = args["box"]
        rec["box_model"] = predictor.transform.apply_boxes(args["box"], predictor.original_size)
    args["multimask_output"] = kw["multimask_output"]
    args["return_logits"] = kw.get("return_logits", False) or return_all_logits
    if hq_only is not None:
        args["hq_token_only"] = hq_only
        rec["hq_token_only"] = np.array(hq_only)
    rec["multimask_output"] = np.array(kw["multimask_output"])
    rec["return_logits"] = np.array(kw.get("return_logits", False))
    masks, iou, low = predictor.predict(**args)
    return rec, masks, iou, low


def mask_fields(masks: np.ndarray, logits: bool) -> dict:
    if logits:
        return {
            "logits_stride4": masks[..., ::4, ::4].astype(np.float32),
            "masks_shape": np.array(masks.shape),
        }
    return {
        "masks_packbits": np.packbits(masks.astype(bool), axis=-1),
        "masks_shape": np.array(masks.shape),
    }


def choose_amg_params(pkg, model, image: np.ndarray, keep: int = 6) -> tuple[dict, dict]:
    """Thresholds for the AMG case, each in the middle of a gap between candidate scores.

    A probe run with both filters off lists every candidate's (predicted_iou, stability_score).
    The stability threshold keeps about `keep` candidates (the widest gap among ranks keep-2 ..
    keep+2); if some of those have a positive predicted IoU (the official filter only acts for a
    threshold > 0), the IoU threshold drops the lowest of them at the widest gap. Returns the
    params and the distance of the nearest candidate score to each threshold.
    """
    probe = pkg.SamAutomaticMaskGenerator(
        model, pred_iou_thresh=0.0, stability_score_thresh=0.0, **AMG_BASE
    )
    cand = [(r["predicted_iou"], r["stability_score"]) for r in probe.generate(image)]
    stab = np.sort(np.array([c[1] for c in cand]))[::-1]
    ranks = range(max(keep - 2, 1), min(keep + 3, len(stab)))
    r = max(ranks, key=lambda i: stab[i - 1] - stab[i])
    st = float((stab[r - 1] + stab[r]) / 2)
    kept_iou = np.sort(np.array([c[0] for c in cand if c[1] > st]))
    it = 0.0
    pos = kept_iou[kept_iou > 0]
    if len(pos) >= 4:
        j = max(range(1, len(pos) // 2 + 1), key=lambda i: pos[i] - pos[i - 1])
        it = float((pos[j - 1] + pos[j]) / 2)
    all_iou = np.array([c[0] for c in cand])
    all_st = np.array([c[1] for c in cand])
    margins = {
        "num_candidates": len(cand),
        "stability_nearest": float(np.abs(all_st - st).min()),
        "iou_nearest": float(np.abs(all_iou - it).min()) if it > 0 else None,
    }
    return dict(
        AMG_BASE, pred_iou_thresh=round(it, 6), stability_score_thresh=round(st, 6)
    ), margins


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("out")
    ap.add_argument(
        "--images", default=os.path.join(os.path.dirname(__file__), "../../../../shared/images")
    )
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    spec = MODELS[a.model]
    hq = spec["decoder"]["hq"]
    pkg = importlib.import_module(spec["package"])
    patch_for_float64(spec["package"])
    os.makedirs(a.out, exist_ok=True)

    torch.manual_seed(spec["seed"])
    model = build(spec)
    changed = perturb_and_round_(model, spec["seed"])
    ckpt = os.path.join(a.out, spec["checkpoint"])
    save_torch(ckpt, state_dict_fp16(model))
    # the official builders' use: load the checkpoint, then eval() (TinyViT caches its attention
    # biases in eval(); the README examples call eval() after loading)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = build(spec)
    model.load_state_dict(sd, strict=True)
    model.eval()
    model64 = build(spec)
    model64.load_state_dict(sd, strict=True)
    model64.double().eval()

    images = {
        n: load_rgb(os.path.join(a.images, n + ".jpg")) for n in ("truck", "groceries", "dog")
    }
    pred = pkg.SamPredictor(model)
    pred64 = pkg.SamPredictor(model64)

    manifest: dict = {
        "model": a.model,
        "reference": spec["reference"],
        "images": {},
        "cases": [],
        "amg": [],
    }
    drift: dict = {"cases": {}, "images": {}}
    with torch.no_grad():
        for n, img in images.items():
            pred.set_image(img)
            rec = features_record(pred, hq, full=(n == "truck"))
            pred64.set_image(img)
            drift["images"][n] = {
                "features_maxabs_diff": float(
                    (pred64.features - pred.features.double()).abs().max()
                ),
                "features_absmax": float(pred.features.abs().max()),
            }
            if hq:
                d = pred64.interm_features[0] - pred.interm_features[0].double()
                drift["images"][n]["interm_maxabs_diff"] = float(d.abs().max())
            save_npz(os.path.join(a.out, f"image_{n}.npz"), rec)
            manifest["images"][n] = {
                "file": f"image_{n}.npz",
                "path": f"../shared/images/{n}.jpg",
                "rgb_sha256": sha256_array(img),
                "hw": list(img.shape[:2]),
            }

        sources: dict = {}
        current = None
        for name, image, kw in CASES:
            if current != image:
                pred.set_image(images[image])
                pred64.set_image(images[image])
                current = image
            hq_only = HQ_ONLY[name] if hq else None
            rec, masks, iou, low = run_case(pred, name, kw, hq_only, sources)
            _, logits64, iou64, low64 = run_case(
                pred64, name, kw, hq_only, sources, return_all_logits=True
            )
            best = int(np.argmax(iou))
            sources[name] = low[best : best + 1].astype(np.float16).astype(np.float32)
            rec.update(mask_fields(masks, bool(kw.get("return_logits", False))))
            rec.update(logits_record(low))
            rec["iou_predictions"] = iou.astype(np.float32)
            save_npz(os.path.join(a.out, f"case_{name}.npz"), rec)
            m32 = masks > 0 if kw.get("return_logits") else masks
            flips = (logits64 > 0) != m32
            dr = {
                "low_res_maxabs_diff": float(np.abs(low64 - low).max()),
                "iou_maxabs_diff": float(np.abs(iou64 - iou).max()),
                "mask_flips": int(flips.sum()),
                "mask_pixels": int(flips.size),
                "flip_max_abs_logit64": float(np.abs(logits64[flips]).max())
                if flips.any()
                else 0.0,
                "low_res_absmax": float(np.abs(low).max()),
            }
            if kw.get("return_logits"):
                dr["logits_maxabs_diff"] = float(np.abs(logits64 - masks).max())
            drift["cases"][name] = dr
            kwargs = {k: v for k, v in kw.items() if k != "mask_input_from"}
            if hq:
                kwargs["hq_token_only"] = hq_only
            entry = {
                "name": name,
                "image": image,
                "call": "predict",
                "kwargs": kwargs,
                "file": f"case_{name}.npz",
            }
            if "mask_input_from" in kw:
                entry["mask_input_from"] = (
                    kw["mask_input_from"] + " (highest-IoU low-res mask, rounded to float16)"
                )
            manifest["cases"].append(entry)

        # predict_torch with a batch of boxes (HQ: hq_features.repeat over the batch)
        pred.set_image(images["groceries"])
        pred64.set_image(images["groceries"])
        boxes = np.array(BATCH_BOXES, np.float64)
        boxes_model = pred.transform.apply_boxes_torch(
            torch.as_tensor(boxes), pred.original_size
        ).float()
        kw_t = {"hq_token_only": False} if hq else {}
        masks, iou, low = pred.predict_torch(
            None, None, boxes=boxes_model, multimask_output=False, **kw_t
        )
        logits64, iou64, low64 = pred64.predict_torch(
            None,
            None,
            boxes=boxes_model.double(),
            multimask_output=False,
            return_logits=True,
            **kw_t,
        )
        rec = {"boxes": boxes, "boxes_model": boxes_model.numpy(), "iou_predictions": iou.numpy()}
        rec.update(mask_fields(masks.numpy(), False))
        rec.update(logits_record(low.numpy()))
        save_npz(os.path.join(a.out, "case_groceries_boxes_batch.npz"), rec)
        flips = (logits64 > 0) != masks
        drift["cases"]["groceries_boxes_batch"] = {
            "low_res_maxabs_diff": float((low64 - low.double()).abs().max()),
            "iou_maxabs_diff": float((iou64 - iou.double()).abs().max()),
            "mask_flips": int(flips.sum()),
            "mask_pixels": int(flips.numel()),
        }
        manifest["cases"].append(
            {
                "name": "groceries_boxes_batch",
                "image": "groceries",
                "call": "predict_torch",
                "kwargs": {
                    "point_coords": None,
                    "point_labels": None,
                    "boxes": "boxes_model",
                    "multimask_output": False,
                }
                | ({"hq_token_only": False} if hq else {}),
                "file": "case_groceries_boxes_batch.npz",
            }
        )

        # automatic masks on dog.jpg; thresholds placed in gaps of the candidates' scores
        params, margins = choose_amg_params(pkg, model, images["dog"])
        # float32 only: the official generator cannot run in float64 (its NMS gets float32 boxes
        # and float64 scores); its scores come from the predict path the cases cover
        recs = pkg.SamAutomaticMaskGenerator(model, **params).generate(images["dog"])
        counts = [np.asarray(r["segmentation"]["counts"], np.int64) for r in recs]
        assert all(c.max() < 2**31 for c in counts)
        rec = {
            "image_hw": np.array(images["dog"].shape[:2], np.int64),
            "rle_counts": np.concatenate(counts).astype(np.int32)
            if counts
            else np.zeros(0, np.int32),
            "rle_offsets": np.cumsum([0] + [len(c) for c in counts]).astype(np.int64),
            "area": np.array([r["area"] for r in recs], np.int64),
            "bbox_xywh": np.array([r["bbox"] for r in recs], np.float64).reshape(-1, 4),
            "crop_box_xywh": np.array([r["crop_box"] for r in recs], np.float64).reshape(-1, 4),
            "predicted_iou": np.array([r["predicted_iou"] for r in recs], np.float64),
            "stability_score": np.array([r["stability_score"] for r in recs], np.float64),
            "point_coords": np.array([r["point_coords"][0] for r in recs], np.float64).reshape(
                -1, 2
            ),
        }
        save_npz(os.path.join(a.out, "amg_dog.npz"), rec)
        manifest["amg"].append(
            {
                "name": "amg_dog",
                "image": "dog",
                "file": "amg_dog.npz",
                "generator": "SamAutomaticMaskGenerator",
                "params": params,
                "num_masks": len(recs),
                "threshold_margins": margins,
            }
        )

    manifest["checkpoint"] = {
        "file": spec["checkpoint"],
        "sha256": sha256_file(ckpt),
        "num_tensors": len(sd),
    }
    manifest["perturbed_keys"] = len(changed)
    manifest["threads"] = torch.get_num_threads()
    manifest["torch"] = torch.__version__
    save_json(os.path.join(a.out, "manifest.json"), manifest)
    save_json(os.path.join(a.out, "drift_float64.json"), drift)
    cfg = {k: v for k, v in spec.items() if k != "package"}
    cfg.update(pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, image_format="RGB", mask_threshold=0.0)
    cfg["prompt_encoder"] = dict(
        embed_dim=spec["prompt_dim"],
        image_embedding_size=[64, 64],
        input_image_size=[1024, 1024],
        mask_in_chans=16,
    )
    save_json(os.path.join(a.out, "config.json"), cfg)


if __name__ == "__main__":
    main()
