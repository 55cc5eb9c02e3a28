"""Helpers for the command-line tests: the sam1_shapes fixture model's options, a run of `main`
with its captured output, a predictor on the same model."""

from __future__ import annotations

import pytest

from samkit import SamPredictor
from samkit.cli import main
from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`samkit *argv` in this process: (exit code, stdout, stderr)."""
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def predictor(sam1_shapes) -> SamPredictor:
    return SamPredictor(sam1_shapes)
