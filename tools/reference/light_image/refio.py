"""Helpers for the MobileSAM / HQ-SAM recorders: weights, byte-reproducible writers, images.

The weight convention follows ../../../../shared/fixtures/README.md ("Weights"), with two additions
for modules that SAM 1 does not have (TinyViT's BatchNorm layers and attention-bias tables), so
that no code path is an identity or a constant by accident. All float tensors are then rounded to
float16 so that the checkpoint can be stored as float16 with exactly the values the reference ran.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import torch

PERTURB_SCALE = 0.02
DENSE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)


@torch.no_grad()
def perturb_and_round_(model: torch.nn.Module, seed: int) -> list[str]:
    """Make every parameter / buffer non-trivial, then round all floats to float16 values.

    Rules, drawn from `torch.Generator().manual_seed(seed + 1000003)` in state-dict order:
    * >=2-D `weight` of nn.Linear / nn.Conv2d / nn.ConvTranspose2d: kept (default init, random);
    * BatchNorm2d: weight += 0.2 N, bias += 0.1 N, running_mean = 0.1 N,
      running_var = exp(0.3 N) (positive); num_batches_tracked kept;
    * TinyViT `attention_biases` (zero-initialised): += 0.3 N;
    * every other float entry: += 0.02 N (LayerNorm, biases, embeddings, pos_embed, rel_pos, ...).
    Returns the keys that were changed.
    """
    dense, bn = set(), set()
    for name, mod in model.named_modules():
        p = name + "." if name else ""
        if isinstance(mod, DENSE) and mod.weight.dim() >= 2:
            dense.add(p + "weight")
        if isinstance(mod, torch.nn.BatchNorm2d):
            bn.add(name)
    g = torch.Generator().manual_seed(int(seed) + 1000003)
    changed = []
    for k, t in model.state_dict().items():
        if not torch.is_floating_point(t) or k in dense:
            continue
        n = torch.randn(t.shape, generator=g, dtype=torch.float32)
        owner, leaf = k.rsplit(".", 1)
        if owner in bn:
            if leaf == "weight":
                t.add_(0.2 * n)
            elif leaf == "bias":
                t.add_(0.1 * n)
            elif leaf == "running_mean":
                t.copy_(0.1 * n)
            elif leaf == "running_var":
                t.copy_(torch.exp(0.3 * n))
        elif leaf == "attention_biases":
            t.add_(0.3 * n)
        else:
            t.add_(PERTURB_SCALE * n)
        changed.append(k)
    for t in model.state_dict().values():
        if torch.is_floating_point(t):
            t.copy_(t.half().float())
    return changed


def state_dict_fp16(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The official `model.state_dict()` (same keys, same order) with floats stored as float16.

    Exact: `perturb_and_round_` already made every float value float16-representable.
    """
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if torch.is_floating_point(v):
            h = v.half()
            assert torch.equal(h.float(), v.float()), k
            v = h
        out[k] = v
    return out


def load_rgb(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB decoded with PIL (the shared fixtures' rule)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def sha256_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save_npz(path: str, arrays: dict) -> None:
    """np.savez_compressed, byte-reproducible (fixed timestamps, sorted keys), written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k in sorted(arrays):
            a = np.ascontiguousarray(np.asarray(arrays[k]))
            assert a.dtype != object, k
            b = io.BytesIO()
            np.lib.format.write_array(b, a, allow_pickle=False)
            zi = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, b.getvalue(), compresslevel=9)
    _write_atomic(path, buf.getvalue())


def save_json(path: str, obj) -> None:
    _write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def save_torch(path: str, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _write_atomic(path, buf.getvalue())


def _write_atomic(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
