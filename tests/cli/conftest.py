"""Helpers for the command-line tests (also the Ray runs'): the sam1_shapes fixture model's
options, small `samkit auto` options, a run of `main` with its captured output, a predictor on
the same model."""

from __future__ import annotations

import pytest

from samkit import SamPredictor
from samkit.cli import main
from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
# `samkit auto` options that keep a run small (a 3x3 grid) and keep some masks of this model
AUTO_OPTS = [
    "--points-per-side",
    "3",
    "--pred-iou-thresh",
    "0.2",
    "--stability-score-thresh",
    "0.5",
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`samkit *argv` in this process: (exit code, stdout, stderr)."""
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def predictor(sam1_shapes) -> SamPredictor:
    return SamPredictor(sam1_shapes)
