"""Reading image files and arrays into the HxWx3 uint8 RGB picture every samkit model takes.

One decoder for every entry point: the CLI (`segment`, `auto`, `embed`), the web app's upload, the
fine-tuning datasets, the examples, and (through `samkit.predict.inputs.as_rgb_uint8`) the Python API's
`set_image` / `generate`. numpy + PIL only (no torch), so the onnxruntime backends share it.

The rule, for files and arrays alike:

- **8-bit** data (PIL modes 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, ...; uint8 arrays) is used
  as is. Alpha is dropped, keeping the colour under transparent pixels, as OpenCV's `imread`
  (which the official SAM examples use) does; a palette image with transparency is expanded
  through its palette the same way. Greyscale is repeated into R, G and B; CMYK JPEG goes
  through PIL's CMYK -> RGB conversion (Adobe-inverted files included).
- **16-bit** data (PNG / TIFF greyscale, RGB, RGBA; uint16 arrays) is reduced to 8 bits by a
  right shift of 8 (`v >> 8`), as libpng's `strip_16`, and so OpenCV's `imread`, does; PIL's own
  `convert("RGB")` clips every value above 255 to white instead. With `stretch=(lo, hi)`
  percentiles, the data is stretched instead (see below), at full 16-bit precision.
- **32-bit float** data (TIFF mode F; float arrays) must be finite. Values all within [0, 1] are
  scaled by 255 and rounded; any other range is a `ValueError` that suggests the stretch (or
  dividing by the data's maximum), because there is no safe guess of its white point.
- **Other integer** data (PIL mode I, int16/int32/int64/uint32 arrays): values within [0, 255]
  are used as 8-bit; else, within [0, 65535], read as 16-bit (older Pillow opens 16-bit PNGs as
  mode I); anything else is a `ValueError` that suggests the stretch.
- **Stretch** (`stretch=(lo, hi)` percentiles, e.g. `PERCENTILE_STRETCH` = (0.5, 99.5); the
  CLI's `--stretch`): the lo-th and hi-th percentiles of all colour values (alpha excluded, all
  channels together so colours keep their balance) map to 0 and 255, linearly, clipped outside.
  Any numeric input; a flat image (hi percentile = lo percentile) comes out black. Low-contrast
  microscopy needs this.
- Multi-page TIFF and animated GIF / PNG / WebP: the first frame, with a `UserWarning`.
- EXIF orientation is applied (`PIL.ImageOps.exif_transpose`).
- **Size**: a file of more than `max_pixels` pixels (width x height, read from the header before
  any pixel is decoded; default `DEFAULT_MAX_PIXELS`) is refused with an `ImageDecodeError` that
  names the CLI's `--max-pixels N` and the keyword `max_pixels=N`. This check replaces Pillow's
  own decompression-bomb guard (`PIL.Image.MAX_IMAGE_PIXELS`, about 89 megapixels), which would
  refuse a 12000 x 9000 picture with no way around it: Pillow's guard is lifted while a file is
  opened (and decoded, for files above it), under a lock, and restored.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from samkit.io.limits import DEFAULT_MAX_PIXELS, PERCENTILE_STRETCH, check_max_pixels

# Formats the app and CLI decode; anything else is "not an image" (no exotic parsers).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm")
__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "PERCENTILE_STRETCH",
    "ImageDecodeError",
    "array_to_rgb_uint8",
    "decode_image",
    "pil_to_array",
    "to_rgb",
    "to_uint8",
]

_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_HINT = (
    "map the 0.5th..99.5th percentiles to 0..255 with "
    "samkit.io.images.array_to_rgb_uint8(x, stretch=(0.5, 99.5)) and pass its result (CLI: "
    "--stretch), or convert the data to uint8 yourself"
)


class ImageDecodeError(ValueError):
    """The data is not a decodable image, or it is too large (decompression bomb)."""


def _check_stretch(stretch: Any) -> tuple[float, float] | None:
    if stretch is None or stretch is False:
        return None
    if stretch is True:
        return PERCENTILE_STRETCH
    try:
        lo, hi = (float(v) for v in stretch)
    except (TypeError, ValueError):
        raise ValueError(
            f"stretch must be None, True or (lo, hi) percentiles, got {stretch!r:.60}"
        ) from None
    if not (0.0 <= lo < hi <= 100.0):
        raise ValueError(f"stretch percentiles must satisfy 0 <= lo < hi <= 100, got ({lo}, {hi})")
    return lo, hi


def _stretch(values: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    x = values.astype(np.float64, copy=False)
    lo, hi = np.percentile(x, [lo_pct, hi_pct])
    scaled = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.floor(np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_uint8(values: np.ndarray, stretch: Any = None) -> np.ndarray:
    """Reduce numeric image data to uint8 by the module's rule (same shape, no channel changes).

    Args:
        values: an image array of any real dtype (uint8, uint16, other ints, floats).
        stretch: None for the fixed rule (uint16 `>> 8`, float in [0, 1] `* 255`), or (lo, hi)
            percentiles (True = `PERCENTILE_STRETCH`) to stretch linearly onto 0..255.

    Returns:
        A uint8 array of the same shape (the input itself when it is uint8 and not stretched).

    Raises:
        ValueError: non-numeric or bool data, NaN / infinite values, an empty array, or values
            the fixed rule cannot place (floats outside [0, 1], ints outside [0, 65535]).
    """
    pct = _check_stretch(stretch)
    a = np.asarray(values)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or a.dtype.kind == "f"):
        raise ValueError(
            f"expected image data of a numeric dtype (uint8, uint16, float), got dtype {a.dtype}"
        )
    if a.size == 0:
        raise ValueError(f"the image is empty (shape {a.shape})")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError("the float image contains NaN or infinite values; expected finite values")
    if pct is not None:
        return _stretch(a, *pct)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    lo, hi = a.min(), a.max()
    if a.dtype.kind == "f":
        if lo < 0 or hi > 1:
            raise ValueError(
                f"a float image must hold values in [0, 1] (scaled by 255); this one spans "
                f"[{float(lo):.6g}, {float(hi):.6g}]: {_HINT}"
            )
        return np.floor(a.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return (a.astype(np.uint16) >> 8).astype(np.uint8)
    raise ValueError(
        f"an integer image must hold values in [0, 255] (8-bit) or [0, 65535] (16-bit); this "
        f"{a.dtype} one spans [{int(lo)}, {int(hi)}]: {_HINT}"
    )


def to_rgb(values: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 (grey), HxWx3 or HxWx4 (RGBA) -> HxWx3 (alpha dropped)."""
    a = np.asarray(values)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape HxW or HxWx{{1,3,4}}, got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {a.shape})")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    return a[:, :, :3]


