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
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samkit.io.masks import atomic_write_bytes, masks_to_coco_rle


def davis_palette() -> np.ndarray:
    """(256, 3) uint8: the DAVIS / PASCAL VOC palette (id 1 dark red, 2 green, 3 olive, ...)."""
    ids = np.arange(256)
    pal = np.zeros((256, 3), np.int64)
    for j in range(8):
        for ch in range(3):
            pal[:, ch] |= ((ids >> (3 * j + ch)) & 1) << (7 - j)
    return pal.astype(np.uint8)


def label_map(masks: Any, obj_ids: Sequence[int]) -> np.ndarray:
    """Merge per-object masks into an HxW uint8 id map (smaller ids win where masks overlap).

    Args:
        masks: (O, H, W) bool-like masks (a torch tensor or an array; logits must be
            thresholded first).
        obj_ids: the O object ids, each in 1..255.
    """
    m = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != len(obj_ids):
        raise ValueError(
            f"masks must be (O, H, W) with O = len(obj_ids) = {len(obj_ids)}, got {m.shape}"
        )
    out = np.zeros(m.shape[1:], np.uint8)
    for i in sorted(range(len(obj_ids)), key=lambda k: -int(obj_ids[k])):
        oid = int(obj_ids[i])
        if not 1 <= oid <= 255:
            raise ValueError(f"object id {oid} cannot be stored in a palette PNG (1..255)")
        out[m[i].astype(bool)] = oid
    return out


def palette_png_bytes(labels: np.ndarray) -> bytes:
    """An indexed PNG with the DAVIS palette of an HxW uint8 id map."""
    import io

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be an HxW uint8 array, got {labels.dtype} {labels.shape}")
    im = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    im.putpalette(davis_palette().tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_palette_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write an id map as a DAVIS palette PNG (atomically)."""
    return atomic_write_bytes(path, palette_png_bytes(labels))


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """An annotation PNG as an HxW uint8 id map (palette "P" or grayscale "L" PNGs).

    Raises:
        ValueError: naming the file when it is unreadable or an RGB / other-mode image.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(
                    f"{path}: an annotation must be an indexed (palette) or grayscale PNG whose "
                    f"pixel values are object ids, got mode {im.mode}"
                )
            return np.array(im, dtype=np.uint8)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable PNG ({e})") from None


def split_label_map(labels: np.ndarray, ignore: Sequence[int] = (0, 255)) -> dict[int, np.ndarray]:
    """`{object_id: HxW bool mask}` for the ids present (0 background and 255 void skipped)."""
    ids = [int(i) for i in np.unique(labels) if int(i) not in ignore]
    return {i: labels == i for i in ids}


def mask_record(mask: np.ndarray) -> tuple[dict[str, Any], int, list[int]] | None:
    """(COCO RLE, area, XYWH box) of an HxW bool mask, or None when it is empty.

    The box uses the COCO convention (width = last column - first column + 1).
    """
    m = np.asarray(mask).astype(bool)
    area = int(np.count_nonzero(m))
    if area == 0:
        return None
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    box = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    rle = masks_to_coco_rle(m[None])[0]
    return rle, area, box


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
