"""CLI messages found by a newcomer trial: a light model's config.json as --model (the advice
given must work when followed), "an EdgeTAM" / "an HQ-SAM", `samkit export onnx --help` naming
what it exports, and checkpoint key reports summarised with what the model expected. Runs
`samkit` in process on the tiny fixture checkpoints (segmenting the small shapes image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samkit.build.registry import families
from samkit.io.provenance import with_article
from tests.cli.conftest import run_cli
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
LIGHT = REPO / "tests" / "fixtures"
IMAGE = str(FIXTURES / "sam1_shapes" / "shapes_1.png")
SAM1 = FIXTURES / "sam1_tiny" / "sam1_tiny.pth"
SAM2_CONFIG = FIXTURES / "sam2_tiny" / "config.json"
MOBILE = LIGHT / "mobile_sam"
EDGETAM = LIGHT / "edgetam"
EFFICIENTTAM = LIGHT / "efficienttam"


def _segment(args: list[str], out: Path, capsys) -> tuple[int, str]:
    code, _, err = run_cli(["segment", IMAGE, "--point", "20,20", *args, "--out", str(out)], capsys)
    return code, err


def _advice_works(err: str, out: Path, capsys) -> None:
    """The error says to leave --model out; doing so with the same --checkpoint segments."""
    assert "Leave --model out" in err or "leave --model out" in err, err
    checkpoint = err.split("--checkpoint ")[1].split()[0]
    code, err = _segment(["--checkpoint", checkpoint], out, capsys)
    assert code == 0, err


@pytest.mark.parametrize("light", ["mobile_sam", "sam_hq/vit_tiny"])
def test_a_light_fixture_config_is_refused_with_advice_that_works(light, tmp_path, capsys):
    config = LIGHT / light / "config.json"
    checkpoint = next(p for p in (LIGHT / light).iterdir() if p.suffix in (".pt", ".pth"))
    for extra in ([], ["--checkpoint", str(checkpoint)]):  # was: "also pass --checkpoint"
        code, err = _segment(["--model", str(config), *extra], tmp_path / "a", capsys)
        assert code == 2 and f"--model {config}: not a SAM 1 constructor config" in err, err
        assert "samkit reads the config.json of SAM 1 / SAM 2" in err
        assert "also pass --checkpoint" not in err
    code, err = _segment(["--checkpoint", str(checkpoint)], tmp_path / "b", capsys)
    assert code == 0, err  # "pass its --checkpoint alone"


def test_a_config_of_another_family_points_to_the_checkpoint_alone(tmp_path, capsys):
    args = ["--model", str(FIXTURES / "sam1_tiny" / "config.json")]
    code, err = _segment(
        [*args, "--checkpoint", str(MOBILE / "mobile_sam_tiny.pt")], tmp_path, capsys
    )
    assert code == 2 and "is a MobileSAM checkpoint, not a SAM 1 one" in err, err
    assert "was read as a SAM 1 config" in err and "--model mobile_sam" not in err
    _advice_works(err, tmp_path / "b", capsys)
    # a checkpoint whose architecture cannot be read off its tensors: its own config is named
    ckpt = EFFICIENTTAM / "efficienttam_tiny.pt"
    code, err = _segment(["--model", str(SAM2_CONFIG), "--checkpoint", str(ckpt)], tmp_path, capsys)
    assert code == 2 and "is an EfficientTAM checkpoint, not a SAM 2 one" in err, err
    assert "Pass the EfficientTAM config.json this checkpoint was made with as --model" in err
    code, err = _segment(
        ["--model", str(EFFICIENTTAM / "config.json"), "--checkpoint", str(ckpt)], tmp_path, capsys
    )
    assert code == 0, err


def test_edgetam_config_that_does_not_fit_its_checkpoint(tmp_path, capsys):
    ckpt = EDGETAM / "edgetam_tiny.pt"
    code, err = _segment(
        ["--model", str(EDGETAM / "config.json"), "--checkpoint", str(ckpt)], tmp_path, capsys
    )
    assert code == 2 and "does not fit" in err, err
    assert "or pass the model's config.json as --model" not in err  # the config it was given
    _advice_works(err, tmp_path / "b", capsys)


def test_key_reports_are_summarised_with_what_was_expected(tmp_path, capsys):
    code, err = _segment(["--model", "vit_b", "--checkpoint", str(SAM1)], tmp_path, capsys)
    assert code == 2, err
    assert "--model vit_b expects 314 tensors (SAM 1, the official sam_vit_b_01ec64.pth)" in err
    assert "has 202:" in err, err
    assert "112 tensors missing from the checkpoint: image_encoder.blocks (112); e.g." in err
    assert "60 tensors of another shape: image_encoder.blocks (56)" in err
    assert "(109 more)" in err and err.count("image_encoder.blocks.") <= 6
    assert len(err) < 2000
    _advice_works(err, tmp_path / "b", capsys)


def test_family_names_take_the_right_article():
    spoken = {f.display: with_article(f.display) for f in families()}
    assert spoken["EdgeTAM"] == "an EdgeTAM" and spoken["EfficientTAM"] == "an EfficientTAM"
    assert spoken["HQ-SAM"] == "an HQ-SAM" and spoken["MobileSAM"] == "a MobileSAM"
    assert spoken["SAM 2"] == "a SAM 2" and spoken["SAM 3"] == "a SAM 3"


def test_messages_say_an_before_a_vowel_sound(tmp_path, capsys):
    ckpt = EDGETAM / "edgetam_tiny.pt"
    code, err = _segment(["--model", "sam2.1_hiera_t", "--checkpoint", str(ckpt)], tmp_path, capsys)
    assert code == 2 and "is an EdgeTAM checkpoint, not a SAM 2 one" in err, err
    code, _, err = run_cli(
        ["track", str(FIXTURES / "sam2_video" / "frames"), "--point", "0:1:5,5", "--checkpoint",
         str(LIGHT / "sam_hq" / "vit_tiny" / "sam_hq_vit_tiny_tiny.pth"), "--out", str(tmp_path)],
        capsys,
    )  # fmt: skip
    assert code == 2 and "not an HQ-SAM one" in err and "a HQ" not in err, err


def test_export_help_names_every_registered_exporter(capsys):
    with pytest.raises(SystemExit):
        run_cli(["export", "onnx", "--help"], capsys)
    out = capsys.readouterr().out
    assert "SAM 1 or SAM 2" not in out
    for f in families():
        if f.has("exporter"):
            assert f.display in out.split("With --video")[0], f.name
        if f.has("video_exporter"):
            assert f.display in out.split("With --video")[1], f.name
    assert "OnnxEdgeTamVideoPredictor" in out and "OnnxSamHQPredictor" in out
