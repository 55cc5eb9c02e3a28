"""The image-size limit (issue #24): one rule (`samkit.io.limits`), applied by
`samkit.io.images.decode_image` in place of Pillow's decompression-bomb guard, and named in the
error (`--max-pixels N`, `max_pixels=N`) so that a 12000 x 9000 picture can be read."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.io.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from samkit.io.limits import check_max_pixels, parse_max_pixels
from tests.io.image_cases import png16

W, H = 12000, 9000  # 108,000,000 pixels: over samkit's default and Pillow's guard (89.5 M)


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> str:
    """A real 12000 x 9000 1-bit PNG (13 kB on disk): black, with a white block at (100, 200)."""
    img = Image.new("1", (W, H), 0)
    img.paste(1, (100, 200, 140, 230))
    path = tmp_path_factory.mktemp("big") / "big.png"
    img.save(path)
    return str(path)


def test_a_large_file_is_refused_with_the_way_to_allow_it(big_png):
    assert W * H > DEFAULT_MAX_PIXELS and W * H > Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError) as e:
        decode_image(big_png)
    msg = str(e.value)
    assert f"{big_png} is too large: 12000x9000 = 108,000,000 pixels" in msg
    assert "over the limit of 64,000,000 pixels" in msg
    assert "pass --max-pixels N (Python: max_pixels=N) to allow it" in msg
    with pytest.raises(ImageDecodeError, match="over the limit of 107,999,999 pixels"):
        decode_image(big_png, max_pixels=W * H - 1)
    data = Path(big_png).read_bytes()  # bytes (the web app's uploads) by the same rule
    with pytest.raises(ImageDecodeError, match="the upload is too large: 12000x9000"):
        decode_image(data)


@pytest.mark.slow
def test_a_large_file_decodes_under_a_raised_limit(big_png):
    guard = Image.MAX_IMAGE_PIXELS
    rgb = decode_image(big_png, max_pixels=W * H)  # Pillow alone would refuse it (warning)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert (rgb[200:230, 100:140] == 255).all() and rgb[199, 100].max() == 0
    assert int(rgb.sum(dtype=np.int64)) == 40 * 30 * 3 * 255
    assert guard == Image.MAX_IMAGE_PIXELS  # Pillow's setting is restored


def _encoded(mode: str, fmt: str, size: tuple[int, int] = (100, 80)) -> bytes:
    if mode == "RGB16":  # 16-bit colour PNG: decoded twice under a stretch (high, low bytes)
        values = np.arange(size[0] * size[1] * 3, dtype=np.uint16).reshape(size[1], size[0], 3)
        return png16(values * 7)
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode, fmt, stretch",
    [("L", "PNG", None), ("RGB", "TIFF", None), ("L", "GIF", None), ("RGB16", "PNG", True)],
)
def test_pillows_guard_never_overrules_the_limit(monkeypatch, mode, fmt, stretch):
    # Pillow's guard set far below the image (8,000 pixels > 2 x 1,000: its hard error, in open
    # and again while TIFF strips are loaded): samkit's own limit decides, and the guard is back.
    data = _encoded(mode, fmt)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data)).load()
    rgb = decode_image(data, max_pixels=8000, stretch=stretch)
    assert rgb.shape == (80, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ImageDecodeError, match="over the limit of 7,999 pixels"):
        decode_image(data, max_pixels=7999)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_the_guard_is_restored_when_decoding_fails(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(b"not an image at all")
    truncated = _encoded("RGB", "PNG")[:200]
    with pytest.raises(ImageDecodeError):
        decode_image(truncated)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_concurrent_decodes_agree(monkeypatch):
    # The server decodes on several threads: the lifted guard is shared state under a lock.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _encoded("RGB", "TIFF")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                assert decode_image(data, max_pixels=8000).shape == (80, 100, 3)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, 1e8, "100", None])
def test_max_pixels_is_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_pixels must be a positive whole number"):
        check_max_pixels(bad)
    with pytest.raises(ValueError, match="max_pixels must be a positive whole number"):
        decode_image(b"", max_pixels=bad)
    assert check_max_pixels(np.int64(5)) == 5


def test_parse_max_pixels():
    assert parse_max_pixels("150000000") == 150_000_000
    assert parse_max_pixels("150,000,000") == parse_max_pixels("150_000_000") == 150_000_000
    for bad in ("0", "-5", "1e8", "", "lots", "١٢"):
        with pytest.raises(ValueError, match="pixels"):
            parse_max_pixels(bad)


def test_the_ray_decode_task_applies_the_limit():
    from samkit.distributed.workers import decode_row

    row = {"path": "/data/a.png", "bytes": _encoded("L", "PNG")}
    assert decode_row(row)["image"].shape == (80, 100, 3)
    failed = decode_row(row, max_pixels=7999)
    assert failed["image"].size == 0
    assert "a.png is too large: 100x80 = 8,000 pixels, over the limit of 7,999" in failed["error"]
