"""`samkit.io.images`: every file format and array dtype decodes to the expected 8-bit picture, and
the Python API (`SamPredictor`, `Sam2ImagePredictor`, the mask generator) follows the same rule."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import Sam2ImagePredictor, SamAutomaticMaskGenerator, SamPredictor, build_sam2
from samkit.amg import pipeline
from samkit.io.images import (
    ImageDecodeError,
    array_to_rgb_uint8,
    decode_image,
    pil_to_array,
    to_uint8,
)
from samkit.predict.inputs import as_rgb_uint8
from tests.conftest import FIXTURES
from tests.io.image_cases import cases, content, refused, stretch_reference

CASES = cases()


@pytest.fixture(scope="module")
def sam2_tiny():

    d = FIXTURES / "sam2_tiny"
    return build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt")


def check_picture(got: np.ndarray, case) -> None:
    assert got.dtype == np.uint8 and got.shape == case.expected.shape, (got.shape, case.name)
    diff = np.abs(got.astype(np.int64) - case.expected.astype(np.int64))
    if case.atol:  # JPEG: lossy, compare on average (a wrong colour model is off by ~100)
        assert diff.mean() < 4, f"{case.name}: mean difference {diff.mean():.2f}"
    else:
        assert diff.max() == 0, f"{case.name}: {np.count_nonzero(diff)} pixels differ"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("source", ["bytes", "path"])
def test_every_format_decodes_to_the_expected_picture(case, source, tmp_path):
    src = case.data if source == "bytes" else case.write(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = decode_image(src, stretch=True if case.stretch else None)
    check_picture(got, case)
    frame_warnings = [w for w in caught if "frames" in str(w.message)]
    assert len(frame_warnings) == (1 if case.frames_warning else 0), [
        str(w.message) for w in caught
    ]
    if case.frames_warning:
        assert "reads the first one" in str(frame_warnings[0].message)


def test_pil_convert_is_the_bug_this_fixes():
    # PIL's own conversion clips 16-bit values to white: the picture the old decoder produced.
    g16 = (content()[:, :, 1].astype(np.uint16) << 8) | 0x80
    assert (np.array(Image.fromarray(g16).convert("RGB")) == 255).mean() > 0.95
    assert (decode_image(_png(g16)) == 255).mean() < 0.05


@pytest.mark.parametrize("name, suffix, data, reason", refused(), ids=[r[0] for r in refused()])
def test_data_the_rule_cannot_place_is_a_clear_error(name, suffix, data, reason, tmp_path):
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=reason) as e:
        decode_image(path)
    assert str(path) in str(e.value)


def test_bad_stretch_arguments():
    for bad in ((50, 50), (-1, 99), (1, 101), "x", (1, 2, 3)):
        with pytest.raises(ValueError, match="stretch"):
            decode_image(_png(np.zeros((4, 4), np.uint16)), stretch=bad)


def _png(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ arrays


def test_array_rule():
    pic = content()
    lo = np.random.default_rng(1).integers(0, 256, pic.shape, dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8((pic.astype(np.uint16) << 8) | lo), pic)
    for dt in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(to_uint8((pic / 255.0).astype(dt)), pic)
    for dt in (np.int16, np.int32, np.int64, np.uint32):
        np.testing.assert_array_equal(to_uint8(pic.astype(dt)), pic)  # 8-bit values
        if np.iinfo(dt).max >= 65535:
            np.testing.assert_array_equal(to_uint8(pic.astype(dt) * 256), pic)  # 16-bit values
    assert to_uint8(pic) is pic  # uint8: no copy
    wide = pic.astype(np.float64) * 3.7 - 100
    np.testing.assert_array_equal(to_uint8(wide, stretch=True), stretch_reference(wide))
    np.testing.assert_array_equal(to_uint8(wide, stretch=(0, 100)), stretch_reference(wide, 0, 100))
    assert to_uint8(np.full((3, 3), 7.5), stretch=True).max() == 0  # flat: black
    for bad, reason in (
        (pic * 2.0, r"values in \[0, 1\].*stretch"),
        (pic.astype(np.int32) - 1, r"\[0, 255\].*stretch"),
        (pic.astype(np.int64) * 1000, "stretch"),
        (np.full((3, 3), np.nan), "NaN"),
        (np.full((3, 3), np.inf), "NaN or infinite"),
        (np.ones((3, 3), bool), "numeric dtype"),
        (np.ones((3, 3), complex), "numeric dtype"),
        (np.zeros((0, 3)), "empty"),
    ):
        with pytest.raises(ValueError, match=reason):
            to_uint8(bad)


def test_channel_rule():
    pic = content()
    g = pic[:, :, 0]
    a = np.full_like(g, 9)
    for x in (g, g[:, :, None]):
        np.testing.assert_array_equal(array_to_rgb_uint8(x), np.dstack([g, g, g]))
    np.testing.assert_array_equal(array_to_rgb_uint8(np.dstack([pic, a])), pic)
    # alpha never enters a stretch
    dim = pic.astype(np.uint16) * 4 + 100
    rgba = np.dstack([dim, np.full(dim.shape[:2], 65535, np.uint16)])
    np.testing.assert_array_equal(array_to_rgb_uint8(rgba, True), stretch_reference(dim))
    bad_shapes = (
        np.dstack([g, a]),
        np.zeros((2, 2, 5), np.uint8),
        np.zeros((2, 2, 2, 2)),
        np.zeros(4),
    )
    for bad in bad_shapes:
        with pytest.raises(ValueError, match="shape"):
            array_to_rgb_uint8(bad)


# ------------------------------------------------------------------------------------ Python API


def _inputs(pic: np.ndarray) -> dict[str, object]:
    lo = np.random.default_rng(2).integers(0, 256, pic.shape, dtype=np.uint16)
    g16 = (pic[:, :, 1].astype(np.uint16) << 8) | lo[:, :, 1]
    return {
        "uint16": (pic.astype(np.uint16) << 8) | lo,
        "float32": (pic / 255.0).astype(np.float32),
        "float64 RGBA": np.dstack([pic / 255.0, np.ones(pic.shape[:2])]),
        "int64": pic.astype(np.int64),
        "PIL I;16": (Image.fromarray(g16), np.dstack([pic[:, :, 1]] * 3)),
        "PIL F": (Image.fromarray((pic[:, :, 1] / 255.0).astype(np.float32)), None),
        "PIL P+transparency": (Image.fromarray(pic).quantize(16), None),
    }


def _expected(pic, value):
    if isinstance(value, tuple):
        img, exp = value
        if exp is None:  # the PIL mode's own 8-bit meaning
            exp = np.dstack([pic[:, :, 1]] * 3) if img.mode == "F" else np.array(img.convert("RGB"))
        return img, exp
    return value, pic


def test_as_rgb_uint8_follows_the_rule():
    # the conversion every predictor's set_image runs (SAM 1, SAM 2, onnxruntime)

    pic = content()
    for name, value in _inputs(pic).items():
        image, expected = _expected(pic, value)
        np.testing.assert_array_equal(as_rgb_uint8(image), expected, err_msg=name)
    bgr = as_rgb_uint8(pic[:, :, ::-1].astype(np.uint16) << 8, image_format="BGR")
    np.testing.assert_array_equal(bgr, pic)
    with pytest.raises(ValueError, match=r"\[0, 1\].*stretch") as err:
        as_rgb_uint8(pic * 2.0)
    # the advice names a call that exists and whose result is accepted
    assert "samkit.io.images.array_to_rgb_uint8(x, stretch=(0.5, 99.5))" in str(err.value)

    assert as_rgb_uint8(array_to_rgb_uint8(pic * 2.0, stretch=(0.5, 99.5))).dtype == np.uint8


def test_sam_predictor_takes_uint16_and_float_images(sam1_shapes):

    pic = content()
    pred = SamPredictor(sam1_shapes)
    pred.set_image(pic)
    ref = pred.features.clone()
    g16 = (pic.astype(np.uint16) << 8) | 0xAB
    for image in (g16, (pic / 255.0).astype(np.float32)):
        pred.set_image(image)
        torch.testing.assert_close(pred.features, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*stretch"):
        pred.set_image(pic * 2.0)


def test_sam2_predictor_takes_uint16_and_float_images(sam2_tiny):

    pic = content((48, 40))
    pred = Sam2ImagePredictor(sam2_tiny)
    pred.set_image((pic.astype(np.uint16) << 8) | 200)
    single = pred.get_image_embedding().clone()
    pred.set_image_batch([pic, (pic / 255.0).astype(np.float32)])
    batch = pred.get_image_embedding()
    torch.testing.assert_close(batch[1], batch[0], rtol=0, atol=0)
    torch.testing.assert_close(single[0], batch[0])


def test_mask_generator_takes_uint16_and_float_images(sam1_shapes):

    assert pipeline.as_rgb_uint8 is as_rgb_uint8  # the generators read images by set_image's rule
    pic = content()
    gen = SamAutomaticMaskGenerator(
        sam1_shapes, points_per_side=3, pred_iou_thresh=0.2, stability_score_thresh=0.5
    )
    a = gen.generate(pic)
    b = gen.generate((pic / 255.0).astype(np.float32))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["segmentation"], y["segmentation"])


def test_mode_i_png_is_16_bit():
    # Pillow < 10 opens a 16-bit greyscale PNG as mode I: still the 16-bit rule, even when dark.

    dark = (np.arange(12).reshape(3, 4) * 20).astype(np.int32)  # all <= 255
    img = Image.fromarray(dark)
    assert img.mode == "I"
    np.testing.assert_array_equal(to_uint8(pil_to_array(img)), dark.astype(np.uint8))  # ints
    img.format = "PNG"
    got = pil_to_array(img)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(to_uint8(got), np.zeros_like(dark, np.uint8))  # >> 8
