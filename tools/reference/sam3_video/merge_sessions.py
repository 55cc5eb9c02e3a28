"""Merge sessions recorded separately (`record_sessions.py --sessions a,b --out DIR`) into the
fixture folder: their `session_<name>.npz` files are copied and their manifest entries replace
(or are appended to) the fixture manifest's, after checking that both runs used the same
checkpoint, frames, settings and patches.

Usage: python tools/reference/sam3_video/merge_sessions.py DIR [--into tests/fixtures/sam3_video]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

SAME = (
    "checkpoint",
    "frames",
    "frames_dir",
    "video_hw",
    "official_settings",
    "logit_stride",
    "mask_stride",
    "patches",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "tests", "fixtures", "sam3_video")
    ap.add_argument("--into", default=os.path.normpath(default))
    args = ap.parse_args()
    with open(os.path.join(args.src, "manifest.json")) as f:
        new = json.load(f)
    path = os.path.join(args.into, "manifest.json")
    with open(path) as f:
        old = json.load(f)
    for k in SAME:
        if new[k] != old[k]:
            raise SystemExit(f"{k} differs between the runs: not merged")
    names = [s["name"] for s in new["sessions"]]
    kept = [s for s in old["sessions"] if s["name"] not in names]
    old["sessions"] = kept + new["sessions"]
    for s in new["sessions"]:
        shutil.copyfile(os.path.join(args.src, s["file"]), os.path.join(args.into, s["file"]))
    with open(path + ".tmp", "w") as f:
        json.dump(old, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"merged {names} into {path}")


if __name__ == "__main__":
    main()
