"""`samkit auto --crop-n-layers N`: a negative N is refused before the model loads; an N over
the web app's limit (2: 1 + 4 + 16 crops) runs, after a warning with the crops per image
(1 + 4 + ... + 4**N, each encoded like the whole image) and the point prompts, since the
official `SamAutomaticMaskGenerator` takes any number (it may be meant for a huge image)."""

from __future__ import annotations

import json

import pytest

import samkit.cli.commands as commands
from samkit.cli import main
from samkit.cli.amgopts import QUIET_CROP_LAYERS, crop_layers_warnings
from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]


def _stop(*args, **kwargs):
    raise ValueError("stop here")  # where the model would load


def test_counts_in_the_warning() -> None:
    assert crop_layers_warnings(QUIET_CROP_LAYERS, 32, 1) == []
    (five,) = crop_layers_warnings(5, 32, 1)
    assert five.startswith("--crop-n-layers 5 means 1 + 4 + 16 + 64 + 256 + 1,024 = 1,365 crops")
    assert "about 1,365x the time of --crop-n-layers 0" in five
    assert f"{1365 * 32**2:,} point prompts instead of 1,024" in five
    (three,) = crop_layers_warnings(3, 32, 2)  # layer i: int(32 / 2**i)**2 points per crop
    assert f"{1024 + 4 * 256 + 16 * 64 + 64 * 16:,} point prompts" in three


def test_negative_layers_refused_before_the_model_loads(tmp_path, capsys, monkeypatch) -> None:
    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(commands, "_model_from_args", no_load)
    argv = ["auto", *MODEL, "--crop-n-layers", "-1", "--out", str(tmp_path / "o")]
    assert main([*argv, str(SHAPES / "shapes_1.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit auto: error: --crop-n-layers -1: must be 0"), err


def test_many_layers_run_after_a_warning(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    argv = ["auto", *MODEL, "--crop-n-layers", "3", "--points-per-side", "2", "--quiet"]
    assert main([*argv, "--out", str(out), str(SHAPES / "shapes_1.png")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "samkit auto: warning: --crop-n-layers 3 means 1 + 4 + 16 + 64 = 85 crops per image"
    ), err
    assert "340 point prompts instead of 4" in err
    coco = json.loads((out / "_annotations.coco.json").read_text())
    assert coco["images"][0]["file_name"] == "shapes_1.png"


@pytest.mark.parametrize("layers", ["0", "2"])
def test_no_warning_up_to_the_web_apps_limit(layers, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(commands, "_model_from_args", _stop)
    argv = ["auto", *MODEL, "--crop-n-layers", layers, "--out", str(tmp_path / "o")]
    assert main([*argv, str(SHAPES / "shapes_1.png")]) == 2
    assert capsys.readouterr().err == "samkit auto: error: stop here\n"


def test_progress_within_an_image_names_the_crop_and_batch(tmp_path, capsys, monkeypatch) -> None:
    # Off a terminal a line is written at most every heartbeat_s within an image (10 s); at 0
    # every batch writes one, so the crop and batch counts of a one-image run can be read.
    monkeypatch.setattr(commands._AutoProgress, "heartbeat_s", 0.0)
    argv = ["auto", *MODEL, "--crop-n-layers", "1", "--points-per-side", "2"]
    assert main([*argv, "--out", str(tmp_path / "o"), str(SHAPES / "shapes_1.png")]) == 0
    lines = capsys.readouterr().err.splitlines()
    within = [ln for ln in lines if "shapes_1.png: crop" in ln]
    assert [ln.split("shapes_1.png: ")[1] for ln in within[:1]] == ["crop 1/5, batch 1/5"]
    assert within[-1].endswith("shapes_1.png: crop 5/5, batch 5/5"), within
    assert all("0/1 images" in ln for ln in within), within
    assert any(ln.startswith("auto: 1/1 images") for ln in lines), lines


def test_generator_errors_name_the_flags(tmp_path, capsys) -> None:
    argv = ["auto", *MODEL, "--points-per-side", "0", "--out", str(tmp_path / "o")]
    assert main([*argv, str(SHAPES / "shapes_1.png")]) == 2
    err = capsys.readouterr().err
    assert err == "samkit auto: error: --points-per-side must be an int >= 1, got 0\n", err
