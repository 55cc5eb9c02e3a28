"""Video frames for SAM 3 exactly as the official video model loads them.

Official `sam3.model.io_utils.load_video_frames_from_image_folder` / `_load_img_as_tensor`
(sam3 0.1.4): PIL RGB -> `torchvision.transforms.functional.resize(pil, (R, R))` (PIL bilinear,
which filters when shrinking; aspect ratio not kept) -> `to_tensor` (/255) -> stored as
**float16**, then normalised in float16 with mean = std = 0.5. The detector casts a frame to its
own dtype when it runs. This differs from the SAM 3 image processor's transform (uint8 resize).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class Sam3Frames:
    """A clip's model inputs.

    Attributes:
        images: (T, 3, R, R) float16 normalised frames (values in [-1, 1]).
        video_height, video_width: the original frame size in pixels.
    """

    images: Tensor
    video_height: int
    video_width: int

    def __len__(self) -> int:
        return int(self.images.shape[0])


def frame_to_tensor(image: Image.Image, resolution: int = 1008) -> Tensor:
    """One frame: (3, R, R) float16, normalised as the official video loader does.

    Args:
        image: a PIL image (any mode; converted to RGB).
        resolution: model input side R (1008 for SAM 3).
    """
    if not isinstance(image, Image.Image):
        raise ValueError(f"a frame must be a PIL image, got {type(image).__name__}")
    rgb = image.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
    x = x.to(torch.float32).div(255.0).to(torch.float16)
    return (x - 0.5) / 0.5


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder, ordered by their integer stem (lexicographic otherwise).

    Raises:
        ValueError: not a folder, or no image file in it.
    """
    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"{d} is not a folder of frames (expected <index>.jpg files)")
    files = [p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTS)}) in {d}")
    try:
        files.sort(key=lambda p: int(p.stem))
    except ValueError:
        files.sort()
    return files


def load_frames(source: str | os.PathLike | list, resolution: int = 1008) -> Sam3Frames:
    """Load a frame folder or a list of PIL images / HxWx3 uint8 arrays.

    Raises:
        ValueError: an empty list, frames of different sizes, or an unreadable source.
    """
    if isinstance(source, (str, os.PathLike)):
        images = [Image.open(p) for p in list_frame_files(source)]
    elif isinstance(source, (list, tuple)):
        images = [f if isinstance(f, Image.Image) else _array_image(f) for f in source]
    else:
        raise ValueError(
            f"resource_path must be a frame folder or a list of frames, got {type(source).__name__}"
        )
    if not images:
        raise ValueError("the video has no frames")
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise ValueError(f"all frames must have one size, got {sorted(sizes)}")
    w, h = images[0].size
    out = torch.stack([frame_to_tensor(im, resolution) for im in images])
    return Sam3Frames(out, int(h), int(w))


def _array_image(a: object) -> Image.Image:
    arr = np.asarray(a)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"an array frame must be HxWx3 uint8, got {arr.shape} {arr.dtype}")
    return Image.fromarray(arr)
