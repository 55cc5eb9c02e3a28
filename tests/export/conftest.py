"""The SAM 2 fixture model and its ONNX export, shared by tests/export/test_sam2.py and
tests/export/test_ort_sam2.py (one export per test run: the encoder graph takes the longest),
and its video export, shared by tests/export/test_ort_video.py and test_ort_video_keys_s9.py
(one xdist group, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES

SAM2_TINY = FIXTURES / "sam2_tiny"


@pytest.fixture(scope="session")
def sam2_tiny_model():
    from samkit import build_sam2

    return build_sam2(SAM2_TINY / "config.json", checkpoint=SAM2_TINY / "sam2_tiny.pt")


@pytest.fixture(scope="session")
def sam2_onnx_dir(tmp_path_factory, sam2_tiny_model) -> Path:
    """`api`: Python API (`export_sam2_onnx`), encoder + 4-mask decoder; `cli`: the command
    (`samkit export onnx --return-single-mask`), encoder + single-mask decoder."""
    from samkit.cli import main
    from samkit.export.sam2 import export_sam2_onnx

    root = tmp_path_factory.mktemp("onnx_sam2")
    paths = export_sam2_onnx(sam2_tiny_model, root / "api")
    assert paths == {
        "encoder": root / "api" / "encoder.onnx",
        "decoder": root / "api" / "decoder.onnx",
    }
    args = ["--model", str(SAM2_TINY / "config.json")]
    args += ["--checkpoint", str(SAM2_TINY / "sam2_tiny.pt")]
    rc = main(
        ["export", "onnx", *args, "--out", str(root / "cli"), "--return-single-mask", "--quiet"]
    )
    assert rc == 0
    return root


@pytest.fixture(scope="session")
def sam2_video_onnx_dir(tmp_path_factory) -> Path:
    """The sam2_tiny fixture model exported with `samkit export onnx --video` (read only)."""
    from samkit.cli import main

    out = tmp_path_factory.mktemp("ort_video") / "sam2"
    args = ["export", "onnx", "--video", "--model", str(SAM2_TINY / "config.json")]
    args += ["--checkpoint", str(SAM2_TINY / "sam2_tiny.pt")]
    assert main([*args, "--out", str(out)]) == 0
    return out
