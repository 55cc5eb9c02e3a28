"""The command line answers at once: `--help`, `--version`, every command's `--help` and usage
errors import neither torch nor numpy / PIL, and a mistyped option or command gets a
"did you mean" from the parser of the command it was typed for (issue #24, section 2); negative
coordinates parse, help without noise, variant names in any case with suggestions."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import pytest

import samkit
from samkit.cli import build_parser, load_model, main
from samkit.cli.argparsing import did_you_mean
from samkit.configs.sam import get_variant
from tests.conftest import FIXTURES, ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "numpy", "PIL", "samkit.modeling", "samkit.cli.commands", "samkit.jobs")

# Runs each argv through samkit.cli.main in one fresh interpreter and records, after each one,
# the exit status and which heavy modules are loaded by then (none may be, at any point).
_PROBE = """
import contextlib, io, json, sys
import samkit.cli as c
heavy = json.loads(sys.argv[1])
report = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = c.main(argv)
        except SystemExit as e:
            code = e.code
    loaded = [m for m in heavy if m in sys.modules]
    report.append({"argv": argv, "code": code, "loaded": loaded, "out": out.getvalue(),
                   "err": err.getvalue()})
print(json.dumps(report))
"""


def _commands() -> dict[str, list[str]]:
    """Every command's argv prefix: top-level commands and export's formats ("export onnx")."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out: dict[str, list[str]] = {}
    for name, parser in sub.choices.items():
        out[name] = [name]
        for action in parser._actions:
            if action.nargs == argparse.PARSER:  # a command with its own sub-commands (export)
                for inner in action.choices:
                    out[f"{name} {inner}"] = [name, inner]
    return out


def _probe(cases: list[list[str]]) -> list[dict]:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY), json.dumps(cases)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_help_version_and_usage_errors_import_no_torch():
    commands = _commands()
    assert {"segment", "auto", "embed", "serve", "track", "eval-video", "export onnx"} <= set(
        commands
    )
    cases = [["--version"], ["--help"]] + [[*argv, "--help"] for argv in commands.values()]
    errors = [
        ["segment", "img.jpg", "--piont", "1,2"],  # unknown option
        ["segment", "img.jpg"],  # missing required --out
        ["segment"],  # missing positional
        ["segment", "img.jpg", "--out", "o", "--dtype", "flaot32"],  # bad choice
        ["segment", "img.jpg", "--out", "o", "--point", "1"],  # bad value
        ["auto", "x", "--out", "o", "--max-pixels", "0"],  # bad value
        ["segmnt", "img.jpg"],  # mistyped command
        ["export", "onx"],  # mistyped nested command
        ["track", "v.mp4", "--out", "o", "--revrese"],
        [],  # no command
    ]
    report = _probe(cases + errors)
    for row in report:
        assert row["loaded"] == [], f"{row['argv']} imported {row['loaded']}"
    for row in report[: len(cases)]:
        assert row["code"] == 0, row
        assert row["out"].startswith(("usage: samkit", "samkit ")), row
    assert report[0]["out"].strip() == f"samkit {__import__('samkit').__version__}"
    for row in report[len(cases) :]:
        assert row["code"] == 2 and "error:" in row["err"], row


