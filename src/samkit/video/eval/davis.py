"""DAVIS-layout datasets: `JPEGImages/<video>/<frame>.jpg` + `Annotations/<video>/<frame>.png`.

The DAVIS 2017 release nests both under a resolution folder (`JPEGImages/480p/<video>`); that
layout is found automatically. Annotations are palette PNGs whose pixel values are object ids
(0 background, 255 void, treated as background as the DAVIS semi-supervised evaluation does).
A video's objects are the ids present in any of its annotations; each object is prompted on the
first annotated frame where it appears (frame 0 for DAVIS, later frames for YouTube-VOS / LVOS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from samkit.io.masks import read_label_png
from samkit.video.frames.folder import FRAME_SUFFIXES


@dataclass
class DavisVideo:
    """One video of a DAVIS-layout folder.

    Attributes:
        name: the video's folder name.
        frames_dir: its JPEG folder (pass it to `open_video` / `init_state`).
        frame_names: frame stems in frame-index order (sorted by integer value).
        annotations: `{frame index: annotation PNG}` for the frames that have one.
        height, width: frame size in pixels.
        object_ids: ids present in any annotation (sorted).
        first_frames: `{object id: the first annotated frame index where its mask is not empty}`
            (the frame it is prompted on; 0 for every DAVIS object).
    """

    name: str
    frames_dir: Path
    frame_names: list[str]
    annotations: dict[int, Path]
    height: int
    width: int
    object_ids: list[int] = field(default_factory=list)
    first_frames: dict[int, int] = field(default_factory=dict)

    @property
    def objects_appear_later(self) -> bool:
        """Whether some object first appears after frame 0 (the YouTube-VOS / LVOS case)."""
        return any(f > 0 for f in self.first_frames.values())

    def labels(self, frame_idx: int) -> np.ndarray:
        """The HxW uint8 id map of an annotated frame (void 255 -> 0).

        Raises:
            ValueError: the frame has no annotation, or its size is not the frames' size.
        """
        path = self.annotations.get(frame_idx)
        if path is None:
            raise ValueError(f"{self.name}: frame {frame_idx} has no annotation")
        lab = read_label_png(path)
        if lab.shape != (self.height, self.width):
            raise ValueError(
                f"{path}: annotation is {lab.shape[1]}x{lab.shape[0]} but the frames of "
                f"{self.name} are {self.width}x{self.height}"
            )
        return np.where(lab == 255, 0, lab).astype(np.uint8)


def _subdir(root: Path, name: str, resolution: str | None) -> Path:
    d = root / name
    if not d.is_dir():
        raise ValueError(f"{root}: not a DAVIS-layout folder (no {name}/ folder)")
    if resolution is not None:
        d = d / resolution
        if not d.is_dir():
            raise ValueError(f"{root}: no {name}/{resolution}/ folder")
    elif (d / "480p").is_dir():
        d = d / "480p"
    return d


def read_davis(
    root: str | os.PathLike, videos: list[str] | None = None, resolution: str | None = None
) -> list[DavisVideo]:
    """The videos of a DAVIS-layout folder, checked against their annotations.

    Args:
        root: the folder holding `JPEGImages/` and `Annotations/`.
        videos: video names to take (default: every video folder, sorted).
        resolution: a resolution subfolder (e.g. "480p"); default: "480p" when it exists, else none.

    Raises:
        ValueError: naming the folder or file: a missing folder, a video without frames or
            without annotations, an annotation with no frame of the same name, an annotation whose
            size differs from the frames', a video whose annotations hold no object.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder")
    img_root = _subdir(root, "JPEGImages", resolution)
    ann_root = _subdir(root, "Annotations", resolution)
    names = videos or sorted(p.name for p in img_root.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{img_root}: no video folders")
    out = []
    for name in names:
        fdir, adir = img_root / name, ann_root / name
        if not fdir.is_dir():
            raise ValueError(f"{fdir}: no such video folder")
        if not adir.is_dir():
            raise ValueError(f"{adir}: video {name} has frames but no annotation folder")
        frames = [p for p in fdir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
        if not frames:
            raise ValueError(f"{fdir}: no frames")
        bad = [p.name for p in frames if not p.stem.isdigit()]
        if bad:
            raise ValueError(f"{fdir}: frame files must be named <index>.jpg, found {bad[0]}")
        frames.sort(key=lambda p: int(p.stem))
        stems = [p.stem for p in frames]
        index = {s: i for i, s in enumerate(stems)}
        anns: dict[int, Path] = {}
        for a in sorted(adir.glob("*.png")):
            if a.stem not in index:
                raise ValueError(
                    f"{a}: annotation has no frame of the same name in {fdir} (frames "
                    f"{stems[0]}..{stems[-1]})"
                )
            anns[index[a.stem]] = a
        if not anns:
            raise ValueError(
                f"{adir}: video {name} has no annotation PNG (its objects are the prompts)"
            )
        with Image.open(frames[0]) as im:
            w, h = im.size
        video = DavisVideo(name, fdir, stems, anns, h, w)
        for t in sorted(anns):  # every annotation is read once here: sizes checked before tracking
            for i in np.unique(video.labels(t)):
                if i != 0 and int(i) not in video.first_frames:
                    video.first_frames[int(i)] = t
        video.object_ids = sorted(video.first_frames)
        if not video.object_ids:
            raise ValueError(f"{adir}: the annotations of {name} hold no object (all background)")
        out.append(video)
    return out
