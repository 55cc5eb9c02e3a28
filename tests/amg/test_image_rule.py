"""One image rule for every entry point: `set_image` (SAM 1, SAM 2), both mask generators, the
per-image job of `samkit auto` / its Ray workers, `render_overlay`, and `samkit auto` on files.

The rule is `samkit.predict.inputs.as_rgb_uint8` (`samkit.io.images`): HxW and HxWx1 are greyscale
(repeated into R, G and B), HxWx3 is RGB, HxWx4 is RGBA (alpha dropped); anything else is a
ValueError naming the shapes it takes (micro-sam passes HxW greyscale: computational-cell-
analytics/micro-sam #1076).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor, build_sam, build_sam2
from samkit.amg import Sam2AutomaticMaskGenerator, SamAutomaticMaskGenerator, render_overlay
from samkit.cli import main
from samkit.jobs import AutoJob
from samkit.predict.sam2 import Sam2ImagePredictor
from tests.conftest import FIXTURES

SHAPES, SAM2 = FIXTURES / "sam1_shapes", FIXTURES / "sam2_tiny"
AMG = {"points_per_side": 1, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _grey() -> np.ndarray:
    g = np.full((40, 48), 30, np.uint8)
    g[8:30, 10:34] = 210
    g[20:36, 30:44] = 120
    return g


GREY = _grey()
ALPHA = np.random.default_rng(0).integers(0, 256, GREY.shape, dtype=np.uint8)
GOOD = {
    "HxW uint8": GREY,
    "HxWx1": GREY[:, :, None],
    "HxWx3": np.dstack([GREY] * 3),
    "HxWx4 (alpha dropped)": np.dstack([GREY] * 3 + [ALPHA]),
    "PIL L": Image.fromarray(GREY),
}
RGB = GOOD["HxWx3"]
BAD = {
    "HxWx2": (np.dstack([GREY] * 2), r"HxW or HxWx\{1,3,4\}, got \(40, 48, 2\)"),
    "HxWx5": (np.dstack([GREY] * 5), r"HxW or HxWx\{1,3,4\}, got \(40, 48, 5\)"),
    "1-D": (GREY[0], r"HxW or HxWx\{1,3,4\}, got \(48,\)"),
    "4-D batch": (RGB[None], r"HxW or HxWx\{1,3,4\}, got \(1, 40, 48, 3\)"),
    "empty": (RGB[:0], "the image is empty"),
    "bool": (GREY > 100, "numeric dtype"),
    "list": (GREY.tolist(), "numpy array or a PIL image, got list"),
}


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {
        "sam1": build_sam(SHAPES / "config.json", checkpoint=SHAPES / "sam1_shapes.pth"),
        "sam2": build_sam2(SAM2 / "config.json", checkpoint=SAM2 / "sam2_tiny.pt"),
    }


def _masks(records: list[dict]) -> list[tuple[Any, ...]]:
    return [(r["segmentation"].tobytes(), r["predicted_iou"], r["bbox"]) for r in records]


def _auto_job(model: Any, image: Any) -> bytes:
    """What `samkit auto --ray` workers run: `AutoJob.run` on a decoded array."""
    from samkit.jobs import make_generator

    gen = make_generator(model, "sam1", dict(AMG))
    with tempfile.TemporaryDirectory() as d:
        job = AutoJob.create(d, "shapes", False, dict(AMG))
        job.run(gen, image, "x.png", 1)
        return (Path(d) / "x.json").read_bytes() + (Path(d) / "x_overlay.png").read_bytes()


def _sam1_features(m: dict[str, Any], image: Any) -> torch.Tensor:
    predictor = SamPredictor(m["sam1"])
    predictor.set_image(image)
    return predictor.features


def _sam2_features(m: dict[str, Any], image: Any) -> torch.Tensor:
    predictor = Sam2ImagePredictor(m["sam2"])
    predictor.set_image(image)
    return predictor.get_image_embedding()


def _sam1_masks(m: dict[str, Any], image: Any) -> list[tuple[Any, ...]]:
    return _masks(SamAutomaticMaskGenerator(m["sam1"], **AMG).generate(image))


def _sam2_masks(m: dict[str, Any], image: Any) -> list[tuple[Any, ...]]:
    return _masks(Sam2AutomaticMaskGenerator(m["sam2"], **AMG).generate(image))


def _overlay(m: dict[str, Any], image: Any) -> np.ndarray:
    return np.asarray(render_overlay(image, [{"segmentation": GREY > 100, "area": 1}]))


ENTRY_POINTS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "SamPredictor.set_image": _sam1_features,
    "Sam2ImagePredictor.set_image": _sam2_features,
    "SamAutomaticMaskGenerator.generate": _sam1_masks,
    "Sam2AutomaticMaskGenerator.generate": _sam2_masks,
    "samkit.jobs.AutoJob.run (Ray workers)": lambda m, image: _auto_job(m["sam1"], image),
    "render_overlay": _overlay,
}
_REFERENCE: dict[str, Any] = {}


def _same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("layout", list(GOOD))
def test_every_entry_point_takes_the_same_images(models, entry, layout):
    fn = ENTRY_POINTS[entry]
    if entry not in _REFERENCE:
        _REFERENCE[entry] = fn(models, RGB)
    got = fn(models, GOOD[layout])
    if "generate" in entry:
        assert len(got) > 0
    _same(got, _REFERENCE[entry])


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", list(BAD))
def test_every_entry_point_refuses_the_same_images(models, entry, bad):
    value, message = BAD[bad]
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry](models, value)


@pytest.mark.parametrize("family", ["sam1", "sam2"])
def test_samkit_auto_reads_every_file_layout_the_same(tmp_path, family, capsys):
    """`samkit auto` on greyscale, grey + alpha, RGB and RGBA files of one picture: the same
    masks for each (SAM 1 and SAM 2)."""
    src = tmp_path / "in"
    src.mkdir()
    files = {
        "a_L": GREY,
        "b_LA": np.dstack([GREY, ALPHA]),
        "c_RGB": RGB,
        "d_RGBA": np.dstack([RGB, ALPHA]),
        "e_I16": GREY.astype(np.uint16) << 8,
    }
    if family == "sam2":  # the files are decoded as for SAM 1: fewer of them (slower model)
        files = {k: files[k] for k in ("a_L", "c_RGB")}
    for name, pixels in files.items():
        Image.fromarray(pixels).save(src / f"{name}.png")
    if family == "sam1":
        model = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]  # fmt: skip
    else:
        model = ["--model", str(SAM2 / "config.json"), "--checkpoint", str(SAM2 / "sam2_tiny.pt")]
    opts = ["--points-per-side", "1", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    assert main(["auto", str(src), "--out", str(tmp_path / "out"), *opts, *model, "--quiet"]) == 0
    capsys.readouterr()
    docs = {
        p.stem: json.loads(p.read_text())
        for p in (tmp_path / "out").glob("*.json")
        if not p.name.startswith("_")
    }
    assert sorted(docs) == sorted(files)
    expected = docs["c_RGB"]["annotations"]
    assert len(expected) > 0
    for name, doc in docs.items():
        assert doc["annotations"] == [
            {**a, "image_id": doc["images"][0]["id"]} for a in expected
        ], name
