"""Video segmentation outputs in the formats VOS tools read, written atomically.

- Palette PNGs (DAVIS / YouTube-VOS): one indexed PNG per frame, pixel value = object id (1..255),
  0 = background, with the DAVIS palette (the PASCAL VOC colour map). Where objects overlap the
  smaller id wins, as the official `sam2` `tools/vos_inference.py` writes them.
- YouTube-VIS style JSON (`annotations.json`): `videos`, `categories` and one annotation per
  object with per-frame lists `segmentations` (COCO RLE with string counts, pycocotools-readable),
  `areas`, `bboxes` (XYWH) and `object_scores` (the predictor's object score logit), each `null`
  on frames where the object is absent (empty mask) or was not tracked.

Every file goes through a temporary file in the same folder and a rename, so an interrupted run
leaves either the previous file or the complete new one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from samkit.io.masks import (  # noqa: F401 - the mask codec (palette PNGs, records), re-exported
    atomic_write_bytes,
    davis_palette,
    label_map,
    mask_record,
    palette_png_bytes,
    read_label_png,
    split_label_map,
    write_palette_png,
)


class VisRecorder:
    """Collects per-frame, per-object results and builds the YouTube-VIS style document.

    Holds one RLE string per (frame, object) with a non-empty mask (small: proportional to the
    boundary length), not the masks.

    Args:
        num_frames, height, width: the video's size.
        file_names: one name per frame for `videos[0].file_names` (default `%05d.jpg`).
    """

    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        file_names: Sequence[str] | None = None,
    ) -> None:
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        if file_names is not None and len(file_names) != self.num_frames:
            raise ValueError(f"file_names has {len(file_names)} names for {num_frames} frames")
        self.file_names = list(file_names or [f"{i:05d}.jpg" for i in range(self.num_frames)])
        self.tracks: dict[int, dict[int, Any]] = {}
        self.scores: dict[int, dict[int, float]] = {}

    def add(
        self,
        frame_idx: int,
        obj_ids: Sequence[int],
        masks: Any,
        object_scores: Sequence[float | None] | None = None,
    ) -> None:
        """Record frame `frame_idx`: (O, H, W) bool masks of `obj_ids`, optional score logits."""
        if not 0 <= int(frame_idx) < self.num_frames:
            raise ValueError(f"frame {frame_idx} is outside the video (0..{self.num_frames - 1})")
        m = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.shape != (len(obj_ids), self.height, self.width):
            raise ValueError(
                f"frame {frame_idx}: masks of shape {m.shape}, expected "
                f"({len(obj_ids)}, {self.height}, {self.width})"
            )
        for i, oid in enumerate(obj_ids):
            self.tracks.setdefault(int(oid), {})[int(frame_idx)] = mask_record(m[i])
            if object_scores is not None and object_scores[i] is not None:
                self.scores.setdefault(int(oid), {})[int(frame_idx)] = float(object_scores[i])

    def document(self, video_name: str = "video", category: str = "object") -> dict[str, Any]:
        """The YouTube-VIS style dict (one video, one category, one annotation per object)."""
        video = {
            "id": 1,
            "name": video_name,
            "width": self.width,
            "height": self.height,
            "length": self.num_frames,
            "file_names": [f"{video_name}/{n}" for n in self.file_names],
        }
        annotations = []
        for ann_id, oid in enumerate(sorted(self.tracks), start=1):
            frames = self.tracks[oid]
            recs = [frames.get(t) for t in range(self.num_frames)]
            scores = self.scores.get(oid, {})
            present = [1 / (1 + math.exp(-scores[t])) for t in frames if frames[t] and t in scores]
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": 1,
                    "object_id": oid,
                    "category_id": 1,
                    "iscrowd": 0,
                    "height": self.height,
                    "width": self.width,
                    "length": 1,
                    "segmentations": [r[0] if r else None for r in recs],
                    "areas": [r[1] if r else None for r in recs],
                    "bboxes": [r[2] if r else None for r in recs],
                    "object_scores": [scores.get(t) for t in range(self.num_frames)],
                    "score": float(np.mean(present)) if present else None,
                    "tracked_frames": sorted(frames),
                }
            )
        return {
            "info": {"description": "samkit track (SAM 2 video predictor)"},
            "videos": [video],
            "categories": [{"id": 1, "name": category, "supercategory": category}],
            "annotations": annotations,
        }

    def write(self, path: str | os.PathLike, video_name: str = "video") -> dict[str, Any]:
        """Write `document(video_name)` as JSON (atomically) and return it."""
        doc = self.document(video_name)
        atomic_write_bytes(path, (json.dumps(doc) + "\n").encode())
        return doc
