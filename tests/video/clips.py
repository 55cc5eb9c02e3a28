"""Small synthetic clips for the video tests: moving shapes, as arrays, a JPEG folder and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from samkit.video.formats import write_palette_png


def shape_masks(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The red square's and the blue disc's HxW bool masks on frame t."""
    yy, xx = np.mgrid[:h, :w]
    square = np.zeros((h, w), bool)
    x0, y0 = 4 + 3 * t, h // 4
    square[y0 : y0 + h // 3, x0 : x0 + h // 3] = True
    cx, cy, r = w - 12 - 2 * t, 3 * h // 4 - t, h // 6
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    return square, disc


def moving_shapes(n: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """n HxWx3 uint8 frames: a textured background, a red square and a blue disc moving."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.int16)
    base += rng.integers(-20, 21, base.shape, dtype=np.int16)
    frames = []
    for t in range(n):
        f = base.copy()
        square, disc = shape_masks(t, h, w)
        f[square] = (220, 30, 30)
        f[disc] = (30, 40, 230)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def shape_labels(t: int, h: int, w: int) -> np.ndarray:
    """HxW uint8 ids of frame t: 1 the square, 2 the disc (drawn last, so it wins)."""
    square, disc = shape_masks(t, h, w)
    lab = np.zeros((h, w), np.uint8)
    lab[square] = 1
    lab[disc] = 2
    return lab


def write_jpeg_folder(folder: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Write frames as `%05d.jpg`; return the frames as decoded back from the JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(frames):
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(f).save(p, quality=90)
        out.append(np.asarray(Image.open(p).convert("RGB")))
    return out


def encode_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264rgb",
    pix_fmt: str = "rgb24",
    options: dict[str, str] | None = None,
    rate: int = 10,
) -> Path:
    """Encode frames with PyAV (default: lossless H.264 RGB, qp 0)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = {"qp": "0"} if options is None else options
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_davis(root: Path, videos=("a", "b"), n: int = 4, h: int = 48, w: int = 64) -> Path:
    """A DAVIS-layout folder: JPEG frames of moving shapes and their exact palette annotations."""
    for v in videos:
        write_jpeg_folder(root / "JPEGImages" / v, moving_shapes(n=n, h=h, w=w))
        (root / "Annotations" / v).mkdir(parents=True)
        for i in range(n):
            write_palette_png(root / "Annotations" / v / f"{i:05d}.png", shape_labels(i, h, w))
    return root
