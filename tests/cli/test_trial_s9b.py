"""New-user trial, session 9 (b): the command line's SAM 3 advice is advice that works.

- `samkit track --text` that finds nothing suggests a --threshold below the best candidate's score
  (`suggested_threshold`: the best score rounded down to 2 decimals, less 0.01), and running
  again with that threshold finds the instance (was "e.g. 0.3" whatever the best score was);
- `samkit auto --text` that keeps nothing suggests a value below the best score the same way.

The sam3_tiny random weights as the 336 px checkpoint of the product tests (`sam3_small`):
queries score about 0.2, under the official thresholds. Two 96x54 frames: 4 detector passes."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from samkit.cli import main
from samkit.configs.sam3_thresholds import suggested_threshold
from tests.conftest import FIXTURES, IMAGES

pytestmark = pytest.mark.skipif(
    not (FIXTURES / "sam3_tiny" / "sam3_tiny.pt").is_file(),
    reason="no ../shared/fixtures/sam3_tiny",
)


@pytest.mark.parametrize(
    ("best", "want"),
    [(0.207, 0.19), (0.2, 0.19), (0.5, 0.49), (0.999, 0.98), (0.0199, None), (0.01, None),
     (None, None), (float("nan"), None)],
)  # fmt: skip
def test_suggested_threshold_is_under_the_best_score_and_above_0(best, want) -> None:
    got = suggested_threshold(best)
    assert got == want
    if got is not None:
        assert 0 < got < best


def _suggestion(err: str) -> float:
    m = re.search(r"\(e\.g\. ([0-9.]+)\)", err)
    assert m, err
    return float(m.group(1))


def test_auto_text_suggests_a_threshold_under_the_best_score(tmp_path, capsys, sam3_small):
    out = tmp_path / "out"
    argv = ["auto", str(IMAGES / "truck.jpg"), "--out", str(out)]
    argv += ["--checkpoint", str(sam3_small), "--text", "truck", "--threshold", "0.9"]
    main(argv)
    err = capsys.readouterr().err
    m = re.search(r"best ([0-9.]+)\); lower --threshold \(e\.g\. ([0-9.]+)\)", err)
    assert m, err
    best, hint = float(m.group(1)), float(m.group(2))
    assert 0 < hint < best and hint == suggested_threshold(best), err


def test_track_threshold_with_edgetam_says_an_edgetam(tmp_path, capsys) -> None:
    """The refusal names the model with its article (`with_article`): "an EdgeTAM model", refused
    before any checkpoint is read."""
    clip = tmp_path / "clip"
    clip.mkdir()
    Image.new("RGB", (32, 24)).save(clip / "0.jpg")
    argv = ["track", str(clip), "--out", str(tmp_path / "o"), "--model", "edgetam"]
    assert main([*argv, "--point", "0:1:5,5", "--threshold", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "--threshold needs a model that finds concepts" in err, err
    assert "an EdgeTAM model tracks the objects you click" in err and "a EdgeTAM" not in err, err


@pytest.mark.parametrize(
    ("given", "words"),
    [
        (["--threshold", "0.3"], "--threshold needs a SAM 3 model (SAM 3's text-prompt score "),
        (["--text", "dog"], "--text needs a SAM 3 model ("),
        (["--text", "dog", "--threshold", "0.3"], "--text / --threshold need a SAM 3 model ("),
    ],
)
def test_auto_with_a_sam1_model_names_only_what_was_given(tmp_path, capsys, given, words):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.jpg")
    argv = ["auto", str(folder), "--out", str(tmp_path / "o"), "--model", "vit_b", *given]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err, err
    drop = " and ".join(g for g in given if g.startswith("--"))
    assert err.rstrip().endswith(f"drop {drop}"), err
    assert not (tmp_path / "o").exists()