def test_python_dash_m_version_imports_no_torch():
    # The real entry point (`python -m samkit`), seen by the interpreter's own import log.
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "samkit", "--version"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.startswith("samkit ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()}
    assert "samkit.cli" in imported
    assert not {"torch", "numpy", "PIL"} & imported


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_mistyped_option_gets_a_suggestion_from_its_command(capsys):
    err = _usage_error(["segment", "img.jpg", "--piont", "1,2"], capsys)
    # The segment parser answers (its usage, its name), not the top-level usage; and the typo
    # wins over the missing --out.
    assert err.startswith("usage: samkit segment")
    assert "samkit segment: error: unrecognized option --piont; did you mean --point?" in err
    assert "usage: samkit [-h]" not in err
    err = _usage_error(["auto", "d", "--out", "o", "--max-pixles=9"], capsys)
    assert "did you mean --max-pixels?" in err and err.startswith("usage: samkit auto")
    err = _usage_error(["track", "v.mp4", "--out", "o", "--revrese"], capsys)
    assert "did you mean --reverse?" in err and err.startswith("usage: samkit track")
    err = _usage_error(["export", "onnx", "--out", "o", "--opsett", "17"], capsys)
    assert "did you mean --opset?" in err and err.startswith("usage: samkit export onnx")
    err = _usage_error(["--verison"], capsys)
    assert "did you mean --version?" in err
    err = _usage_error(["segment", "img.jpg", "--out", "o", "--zzz"], capsys)
    assert "unrecognized option --zzz (see samkit segment --help)" in err


def test_mistyped_command_gets_a_suggestion(capsys):
    err = _usage_error(["segmnt", "img.jpg"], capsys)
    assert "unknown command 'segmnt'; did you mean segment?" in err
    assert "choose from segment, auto" in err
    err = _usage_error(["export", "onx"], capsys)
    assert err.startswith("usage: samkit export") and "did you mean onnx?" in err
    err = _usage_error(["xyzzy"], capsys)
    assert "unknown command 'xyzzy' (choose from" in err


def test_extra_words_are_reported_by_the_command(capsys):
    err = _usage_error(["segment", "a.jpg", "b.jpg", "--out", "o"], capsys)
    assert err.startswith("usage: samkit segment")
    assert "samkit segment: error: unrecognized arguments: b.jpg" in err


def test_the_word_check_keeps_what_argparse_accepts():
    parser = build_parser()
    args = parser.parse_args(
        ["segment", "x.jpg", "--out=o", "--multi", "--point", "-10,-10", "--box", "-5,-5,3,3"]
    )
    assert args.multimask and args.out == "o"  # an unambiguous prefix still works
    assert args.point == [(-10.0, -10.0, 1)] and args.box == [(-5.0, -5.0, 3.0, 3.0)]
    args = parser.parse_args(["auto", "d", "--out", "o", "--stability-score-offset", "-0.5"])
    assert args.stability_score_offset == -0.5
    args = parser.parse_args(["segment", "--out", "o", "--", "-odd-name.jpg"])
    assert args.image == "-odd-name.jpg"
    assert isinstance(args.func, str) and args.func.endswith(":cmd_segment")


def test_did_you_mean():
    options = ["--point", "--box", "--out", "--checkpoint", "--max-pixels", "--help"]
    assert did_you_mean("--piont", options) == "--point"
    assert did_you_mean("--maxpixels", options) == "--max-pixels"
    assert did_you_mean("--x", options) is None
    assert did_you_mean("evl", ["eval", "eval-video", "embed"]) == "eval"


def test_export_help_states_the_exporters_default_opset():
    from samkit.cli.export import HELP_DEFAULT_OPSET
    from samkit.export.sam import DEFAULT_OPSET

    assert HELP_DEFAULT_OPSET == DEFAULT_OPSET


def _subparsers() -> dict:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


# ------------------------------------------------------------------ negative coordinates


@pytest.mark.parametrize(
    ("argv", "points", "boxes"),
    [
        (["--point", "-10,-10"], [(-10.0, -10.0, 1)], []),
        (["--point", "-10,-10,0", "--point", "5,-3"], [(-10.0, -10.0, 0), (5.0, -3.0, 1)], []),
        (["--point=-1.5,2"], [(-1.5, 2.0, 1)], []),
        (["--box", "-5,-6.5,10,1e2"], [], [(-5.0, -6.5, 10.0, 100.0)]),
        (
            ["--box", "-5,-5,10,10", "--point", "-1,-1"],
            [(-1.0, -1.0, 1)],
            [(-5.0, -5.0, 10.0, 10.0)],
        ),
    ],
)
def test_negative_coordinates_parse(argv, points, boxes):
    args = build_parser().parse_args(["segment", "img.png", *argv, "--out", "o"])
    assert args.point == points and args.box == boxes and args.out == "o"


def test_an_option_after_point_is_still_an_option(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["segment", "img.png", "--point", "--out", "o"])
    assert e.value.code == 2
    assert "--point: expected one argument" in capsys.readouterr().err


# ------------------------------------------------------------------ --help, --version, names


def test_help_has_no_noise():
    for name, p in _subparsers().items():
        text = p.format_help()
        for noise in ("(default: None)", "(default: [])", "(default: False)", "3413333"):
            assert noise not in text, (name, noise)
        assert not re.search(r"\(default[^)]*\) \(default", text), name
    serve = " ".join(_subparsers()["serve"].format_help().split())
    assert "--port PORT TCP port to listen on (default: 8000)" in serve
    auto = " ".join(_subparsers()["auto"].format_help().split())
    assert "overlap of layer-1 crops (default: 0.3413)" in auto
    seg = " ".join(_subparsers()["segment"].format_help().split())
    assert "torch device, e.g. cpu or cuda (default cpu)" in seg


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"samkit {samkit.__version__}"


def test_variant_names_ignore_case_and_suggest():
    assert get_variant("VIT_B").name == "vit_b"
    assert get_variant("Sam2.1_Hiera_T").name == "sam2.1_hiera_t"
    with pytest.raises(ValueError, match=r"did you mean 'vit_b'") as e:
        get_variant("vit-b")
    assert "known variants: vit_b, vit_l, vit_h, sam2_hiera_t" in str(e.value)
    with pytest.raises(ValueError) as e:
        get_variant("resnet50")
    assert "did you mean" not in str(e.value)


def test_cli_unknown_model_suggests_and_upper_case_works(tmp_path, capsys):
    image = str(FIXTURES / "sam1_shapes" / "shapes_1.png")
    code = main(["embed", image, "--out", str(tmp_path), "--model", "vit_bb", "--random-weights"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'vit_b'" in err and "Traceback" not in err
    # VIT_B is vit_b (random weights: no download needed)
    assert main(["info"]) == 0
    capsys.readouterr()
    lm = load_model("VIT_B", random_weights=True)
    assert lm.family == "sam1" and lm.model.image_encoder.img_size == 1024
    capsys.readouterr()
