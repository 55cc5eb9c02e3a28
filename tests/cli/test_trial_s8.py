"""Messages found by the session-8 fresh-user trial: a variant given with a checkpoint of another
size says first what the checkpoint is and what builds it (checked: following it works), no
advice that fails when followed, and no Python wording in command-line errors. Runs on the tiny
fixture checkpoints (a small image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samkit import build_sam, build_sam2
from samkit.build.misfit import AdviceError
from tests.cli.conftest import run_cli
from tests.conftest import FIXTURES

IMAGE = str(FIXTURES / "sam1_shapes" / "shapes_1.png")
SAM1 = str(FIXTURES / "sam1_tiny" / "sam1_tiny.pth")
SAM2 = str(FIXTURES / "sam2_tiny" / "sam2_tiny.pt")
SAM2_CONFIG = str(FIXTURES / "sam2_tiny" / "config.json")


def _segment(args: list[str], out: Path, capsys) -> tuple[int, str]:
    code, _, err = run_cli(["segment", IMAGE, "--point", "20,20", *args, "--out", str(out)], capsys)
    return code, err


def test_sam1_variant_with_a_smaller_checkpoint_says_what_it_is_first():
    with pytest.raises(AdviceError) as e:
        build_sam("vit_b", checkpoint=SAM1, device="meta")
    first = str(e.value).split("\n")[0]
    assert first.startswith("this checkpoint is a 64-wide, 4-block ViT, not 'vit_b'"), first
    assert "build_sam(checkpoint=...) without a variant (CLI: leave --model out)" in first
    assert "112 missing keys" in str(e.value)  # the key report follows
    build_sam(checkpoint=SAM1, device="meta")  # the advice works


def test_sam2_variant_with_a_custom_checkpoint_asks_for_its_config():
    with pytest.raises(AdviceError) as e:
        build_sam2("sam2.1_hiera_t", SAM2, device="meta")
    first = str(e.value).split("\n")[0]
    assert "a 16-wide, 7-block Hiera of no registered size, not 'sam2.1_hiera_t'" in first, first
    assert "build_sam2('CONFIG.json', checkpoint=...)" in first
    assert "without a variant" not in first  # no variant-less advice: it fails for this file
    with pytest.raises(ValueError, match="custom SAM 2 architecture needs its config"):
        build_sam2(checkpoint=SAM2, device="meta")
    build_sam2(SAM2_CONFIG, SAM2, device="meta")  # the advice works


def test_cli_variant_with_a_smaller_checkpoint_leads_with_advice_that_works(tmp_path, capsys):
    code, err = _segment(["--model", "vit_b", "--checkpoint", SAM1], tmp_path / "a.png", capsys)
    assert code == 2
    first = err.split("error: ")[1].split("\n")[0]
    assert first.startswith("this checkpoint is a 64-wide, 4-block ViT, not 'vit_b': leave --model")
    assert "build_sam" not in err and "112 tensors missing" in err
    code, err = _segment(["--checkpoint", SAM1], tmp_path / "b.png", capsys)
    assert code == 0, err


@pytest.mark.parametrize("model", ["vit_b", "sam2.1_hiera_t", None])
def test_cli_no_advice_that_fails_for_a_custom_sam2_checkpoint(model, tmp_path, capsys):
    args = ["--model", model] if model else []
    code, err = _segment([*args, "--checkpoint", SAM2], tmp_path / "a.png", capsys)
    assert code == 2
    assert "or no --model" not in err and "leave --model out" not in err.lower(), err
    assert "first argument" not in err and "variant_or_config" not in err, err
    assert "config.json" in err and ("made with as --model" in err or "--model CONFIG" in err), err
    code, err = _segment(["--model", SAM2_CONFIG, "--checkpoint", SAM2], tmp_path / "b.png", capsys)
    assert code == 0, err


MOBILE = Path(__file__).resolve().parents[1] / "fixtures" / "mobile_sam"


def test_light_model_advice_is_consistent_and_works(tmp_path, capsys):
    from samkit import build_mobile_sam
    from samkit.build.registry import get_family

    tiny = str(MOBILE / "mobile_sam_tiny.pt")
    with pytest.raises(ValueError, match="takes a variant name") as e:
        build_mobile_sam(str(MOBILE / "config.json"), checkpoint=tiny)
    assert "unknown samkit variant" not in str(e.value)
    assert "build_mobile_sam(checkpoint=...)" in str(e.value)
    with pytest.raises(AdviceError, match=r"^this checkpoint is a MobileSAM of another size"):
        build_mobile_sam("mobile_sam", checkpoint=tiny, device="meta")
    assert "another size: leave --model out" in get_family("mobile_sam").builder_hint
    for model in ("mobile_sam", str(MOBILE / "config.json")):
        code, err = _segment(["--model", model, "--checkpoint", tiny], tmp_path / "a.png", capsys)
        assert code == 2 and "leave --model out" in err.lower(), err
        assert "config.json as --model" not in err and "pass --model mobile_sam" not in err, err
    code, err = _segment(["--checkpoint", tiny], tmp_path / "b.png", capsys)
    assert code == 0, err


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "nan"])
def test_track_threshold_range_matches_the_video_code(bad, tmp_path, capsys):
    from samkit.video.track_concepts_checks import check_threshold

    with pytest.raises(ValueError):
        check_threshold(float(bad))  # what the SAM 3 video code and the web video find refuse
    with pytest.raises(SystemExit):  # refused by the parser: before any model or video is read
        run_cli(
            ["track", IMAGE, "--text", "person", "--threshold", bad, "--out", str(tmp_path)], capsys
        )
    assert "between 0 and 1 (exclusive)" in capsys.readouterr().err


def test_track_on_an_image_names_the_video_once(tmp_path, capsys):
    code, _, err = run_cli(["track", IMAGE, "--point", "0:10,10", "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a single image" in err and "VIDEO video:" not in err, err
    assert f"VIDEO {IMAGE} is a single image" in err


def test_info_says_which_model_is_the_default(capsys):
    from samkit.build.registry import DEFAULT_FAMILY, get_family

    code, out, _ = run_cli(["info"], capsys)
    default = get_family(DEFAULT_FAMILY).default_model
    assert code == 0 and default == "vit_b"  # what every --help says
    assert f"default model (no --model, no --checkpoint): {default}" in out.splitlines()[0]
    assert "sam_vit_h, default (official registry name)" in out
    assert "vit_h (sam_vit_h, default)" not in out
    code, out, _ = run_cli(["info", "--json"], capsys)
    assert '"default_model": "vit_b"' in out


def test_top_help_lists_every_command():
    from samkit.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"track", "eval-video", "segment"} <= set(sub.choices)
    for name in sub.choices:
        assert name in parser.description, name


def test_blank_text_prompt_is_named_plainly():
    from samkit.predict.sam3 import Sam3Processor

    processor = Sam3Processor.__new__(Sam3Processor)  # the check runs before any model is used
    processor._check_image_set = lambda *a: None  # type: ignore[method-assign]
    with pytest.raises(ValueError) as e:
        processor.set_text_prompt("   ", {})
    assert str(e.value) == "the text prompt is blank ('   '); give a noun phrase such as 'dog'"
    with pytest.raises(ValueError, match=r"text prompt 1 is blank \(' '\)"):
        processor.set_text_prompts(["dog", " "], {})


def test_segment_without_a_prompt_mentions_text(tmp_path, capsys):
    shapes = FIXTURES / "sam1_shapes"
    model = [
        "--model",
        str(shapes / "config.json"),
        "--checkpoint",
        str(shapes / "sam1_shapes.pth"),
    ]
    code, _, err = run_cli(["segment", IMAGE, *model, "--out", str(tmp_path)], capsys)
    assert code == 2 and "--point" in err and "--text PHRASE" in err and "(SAM 3)" in err, err


def test_quickstart_with_a_sam2_checkpoint_says_it_is_sam1_only(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_s8", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    code = quickstart.main([IMAGE, "--checkpoint", SAM2, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "This example is SAM 1 only" in err and "CLI: --model" not in err, err
    code = quickstart.main([IMAGE, "--model", "sam2.1_hiera_t", "--out", str(tmp_path)])
    assert code == 2 and "SAM 1 only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("builder", "variant", "fixture", "says"),
    [
        ("efficienttam", "efficienttam_s", "efficienttam_tiny.pt", "a 64-wide, 4-block ViT of no"),
        ("edgetam", "edgetam", "edgetam_tiny.pt", "an EdgeTAM of another size"),
    ],
)
def test_sam2_style_families_say_what_the_checkpoint_is(builder, variant, fixture, says):
    import importlib

    build = getattr(importlib.import_module(f"samkit.build.{builder}"), f"build_{builder}")
    checkpoint = MOBILE.parent / builder / fixture
    with pytest.raises(AdviceError) as e:
        build(variant, checkpoint, device="meta")
    first = str(e.value).split("\n")[0]
    assert first.startswith("this checkpoint is " + says) and f"not {variant!r}" in first, first
    if "without a variant" in first:  # the advice works
        build(None, checkpoint, device="meta")
    else:
        build(str(checkpoint.parent / "config.json"), checkpoint, device="meta")
