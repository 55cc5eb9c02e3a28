"""The built-in demo model (samkit.train.demo): shipped, recorded, and it really segments.

The bar: on the quickstart's demo image the mask from one point has IoU >= 0.85 with the generated
shape, and over 8 demo images (24 shapes, one point deep inside each) the mean IoU is >= 0.8. The
same architecture with random weights (three seeds) stays far below (it gives blobs or noise), so
passing means the shipped weights segment.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit import build_sam
from samkit.checkpoint import read_metadata
from samkit.configs.sam import sam_config_from_official
from samkit.train import demo
from samkit.train.demo import (
    DEMO_DIR,
    DEMO_SEED,
    build_demo_model,
    deepest_point,
    demo_record,
    demo_sample,
    evaluate_demo_model,
)
from samkit.train.synthetic import small_sam_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return build_demo_model()


def test_the_demo_model_segments_its_demo_image(model):
    got = evaluate_demo_model(model=model, images=8)
    assert got["instances"] == 24
    assert got["demo_iou"] >= 0.85, got
    assert got["miou_1pt"] >= 0.8, got
    # the record's numbers are the shipped file's numbers on this machine's numpy / Pillow
    rec = demo_record()["demo_image"]
    assert rec["demo_point"] == got["demo_point"]
    assert abs(rec["demo_iou"] - got["demo_iou"]) < 0.02


def test_random_weights_fail_the_same_bar():

    cfg = sam_config_from_official(small_sam_config())
    for seed in range(3):
        torch.manual_seed(seed)
        got = evaluate_demo_model(model=build_sam(cfg), images=2)
        assert got["demo_iou"] < 0.5 and got["miou_1pt"] < 0.5, (seed, got)


def test_demo_sample_is_fixed_and_held_out():
    a, b = demo_sample(0), demo_sample(0)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (384, 512, 3) and a.image.dtype == np.uint8
    assert a.masks.shape == (3, 384, 512) and a.name == "demo_shapes"
    k = a.shape_at(*a.point)
    assert k is not None and a.masks[k].sum() == a.masks.reshape(3, -1).sum(1).max()
    assert a.shape_at(-1, 5) is None
    assert demo_sample(1).name == "demo_shapes_1"
    # the training data come from another seed stream
    rec = demo_record()
    assert f"default_rng([{DEMO_SEED}," not in rec["training"]["data"]


def test_deepest_point():
    m = np.zeros((9, 12), bool)
    m[1:8, 2:9] = True  # a 7x7 square: its centre
    assert deepest_point(m) == (5, 4)
    with pytest.raises(ValueError, match="non-empty HxW"):
        deepest_point(np.zeros((4, 4), bool))


def test_shipped_file_is_small_recorded_and_packaged():
    weights = DEMO_DIR / demo.WEIGHTS_NAME
    assert weights.stat().st_size < 3 * 2**20
    rec = demo_record()
    assert rec["training"]["command"].startswith("python tools/train_demo_model.py")
    assert rec["versions"]["torch"] and rec["config"]["image_encoder"]["img_size"] == 256
    assert (ROOT / "tools" / "train_demo_model.py").is_file()

    assert "samkit_provenance" in read_metadata(weights)  # what made it, checked on load
    package_data = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    assert '"train/demo/*"' in package_data.split("\n[")[0]


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tools/train_demo_model\.py"):
        build_demo_model(tmp_path / "none.safetensors")
    with pytest.raises(FileNotFoundError, match=r"tools/train_demo_model\.py"):
        demo_record(tmp_path)
    assert json.loads((DEMO_DIR / demo.CONFIG_NAME).read_text())["weights"]["file"]


@pytest.mark.slow
def test_the_tool_writes_a_loadable_model_and_its_record(tmp_path):

    spec = importlib.util.spec_from_file_location("tdm", ROOT / "tools" / "train_demo_model.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "demo"
    argv = ["--steps", "3", "--images", "8", "--out", str(out), "--work", str(tmp_path / "w")]
    assert tool.main(argv) == 0
    rec = demo_record(out)
    assert rec["training"]["command"].endswith(
        "--steps 3 --images 8 --out " + str(out) + " --work " + str(tmp_path / "w")
    )
    assert rec["demo_image"]["instances"] == 24
    build_demo_model(out / demo.WEIGHTS_NAME)
    with pytest.raises(ValueError, match="demo image's seed"):
        tool.main(["--seed", str(DEMO_SEED), "--out", str(out)])