def array_to_rgb_uint8(values: np.ndarray, stretch: Any = None) -> np.ndarray:
    """An image array of any supported shape and dtype -> contiguous HxWx3 uint8 RGB.

    Channels first (`to_rgb`: alpha never enters a stretch), then `to_uint8`'s rule.
    """
    return np.ascontiguousarray(to_uint8(to_rgb(values), stretch))


def _swap_16bit_rawmode(tile: Any) -> Any:
    """The same tile decoding the other byte of each 16-bit sample (16B <-> 16L rawmode)."""
    args = tile.args
    raw = args[0] if isinstance(args, tuple) else args
    swapped = raw.replace(";16B", ";16X").replace(";16L", ";16B").replace(";16X", ";16L")
    return tile._replace(args=(swapped, *args[1:]) if isinstance(args, tuple) else swapped)


def _colour16_low_bytes(img: Image.Image, reopen: Any) -> Image.Image | None:
    """For a 16-bit RGB / RGBA PNG or TIFF (which PIL holds as 8-bit RGB(A): the high bytes), the
    low bytes as a second image of the same mode, decoded by PIL's own decoder with the other
    byte's rawmode; None for any other image."""
    tiles = getattr(img, "tile", None) or []
    if img.mode not in ("RGB", "RGBA") or len(tiles) != 1:
        return None
    args = tiles[0].args
    raw = args[0] if isinstance(args, tuple) and args else args
    if not isinstance(raw, str) or raw not in (f"{img.mode};16B", f"{img.mode};16L"):
        return None
    low = reopen()
    low.tile = [_swap_16bit_rawmode(t) for t in low.tile]
    low.load()
    return low


def pil_to_array(img: Image.Image, source_format: str | None = None) -> np.ndarray:
    """A loaded PIL image as an array in its own depth: uint8 HxWx3 (8-bit modes), uint16 HxW
    (I;16*, and mode I from a PNG, which can only be 16-bit: older Pillow opens 16-bit PNGs as
    I), int32 HxW (other I), float32 HxW (F). EXIF orientation is not applied here.

    Args:
        img: the image.
        source_format: the file format (`img.format` before any transpose), if known.
    """
    if img.mode in _16BIT_MODES or (
        img.mode == "I" and (source_format or getattr(img, "format", None)) == "PNG"
    ):
        return np.asarray(img).astype(np.uint16)
    if img.mode in ("I", "F"):
        return np.asarray(img)
    if img.mode in ("P", "PA") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")  # through the palette / colour key; alpha dropped below
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV, RGBX, ...
    a = np.asarray(img)
    return to_rgb(a[:, :, 0] if img.mode == "LA" else a)


