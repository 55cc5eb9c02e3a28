"""Image files of every format samkit reads, each with the 8-bit RGB picture it must decode to.

Written with PIL and numpy (16-bit colour PNG / TIFF, which PIL cannot write, by the small
writers below), from one content picture (the shapes fixture, shrunk), so every entry point can be
checked against the same expected arrays.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import FIXTURES

ORIENTATION = 0x0112  # EXIF tag; 6 = "rotate 90 degrees clockwise to display"


def content(size: tuple[int, int] = (96, 72)) -> np.ndarray:
    """The HxWx3 uint8 content picture (the shapes fixture at `size` = (W, H))."""
    with Image.open(FIXTURES / "sam1_shapes" / "shapes_1.png") as im:
        return np.array(im.convert("RGB").resize(size, Image.Resampling.BILINEAR))


def stretch_reference(values: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """The documented percentile stretch, written out independently of samkit."""
    x = values.astype(np.float64)
    a, b = np.percentile(x, [lo, hi])
    return np.round(np.clip((x - a) / (b - a), 0, 1) * 255 + 1e-9).astype(np.uint8)


def png16(values: np.ndarray, exif_orientation: int | None = None) -> bytes:
    """A 16-bit PNG of an HxWxC uint16 array (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), rows
    cycling through the None, Sub and Up filters so the decoder's unfiltering is exercised."""
    a = np.asarray(values, np.uint16)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w * c * 2)
    bpp = 2 * c
    raw = bytearray()
    for y in range(h):
        kind = y % 3
        row = rows[y].astype(np.int64)
        if kind == 1:  # Sub
            left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
            filtered = (row - left) % 256
        elif kind == 2:  # Up
            filtered = (row - rows[y - 1].astype(np.int64)) % 256
        else:
            filtered = row
        raw += bytes([kind]) + filtered.astype(np.uint8).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    out = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    )
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = exif_orientation
        out += chunk(b"eXIf", exif.tobytes()[6:])  # without the JPEG "Exif\0\0" prefix
    return out + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def tiff16(values: np.ndarray, big_endian: bool = False, orientation: int | None = None) -> bytes:
    """An uncompressed baseline TIFF of an HxWxC uint16 array (C = 1, 3 or 4 with alpha)."""
    a = np.asarray(values, np.uint16)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    e = ">" if big_endian else "<"
    data = a.astype(e + "u2").tobytes()
    bps = struct.pack(e + "H" * c, *([16] * c))
    data_off = 8 + len(bps) + len(bps) % 2
    ifd_off = data_off + len(data)
    entries = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, c, 8 if c > 2 else 16),
        (259, 3, 1, 1),
        (262, 3, 1, 2 if c >= 3 else 1),
        (273, 4, 1, data_off),
        (277, 3, 1, c),
        (278, 4, 1, h),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
    ]
    if orientation is not None:
        entries.append((274, 3, 1, orientation))
    if c == 4:
        entries.append((338, 3, 1, 2))  # unassociated alpha
    out = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", ifd_off)
    out += bps + b"\x00" * (data_off - 8 - len(bps)) + data + struct.pack(e + "H", len(entries))
    for tag, typ, count, value in sorted(entries):
        if typ == 3 and count == 1:
            out += struct.pack(e + "HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack(e + "HHII", tag, typ, count, value)
    return out + struct.pack(e + "I", 0)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[:, :, None], 3, axis=2)


@dataclass
class Case:
    """An encoded file, the picture it must decode to, and how to decode it."""

    name: str
    suffix: str
    data: bytes
    expected: np.ndarray  # HxWx3 uint8
    stretch: bool = False
    atol: int = 0  # lossy formats (JPEG)
    frames_warning: bool = False

    def write(self, folder: Path, stem: str | None = None) -> Path:
        path = folder / f"{stem or self.name}{self.suffix}"
        path.write_bytes(self.data)
        return path


