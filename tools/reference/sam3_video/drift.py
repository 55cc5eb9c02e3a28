"""float32 vs float64 drift of the recorded SAM 3 video sessions (the fixture README's tolerance table).

usage: python3 drift.py RAW32.npz RAW64.npz [--fixtures tests/fixtures/sam3_video] [--json OUT]
RAW32 / RAW64: `record_sessions.py --raw-out` of the float32 (fixture) run and of the `--dtype float64`
run. Integer / bool arrays (ids, NMS keep, masks) of the float32 run are read from the fixtures.
Needs only numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def quantity(key: str) -> str:
    """'c02_e03_trk_mask_logits' -> 'trk_mask_logits'; 'c02_f001_probs' -> 'probs'."""
    return re.sub(r"^c\d\d_(e\d\d_|f\d\d\d_)", "", key)


def decisions(manifest: dict) -> list:
    """The discrete part of every call: yielded frames, ids, and the events without float fields."""
    out = []
    for s in manifest["sessions"]:
        for c in s["calls"]:
            evs = [
                {k: v for k, v in e.items() if k not in ("obj_id_to_score",)}
                for e in c.get("events", [])
            ]
            out.append((s["name"], c["key"], c.get("frames_yielded"), c.get("outputs"), evs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw32")
    ap.add_argument("raw64")
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures", "sam3_video"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    r32 = dict(np.load(args.raw32, allow_pickle=False))
    r64 = dict(np.load(args.raw64, allow_pickle=False))
    with open(os.path.join(args.fixtures, "manifest.json")) as f:
        man32 = json.load(f)
    with open(args.raw64 + ".json") as f:
        man64 = json.load(f)
    for s in man32["sessions"]:
        with np.load(os.path.join(args.fixtures, s["file"]), allow_pickle=False) as z:
            for k in z.files:
                if z[k].dtype.kind != "f":
                    r32.setdefault(f"{s['name']}/{k}", z[k])
    both = {s["name"] for s in man64["sessions"]}  # a float64 run may cover a subset (--sessions)
    same_decisions = decisions(
        {"sessions": [s for s in man32["sessions"] if s["name"] in both]}
    ) == decisions(man64)
    r32 = {k: v for k, v in r32.items() if k.split("/", 1)[0] in both}
    rows: dict[str, dict] = defaultdict(
        lambda: {"max_abs": 0.0, "max_ref": 0.0, "n": 0, "unequal": 0}
    )
    missing = sorted(set(r32) ^ set(r64))
    for k in sorted(set(r32) & set(r64)):
        a, b = r32[k], r64[k]
        q = quantity(k.split("/", 1)[1])
        row = rows[q]
        row["n"] += 1
        if a.shape != b.shape:
            row["unequal"] += 1
            continue
        if a.dtype.kind == "f":
            if a.size:
                row["max_abs"] = max(row["max_abs"], float(np.abs(a - b).max()))
                row["max_ref"] = max(row["max_ref"], float(np.abs(b).max()))
        elif q == "masks_s2":
            ua, ub = np.unpackbits(a, axis=-1), np.unpackbits(b, axis=-1)
            row["max_abs"] = max(
                row["max_abs"], float((ua != ub).reshape(len(ua), -1).sum(-1).max(initial=0))
            )
            row["max_ref"] = max(
                row["max_ref"], float(ua.reshape(len(ua), -1).sum(-1).max(initial=0))
            )
        elif q == "mask_areas":
            row["max_abs"] = max(row["max_abs"], float(np.abs(a - b).max(initial=0)))
            row["max_ref"] = max(row["max_ref"], float(np.abs(b).max(initial=0)))
        else:
            row["unequal"] += int(not np.array_equal(a, b))
    print(f"decisions (ids, yielded frames, association / plan events) identical: {same_decisions}")
    print(f"keys only in one run: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    print(f"{'quantity':28s} {'arrays':>6s} {'max|d|':>10s} {'max|ref|':>10s} unequal")
    for q, r in sorted(rows.items()):
        print(f"{q:28s} {r['n']:6d} {r['max_abs']:10.3e} {r['max_ref']:10.3e} {r['unequal']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"same_decisions": same_decisions, "missing": missing, "rows": rows}, f, indent=1
            )


if __name__ == "__main__":
    main()
