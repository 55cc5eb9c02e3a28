"""EfficientTAM image predictor parity: the official EfficientTAMImagePredictor's outputs on the
sam2_tiny cases, recorded in tests/fixtures/efficienttam (see its README for the storage and the
tolerances; tools/reference/light_video records them; tests/fixtures/light_image.py compares)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.fixtures.light_image import ImageCases, manifest

FIX = ROOT / "tests" / "fixtures" / "efficienttam"
CASES = manifest(FIX)["cases"] if (FIX / "manifest.json").exists() else []


@pytest.fixture(scope="module")
def cases() -> ImageCases:
    return ImageCases(FIX)


@pytest.fixture(scope="module")
def predictor():
    from samkit.build.efficienttam import build_efficienttam
    from samkit.predict.sam2 import Sam2ImagePredictor

    model = build_efficienttam(FIX / "config.json", checkpoint=FIX / "efficienttam_tiny.pt")
    return Sam2ImagePredictor(model)


@pytest.mark.parametrize("name", ["truck.jpg", "groceries.jpg", "dog.jpg"])
def test_image_features(predictor, cases, name):
    cases.check_features(predictor, name)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_matches_official(predictor, cases, case):
    cases.check_case(predictor, case)
