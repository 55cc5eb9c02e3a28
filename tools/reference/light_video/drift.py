"""Drift table between two raw recordings of record.py (float32 vs float64, or two thread counts).

usage: python3 tools/reference/light_video/drift.py RAW_A.npz RAW_B.npz
Prints, per kind of output, the largest absolute difference over the keys both files hold, and the
fraction of flipped mask pixels. Logits equal to -1024 (NO_OBJ_SCORE) in both are compared as is.
"""

from __future__ import annotations

import re
import sys

import numpy as np


def kind(key: str) -> str:
    k = key.split("/", 1)[-1]
    for pat, name in (
        (r"_objscore_", "object_score_logits"),
        (r"low_res_logits(_\d)?$", "image low_res_logits"),
        (r"iou_predictions", "image iou_predictions"),
        (r"image_embed_stride2", "image_embed (sampled)"),
        (r"high_res_feats_\d_stride", "high_res_feats (sampled)"),
        (r"_chan_(mean|std)$", "feature channel statistics"),
        (r"^case_.*/logits$", "image full-res logits"),
        (r"_absmax$", "absmax"),
        (r"_logits$", "video logits"),
        (r"_masks(_\d)?$", "masks"),
    ):
        if re.search(pat, key if pat.startswith("^") else k):
            return name
    return "other"


def main() -> None:
    a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
    keys = sorted(set(a.files) & set(b.files))
    print(f"{len(keys)} common keys ({len(a.files)} / {len(b.files)})")
    worst: dict[str, tuple[float, str]] = {}
    flips = [0, 0]
    for k in keys:
        x, y = a[k], b[k]
        if x.shape != y.shape:
            print("shape differs", k, x.shape, y.shape)
            continue
        kd = kind(k)
        if kd == "masks":
            flips[0] += int((x != y).sum())
            flips[1] += x.size
            continue
        if x.dtype.kind not in "fc":
            if not np.array_equal(x, y):
                print("differs", k)
            continue
        d = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) if x.size else 0.0
        if d >= worst.get(kd, (-1.0, ""))[0]:
            worst[kd] = (d, k)
    for kd, (d, k) in sorted(worst.items()):
        print(f"{kd:32s} max|diff| {d:.3g}   ({k})")
    print(f"masks (sampled pixels): {flips[0]} of {flips[1]} differ")


if __name__ == "__main__":
    main()
