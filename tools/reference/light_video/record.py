"""Record the official EfficientTAM / EdgeTAM outputs as samkit parity fixtures.

Runs the official code (never a samkit dependency; see README.md next to this file) on CPU with a
tiny, seeded random-weight model in the official checkpoint format, replays the SAM 2 image
predictor cases of ../shared/fixtures/sam2_tiny and the video sessions of
../shared/fixtures/sam2_video (same calls, same frames), and writes tests/fixtures/<model>/.

usage (from the repository root):
  OMP_NUM_THREADS=2 /work/scratch/light_video/venv/bin/python tools/reference/light_video/record.py \
      --model efficienttam --official-src /work/scratch/light_video/src/etam \
      [--out tests/fixtures/efficienttam] [--dtype float32|float64] [--raw-out RAW.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import os
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import tiny_configs  # noqa: E402

IMG_LOGIT_STRIDE = 4  # image low-res logits (C, 256, 256) stored float32 at [::4, ::4]
IMG_MASK_STRIDE = 4  # image masks stored packed at [::4, ::4] (+ full-resolution area)
VID_LOGIT_STRIDE = 8  # video logits (O, 540, 960) stored float16 at [::8, ::8]
VID_MASK_STRIDE = 4  # video masks stored packed at [::4, ::4] (+ full-resolution area)
EXTRA_LOGIT_STRIDE = 16  # sessions re-run with the other cross-attention variants


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def write_npz(path: str, arrays: dict) -> None:
    """Deterministic deflated npz (fixed zip timestamps), written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k in sorted(arrays):
            a = np.ascontiguousarray(arrays[k])
            b = io.BytesIO()
            np.lib.format.write_array(b, a, allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, b.getvalue())
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class Store:
    """Storage-form arrays (fixture) and full-precision copies (raw, for the drift table)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.raw: dict[str, np.ndarray] = {}

    def put(self, key, v, store=None, raw=True):
        v = np.asarray(v)
        self.arrays[key] = v if store is None else store(v)
        if raw:
            self.raw[key] = v.astype(np.float64) if v.dtype.kind == "f" else v

    def logits(self, key, logits, stride, dtype):
        """(..., H, W) logits: stored [::s, ::s] in `dtype`; absmax; raw full-precision subsample."""
        v = np.asarray(logits, dtype=np.float64)
        sub = v[..., ::stride, ::stride]
        self.arrays[key] = sub.astype(np.float32).astype(dtype)
        self.raw[key] = sub
        am = np.abs(v).reshape(*v.shape[:-2], -1).max(-1) if v.size else np.zeros(v.shape[:-2])
        self.put(key + "_absmax", am, store=lambda a: a.astype(np.float32))

    def masks(self, key, mask_bool, stride):
        m = np.asarray(mask_bool, dtype=bool)
        sub = m[..., ::stride, ::stride]
        self.arrays[key] = np.packbits(sub, axis=-1)
        self.raw[key] = sub
        self.put(key + "_area", m.reshape(*m.shape[:-2], -1).sum(-1).astype(np.int64))


# ----------------------------------------------------------------------------- model building


def patch_official(kind: str, dtype: str) -> list[str]:
    """Runtime patches (this process only). Returns their ids; README.md explains each."""
    import torch

    applied = []
    if kind == "edgetam":
        import sam2.modeling.backbones.timm as tb

        orig = tb.create_model

        def create_model(name, pretrained=False, **kw):  # P2: no download, tiny trunk arguments
            return orig(name, pretrained=False, **kw, **tiny_configs.EDGETAM_TIMM_KWARGS)

        tb.create_model = create_model
        applied.append("P2")

        # P5: EdgeTAM's PerceiverResampler.forward_2d does `expand(B, ...).view(-1, 1, C)` on its
        # latents, which raises for a batch of B > 1 memories (several objects; EdgeTAM issue #15).
        # Run it one memory at a time (each batch element is independent in this function).
        from sam2.modeling.perceiver import PerceiverResampler

        orig_2d = PerceiverResampler.forward_2d

        def forward_2d(self, x):
            if x.shape[0] == 1:
                return orig_2d(self, x)
            outs = [orig_2d(self, x[i : i + 1]) for i in range(x.shape[0])]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

        PerceiverResampler.forward_2d = forward_2d
        applied.append("P5")
    if dtype == "float64":
        # P4: float64 drift run only: float inputs of every module are cast to float64
        import torch.nn as nn

        orig_call = nn.Module.__call__

        def up(x):
            if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.bfloat16):
                return x.double()
            if isinstance(x, (list, tuple)):
                return type(x)(up(y) for y in x)
            return x

        def call(self, *a, **k):
            return orig_call(self, *up(a), **{n: up(v) for n, v in k.items()})

        nn.Module.__call__ = call
        # PositionEmbeddingRandom builds its dense grid in float32 explicitly
        pe_mod = importlib.import_module(
            tiny_configs.MODELS[kind]["package"] + ".modeling.position_encoding"
        )
        orig_pe = pe_mod.PositionEmbeddingRandom._pe_encoding

        def _pe_encoding(self, coords):
            return orig_pe(self, coords.to(self.positional_encoding_gaussian_matrix.dtype))

        pe_mod.PositionEmbeddingRandom._pe_encoding = _pe_encoding
        applied.append("P4")
    return applied


def compose_model(kind: str, video: bool, dtype: str):
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    spec = tiny_configs.MODELS[kind]
    ov = list(spec["overrides"])
    if video:
        ov = [f"++model._target_={spec['video_target']}", *ov]
    # apply_postprocessing=True of the official builders
    ov += [
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    ]
    if video:
        ov += ["++model.binarize_mask_from_pts_for_mem_enc=true", "++model.fill_hole_area=0"]
    cfg = compose(config_name=spec["config"], overrides=ov)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    return model, OmegaConf.to_container(cfg.model), ov


def make_checkpoint(kind: str, path: str) -> dict:
    """Seeded default init, then 0.02*N(0,1) on every float entry except >=2-D Linear/Conv weights
    (the ../shared/fixtures recipe)."""
    import torch
    import torch.nn as nn

    spec = tiny_configs.MODELS[kind]
    torch.manual_seed(spec["seed"])
    model, cfg, ov = compose_model(kind, video=False, dtype="float32")
    skip = set()
    for name, mod in model.named_modules():
        conv_or_linear = isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d))
        if conv_or_linear and mod.weight.ndim >= 2:
            skip.add(f"{name}.weight" if name else "weight")
    sd = model.state_dict()
    g = torch.Generator().manual_seed(1000 + spec["seed"])
    out = {}
    for k, v in sd.items():
        v = v.detach().clone()
        if v.is_floating_point() and k not in skip:
            v = v + 0.02 * torch.randn(v.shape, generator=g, dtype=v.dtype)
        out[k] = v.contiguous()
    tmp = path + ".tmp"
    torch.save({"model": out}, tmp)
    os.replace(tmp, path)
    return {"family": kind, "model": cfg, "hydra_overrides": ov, "num_tensors": len(out)}


def load_model(kind: str, ckpt: str, video: bool, dtype: str, attn: str | None = None):
    import torch

    spec = tiny_configs.MODELS[kind]
    if attn is not None:
        spec["overrides"] = [o for o in spec["overrides"] if "cross_attention._target_" not in o]
        spec["overrides"].append(f"++model.memory_attention.layer.cross_attention._target_={attn}")
    model, cfg, ov = compose_model(kind, video=video, dtype=dtype)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    missing, unexpected = model.load_state_dict(sd)
    assert not missing and not unexpected, (missing, unexpected)
    if dtype == "float64":
        model = model.double()
    model = model.eval()
    return model, cfg, ov


# ----------------------------------------------------------------------------- image cases


def run_images(kind, model, shared, store, manifest):
    import torch
    from PIL import Image

    pred_cls = tiny_configs.image_predictor_class(kind)
    pred = pred_cls(model)
    man2 = read_json(os.path.join(shared, "fixtures/sam2_tiny/manifest.json"))
    images = {}
    for name in ("truck.jpg", "groceries.jpg", "dog.jpg"):
        images[name] = np.array(Image.open(os.path.join(shared, "images", name)).convert("RGB"))
    info = {}
    for name, img in images.items():
        stem = name[:-4]
        with torch.no_grad():
            pred.set_image(img)
        f = pred._features
        emb = f["image_embed"].detach().double().cpu().numpy()
        pre = f"image_{stem}/"
        store.put(pre + "orig_hw", np.array(pred._orig_hw[0], dtype=np.int64))
        store.put(pre + "image_embed_chan_mean", emb[0].reshape(emb.shape[1], -1).mean(-1))
        store.put(pre + "image_embed_chan_std", emb[0].reshape(emb.shape[1], -1).std(-1, ddof=1))
        if stem == "truck":
            store.put(
                pre + "image_embed_stride2",
                emb[..., ::2, ::2],
                store=lambda a: a.astype(np.float16),
            )
        for i, hr in enumerate(f["high_res_feats"]):
            h = hr.detach().double().cpu().numpy()
            c = h.shape[1]
            store.put(pre + f"high_res_feats_{i}_chan_mean", h[0].reshape(c, -1).mean(-1))
            store.put(pre + f"high_res_feats_{i}_chan_std", h[0].reshape(c, -1).std(-1, ddof=1))
            if stem == "truck":
                s = 8 if i == 0 else 4
                store.put(
                    pre + f"high_res_feats_{i}_stride{s}",
                    h[..., ::s, ::s],
                    store=lambda a: a.astype(np.float16),
                )
        info[name] = {
            "rgb_sha256": sha256_bytes(np.ascontiguousarray(img).tobytes()),
            "shape_hwc": list(img.shape),
        }
    manifest["images"] = info

    cases = []
    lowres_by_case = {}
    for c in man2["cases"]:
        kw = dict(c["kwargs"])
        pre = f"case_{c['name']}/"
        entry = {k: v for k, v in c.items() if k not in ("file", "dynamic_multimask_stable")}
        if c["call"] == "predict":
            with torch.no_grad():
                pred.set_image(images[c["image"]])
            call = {}
            for k in ("point_coords", "box"):
                if k in kw:
                    call[k] = np.array(kw[k], dtype=np.float64)
            if "point_labels" in kw:
                call["point_labels"] = np.array(kw["point_labels"], dtype=np.int64)
            if c.get("mask_input_from"):
                call["mask_input"] = lowres_by_case[c["mask_input_from"]]
                store.put(
                    pre + "mask_input", call["mask_input"], store=lambda a: a.astype(np.float16)
                )
            masks, ious, low = pred.predict(
                multimask_output=kw["multimask_output"],
                return_logits=kw.get("return_logits", False),
                **call,
            )
            low = np.asarray(low)
            best = int(np.argmax(ious)) if ious.ndim == 1 else None
            if best is not None:
                # the fed-back mask is rounded to float16 so the fixture stores exactly the input
                lowres_by_case[c["name"]] = (
                    low[best : best + 1].astype(np.float16).astype(np.float32)
                )
            if kw.get("return_logits"):
                store.logits(pre + "logits", masks, 8, np.float32)
                store.masks(pre + "masks", masks > 0, IMG_MASK_STRIDE)
            else:
                store.masks(pre + "masks", masks > 0.5, IMG_MASK_STRIDE)
            store.put(pre + "iou_predictions", ious, store=lambda a: a.astype(np.float32))
            store.logits(pre + "low_res_logits", low, IMG_LOGIT_STRIDE, np.float32)
        else:
            with torch.no_grad():
                pred.set_image_batch([images[n] for n in c["images"]])
            pcs = [np.array(p, dtype=np.float64) for p in kw["point_coords_batch"]]
            pls = [np.array(p, dtype=np.int64) for p in kw["point_labels_batch"]]
            ms, ios, lows = pred.predict_batch(pcs, pls, multimask_output=kw["multimask_output"])
            for i in range(len(ms)):
                store.masks(pre + f"masks_{i}", ms[i] > 0.5, IMG_MASK_STRIDE)
                store.put(
                    pre + f"iou_predictions_{i}", ios[i], store=lambda a: a.astype(np.float32)
                )
                store.logits(pre + f"low_res_logits_{i}", lows[i], IMG_LOGIT_STRIDE, np.float32)
        entry["prefix"] = pre
        cases.append(entry)
    manifest["cases"] = cases


# ----------------------------------------------------------------------------- video sessions


def run_session(kind, predictor, frames_dir, session, store, prefix, logit_stride, logit_dtype):
    import torch

    def out(key, frame_idx, obj_ids, video_res_masks):
        v = video_res_masks.detach().double().cpu().numpy()[:, 0]
        store.put(key + "_obj_ids", np.array(obj_ids, dtype=np.int64))
        store.put(key + "_frame_idx", np.array(frame_idx, dtype=np.int64))
        store.logits(key + "_logits", v, logit_stride, logit_dtype)
        store.masks(key + "_masks", v > 0, VID_MASK_STRIDE)

    def objscores(key, state):
        for oi, od in state["output_dict_per_obj"].items():
            for sk, tag in (("cond_frame_outputs", "cond"), ("non_cond_frame_outputs", "non_")):
                for f, o in sorted(od[sk].items()):
                    s = o["object_score_logits"].detach().double().cpu().numpy()
                    store.put(
                        f"{key}_objscore_o{oi}_{tag}_f{f:03d}",
                        s,
                        store=lambda a: a.astype(np.float32),
                    )

    with torch.no_grad():
        state = predictor.init_state(video_path=frames_dir)
    calls = []
    for c in session["calls"]:
        key = prefix + c["key"]
        rec = dict(c)
        with torch.no_grad():
            if c["op"] == "add_new_points_or_box":
                kw = {}
                if "points" in c:
                    kw["points"] = np.array(c["points"], dtype=np.float32)
                    kw["labels"] = np.array(c["labels"], dtype=np.int32)
                if "box" in c:
                    kw["box"] = np.array(c["box"], dtype=np.float32)
                if "clear_old_points" in c:
                    kw["clear_old_points"] = c["clear_old_points"]
                f, ids, m = predictor.add_new_points_or_box(
                    state, frame_idx=c["frame_idx"], obj_id=c["obj_id"], **kw
                )
                out(key, f, ids, m)
                rec["returns"] = {"frame_idx": int(f), "obj_ids": [int(i) for i in ids]}
            elif c["op"] == "add_new_mask":
                x0, y0, x1, y1 = c["rect"]
                mask = np.zeros((540, 960), dtype=bool)
                mask[y0:y1, x0:x1] = True
                store.put(key + "_input_mask", np.packbits(mask, axis=-1))
                f, ids, m = predictor.add_new_mask(
                    state, frame_idx=c["frame_idx"], obj_id=c["obj_id"], mask=mask
                )
                out(key, f, ids, m)
                rec["returns"] = {"frame_idx": int(f), "obj_ids": [int(i) for i in ids]}
            elif c["op"] == "propagate_in_video":
                kw = {
                    k: c[k]
                    for k in ("start_frame_idx", "max_frame_num_to_track", "reverse")
                    if k in c
                }
                yielded = []
                for f, ids, m in predictor.propagate_in_video(state, **kw):
                    out(f"{key}_f{f:03d}", f, ids, m)
                    yielded.append(int(f))
                rec["frames_yielded"] = yielded
                objscores(key, state)
            elif c["op"] == "remove_object":
                ids, _ = predictor.remove_object(state, c["obj_id"])
                rec["returns"] = {"obj_ids": [int(i) for i in ids]}
            elif c["op"] == "reset_state":
                predictor.reset_state(state)
            else:
                raise ValueError(c["op"])
        calls.append(rec)
        print(f"  {key} {c['op']} done", flush=True)
    return calls


def patch_memory_dtype(model):
    """P3: the memory (bfloat16 stored features, float32 pointers) is concatenated by the official
    code; when no pointer is in range it stays bfloat16 and the float32 projections fail on a CPU.
    Cast it to the query dtype, which is what type promotion gives whenever a pointer is present."""
    ma = model.memory_attention
    orig = ma.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0, **kw):
        dt = curr[0].dtype if isinstance(curr, list) else curr.dtype
        memory = memory.to(dt)
        if memory_pos is not None:
            memory_pos = memory_pos.to(dt)
        return orig(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens, **kw)

    ma.forward = forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(tiny_configs.MODELS))
    ap.add_argument("--official-src", required=True, help="folder holding the official package")
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--raw-out", default=None)
    ap.add_argument("--parts", default="image,video,variants")
    ap.add_argument("--sessions", default=None, help="comma list of sam2_video session names")
    args = ap.parse_args()

    import torch

    kind = args.model
    spec = tiny_configs.MODELS[kind]
    sys.path.insert(0, args.official_src)
    __import__(spec["package"])  # initialises the official hydra config module
    applied = patch_official(kind, args.dtype)
    if args.dtype == "float64":
        torch.set_default_dtype(torch.float64)
    out_dir = args.out or os.path.join(REPO, "tests", "fixtures", kind)
    os.makedirs(out_dir, exist_ok=True)
    shared = os.path.abspath(args.shared)
    parts = args.parts.split(",")
    t0 = time.time()

    ckpt = os.path.join(out_dir, f"{kind}_tiny.pt")
    if args.dtype == "float32":
        ck_info = make_checkpoint(kind, ckpt)
    else:
        ck_info = {}
    manifest = {
        "model": f"{kind}_tiny",
        "checkpoint": os.path.basename(ckpt),
        "checkpoint_sha256": sha256_file(ckpt),
        "reference": spec["reference"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "patches": [*applied, "P3"],
        "seed": spec["seed"],
        "storage": {
            "image_logit_stride": IMG_LOGIT_STRIDE,
            "image_mask_stride": IMG_MASK_STRIDE,
            "video_logit_stride": VID_LOGIT_STRIDE,
            "video_mask_stride": VID_MASK_STRIDE,
            "variant_logit_stride": EXTRA_LOGIT_STRIDE,
        },
    }
    if args.dtype == "float32":
        write_json(os.path.join(out_dir, "config.json"), {**ck_info, "seed": spec["seed"]})
    raw_all = {}

    if "image" in parts:
        model, _, _ = load_model(kind, ckpt, video=False, dtype=args.dtype)
        st = Store()
        run_images(kind, model, shared, st, manifest)
        write_npz(
            os.path.join(out_dir, "image_cases.npz"), st.arrays
        ) if args.dtype == "float32" else None
        raw_all.update(st.raw)
        print(f"images done {time.time() - t0:.0f}s", flush=True)

    vman = read_json(os.path.join(shared, "fixtures/sam2_video/manifest.json"))
    frames_dir = os.path.join(shared, "fixtures/sam2_video/frames")
    manifest["frames"] = {f: sha256_file(os.path.join(frames_dir, f)) for f in vman["frames"]}
    runs = []
    if "video" in parts:
        runs.append(
            (spec["main_attn"], [s["name"] for s in vman["sessions"]], VID_LOGIT_STRIDE, np.float16)
        )
    if "variants" in parts:
        for attn, names in spec["variant_sessions"]:
            runs.append((attn, names, EXTRA_LOGIT_STRIDE, np.float16))
    manifest["sessions"] = []
    for attn, names, stride, ldt in runs:
        predictor, _, _ = load_model(kind, ckpt, video=True, dtype=args.dtype, attn=attn)
        patch_memory_dtype(predictor)
        variant = attn.rsplit(".", 1)[-1]
        for s in vman["sessions"]:
            if s["name"] not in names or (
                args.sessions and s["name"] not in args.sessions.split(",")
            ):
                continue
            st = Store()
            tag = s["name"] if attn == spec["main_attn"] else f"{s['name']}__{variant}"
            print(f"session {tag}", flush=True)
            calls = run_session(kind, predictor, frames_dir, s, st, "", stride, ldt)
            fname = f"session_{tag}.npz"
            if args.dtype == "float32":
                write_npz(os.path.join(out_dir, fname), st.arrays)
            raw_all.update({f"{tag}/{k}": v for k, v in st.raw.items()})
            manifest["sessions"].append(
                {
                    "name": tag,
                    "session": s["name"],
                    "file": fname,
                    "cross_attention": attn,
                    "logit_stride": stride,
                    "calls": calls,
                }
            )
            print(f"  {time.time() - t0:.0f}s", flush=True)
    manifest["predictor_settings"] = {
        "binarize_mask_from_pts_for_mem_enc": True,
        "fill_hole_area": 0,
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    }
    if args.dtype == "float32":
        write_json(os.path.join(out_dir, "manifest.json"), manifest)
    if args.raw_out:
        np.savez_compressed(args.raw_out, **raw_all)
        write_json(args.raw_out + ".json", manifest)
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