def cases() -> list[Case]:
    """Every supported kind of file, with its expected 8-bit picture."""
    pic = content()
    h, w = pic.shape[:2]
    rng = np.random.default_rng(0)
    grey = pic[:, :, 1].copy()
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    # 16-bit data whose high byte is the picture and whose low byte is noise
    rgb16 = pic.astype(np.uint16) << 8 | rng.integers(0, 256, pic.shape, dtype=np.uint16)
    grey16 = rgb16[:, :, 1]
    alpha16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    # low contrast: the picture in a 2048-wide band at the bottom of the 16-bit range
    dim16 = (1000 + pic.astype(np.uint16) * 8 + rng.integers(0, 8, pic.shape)).astype(np.uint16)
    unit = (pic / 255.0).astype(np.float32)
    out: list[Case] = []

    def add(name: str, suffix: str, data: bytes, expected: np.ndarray, **kw) -> None:
        assert expected.max() <= 255 and expected.shape[2] == 3
        out.append(Case(name, suffix, data, np.ascontiguousarray(expected, np.uint8), **kw))

    add("rgb8_png", ".png", _save(Image.fromarray(pic), "PNG"), pic)
    add("rgba8_png", ".png", _save(Image.fromarray(np.dstack([pic, alpha]), "RGBA"), "PNG"), pic)
    add("l8_png", ".png", _save(Image.fromarray(grey), "PNG"), _grey3(grey))
    add(
        "la8_png",
        ".png",
        _save(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG"),
        _grey3(grey),
    )
    pal = Image.fromarray(pic).quantize(32, dither=Image.Dither.NONE)
    pal_rgb = np.array(pal.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)[np.array(pal)]
    add("p_transparency_png", ".png", _save(pal, "PNG", transparency=0), pal_rgb)
    add("p_transparency_gif", ".gif", _save(pal, "GIF", transparency=0), pal_rgb)
    add("rgb8_jpeg", ".jpg", _save(Image.fromarray(pic), "JPEG", quality=95), pic, atol=40)
    add(
        "cmyk_jpeg",
        ".jpg",
        _save(Image.fromarray(pic).convert("CMYK"), "JPEG", quality=95),
        pic,
        atol=40,
    )
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    add("exif6_png", ".png", _save(Image.fromarray(pic), "PNG", exif=exif), np.rot90(pic, -1))
    add("grey16_png", ".png", _save(Image.fromarray(grey16), "PNG"), _grey3(grey16 >> 8))
    add("grey16_tiff", ".tif", _save(Image.fromarray(grey16), "TIFF"), _grey3(grey16 >> 8))
    add("grey16_be_tiff", ".tif", tiff16(grey16, big_endian=True), _grey3(grey16 >> 8))
    add(
        "grey16_exif6_png",
        ".png",
        _save(Image.fromarray(grey16), "PNG", exif=exif),
        np.rot90(_grey3(grey16 >> 8), -1),
    )
    add("greyalpha16_png", ".png", png16(np.dstack([grey16, alpha16])), _grey3(grey16 >> 8))
    add("rgb16_png", ".png", png16(rgb16), rgb16 >> 8)
    add("rgba16_png", ".png", png16(np.dstack([rgb16, alpha16])), rgb16 >> 8)
    add("rgb16_tiff", ".tif", tiff16(rgb16), rgb16 >> 8)
    add("rgb16_be_tiff", ".tif", tiff16(rgb16, big_endian=True), rgb16 >> 8)
    add("rgba16_tiff", ".tif", tiff16(np.dstack([rgb16, alpha16])), rgb16 >> 8)
    add(
        "grey16_dim_png_stretch",
        ".png",
        png16(dim16[:, :, 1]),
        _grey3(stretch_reference(dim16[:, :, 1])),
        stretch=True,
    )
    add("rgb16_dim_png_stretch", ".png", png16(dim16), stretch_reference(dim16), stretch=True)
    add(
        "rgb16_dim_exif6_png_stretch",
        ".png",
        png16(dim16, exif_orientation=6),
        np.rot90(stretch_reference(dim16), -1),
        stretch=True,
    )
    add(
        "rgb16_dim_tiff_stretch",
        ".tif",
        tiff16(dim16, orientation=6),
        np.rot90(stretch_reference(dim16), -1),
        stretch=True,
    )
    add("float_unit_tiff", ".tif", _save(Image.fromarray(unit[:, :, 1]), "TIFF"), _grey3(grey))
    wide = unit[:, :, 1] * 4000.0 - 300.0
    add(
        "float_wide_tiff_stretch",
        ".tif",
        _save(Image.fromarray(wide), "TIFF"),
        _grey3(stretch_reference(wide)),
        stretch=True,
    )
    int32 = grey16.astype(np.int32)
    add("int32_tiff", ".tif", _save(Image.fromarray(int32), "TIFF"), _grey3(grey16 >> 8))
    second = Image.fromarray(255 - pic)
    add(
        "multipage_tiff",
        ".tif",
        _save(Image.fromarray(pic), "TIFF", save_all=True, append_images=[second]),
        pic,
        frames_warning=True,
    )
    frame2 = second.quantize(32, dither=Image.Dither.NONE)
    add(
        "animated_gif",
        ".gif",
        _save(pal, "GIF", save_all=True, append_images=[frame2], duration=100, loop=0),
        pal_rgb,
        frames_warning=True,
    )
    return out


def refused() -> list[tuple[str, str, bytes, str]]:
    """Files the fixed rule cannot place: (name, suffix, data, what the error must say)."""
    g = content()[:, :, 1].astype(np.float32)
    nan = g / 255.0
    nan[3, 4] = np.nan
    return [
        ("float_wide_tiff", ".tif", _save(Image.fromarray(g * 10.0), "TIFF"), "stretch"),
        ("float_nan_tiff", ".tif", _save(Image.fromarray(nan), "TIFF"), "NaN"),
        (
            "int32_wide_tiff",
            ".tif",
            _save(Image.fromarray(g.astype(np.int32) * 1000), "TIFF"),
            "stretch",
        ),
    ]