def _open_error(name: str, e: Exception) -> ImageDecodeError:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageDecodeError(f"{name} is too large to decode safely: {e}")
    if isinstance(e, Image.UnidentifiedImageError):
        return ImageDecodeError(
            f"{name} is not an image in a supported format ({', '.join(IMAGE_FORMATS)})"
        )
    return ImageDecodeError(f"{name} is not a readable image ({type(e).__name__}: {e})")


_PILLOW_GUARD_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_guard_lifted() -> Iterator[int | None]:
    """Pillow's decompression-bomb guard off (`PIL.Image.MAX_IMAGE_PIXELS = None`) while held;
    yields the value it had. A process-wide setting: lifted under a lock and always restored."""
    with _PILLOW_GUARD_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield saved
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def too_large_message(name: str, width: int, height: int, max_pixels: int) -> str:
    """The refusal of an image over the pixel limit; it names the way to allow it."""
    return (
        f"{name} is too large: {width}x{height} = {width * height:,} pixels, over the limit "
        f"of {max_pixels:,} pixels (decompression bomb protection); pass --max-pixels N "
        "(Python: max_pixels=N) to allow it"
    )


def decode_image(
    source: bytes | str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stretch: Any = None,
) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB by the module's rule, applying EXIF orientation.

    The pixel count is checked from the header before any pixel is decoded; Pillow's own
    decompression-bomb guard does not apply (see the module docstring), so any size up to
    `max_pixels` decodes.

    Args:
        source: encoded bytes, or a file path.
        max_pixels: refuse images with more pixels (width x height) than this positive integer
            (the CLI's `--max-pixels`; default `DEFAULT_MAX_PIXELS`, 64,000,000).
        stretch: None (16-bit `>> 8`, float in [0, 1] `* 255`) or (lo, hi) percentiles (True =
            `PERCENTILE_STRETCH`) to stretch onto 0..255.

    Raises:
        ValueError: `max_pixels` is not a positive integer, or `stretch` is malformed.
        ImageDecodeError (a ValueError): not an image in a supported format, truncated, over
            `max_pixels` (the message says "pass --max-pixels N (Python: max_pixels=N)"), or
            float / integer data the fixed rule cannot place (use `stretch`).
        FileNotFoundError: no file at `source` (the message names the path, no errno).
    """
    limit = check_max_pixels(max_pixels)
    pct = _check_stretch(stretch)
    if isinstance(source, bytes):
        name = "the upload"

        def reopen() -> Image.Image:
            return Image.open(io.BytesIO(source), formats=IMAGE_FORMATS)
    else:
        name = str(source)

        def reopen() -> Image.Image:
            return Image.open(Path(source), formats=IMAGE_FORMATS)

    try:
        with _pillow_guard_lifted() as pillow_limit:  # reads the header only
            img = reopen()
        with img:
            w, h = img.size
            if w * h > limit:
                raise ImageDecodeError(too_large_message(name, w, h, limit))
            frames = int(getattr(img, "n_frames", 1) or 1)
            # Pillow checks again while decoding (TIFF strips, GIF frames): lifted for the rare
            # file above its guard, which `limit` allows.
            over_pillow = pillow_limit is not None and w * h > pillow_limit
            with _pillow_guard_lifted() if over_pillow else contextlib.nullcontext():
                low = _colour16_low_bytes(img, reopen) if pct is not None else None
                img.load()
            values = pil_to_array(ImageOps.exif_transpose(img), img.format)
            if low is not None:
                with low:
                    lo_bytes = np.asarray(ImageOps.exif_transpose(low))[:, :, :3]
                values = (values.astype(np.uint16) << 8) | lo_bytes
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such image file") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{name} is a folder, not an image file") from None
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
    ) as e:  # PIL raises all of these for bad data
        raise _open_error(name, e) from None
    if frames > 1:
        warnings.warn(
            f"{name} holds {frames} frames (pages); samkit reads the first one only",
            UserWarning,
            stacklevel=2,
        )
    try:
        return array_to_rgb_uint8(values, pct)
    except ValueError as e:
        raise ImageDecodeError(f"{name}: {e}") from None
