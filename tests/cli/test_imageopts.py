"""`--max-pixels N` on every command that decodes image files (segment, auto, embed, serve):
one rule, and the refusal of a large image names the option (issue #24, section 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import samkit.distributed as dist
from samkit.cli import build_parser
from samkit.distributed import run as dist_run
from samkit.distributed.run import RunSummary
from samkit.train.synthetic import make_shapes_dataset, write_folder_dataset
from tests.cli.conftest import MODEL, SHAPES, run_cli

SMALL = SHAPES / "shapes_1.png"  # 640 x 480 = 307,200 pixels
AUTO = ["--points-per-side", "2", "--quiet"]


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory) -> Path:
    """A folder with a real 12000 x 9000 PNG (1-bit, a flat colour: 13 kB on disk)."""
    d = tmp_path_factory.mktemp("big")
    Image.new("1", (12000, 9000), 1).save(d / "big.png")
    return d


def test_segment_refuses_a_large_image_and_names_the_option(big_dir, tmp_path, capsys):
    big = big_dir / "big.png"
    code, _, err = run_cli(["segment", str(big), "--point", "5,5", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert f"samkit segment: error: {big} is too large: 12000x9000 = 108,000,000 pixels" in err
    assert "over the limit of 64,000,000 pixels" in err and "pass --max-pixels N" in err
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


@pytest.mark.parametrize("command", ["auto", "embed"])
def test_auto_and_embed_report_a_large_image_with_the_option(command, big_dir, tmp_path, capsys):
    extra = AUTO if command == "auto" else []
    argv = [command, str(big_dir), "--out", str(tmp_path / "o"), *extra, *MODEL]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 1  # the image failed, the run went on
    if command == "auto":
        assert "0 images segmented, 0 skipped (already complete), 1 failed" in stdout
    assert "big.png is too large: 12000x9000 = 108,000,000 pixels" in err
    assert "pass --max-pixels N" in err


@pytest.mark.parametrize("command", ["segment", "auto", "embed"])
def test_max_pixels_reaches_the_decoder(command, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SMALL, src / "s.png")
    prompt = ["--point", "100,100"] if command == "segment" else []
    extra = AUTO if command == "auto" else []
    target = str(src / "s.png") if command == "segment" else str(src)
    base = [command, target, *prompt, "--out", str(tmp_path / "o"), *extra, *MODEL]
    code, _, err = run_cli([*base, "--max-pixels", "307,199"], capsys)
    assert code == (2 if command == "segment" else 1)
    assert "640x480 = 307,200 pixels, over the limit of 307,199 pixels" in err
    if command == "segment":  # the exact size is allowed
        code, stdout, err = run_cli([*base, "--max-pixels", "307200"], capsys)
        assert code == 0, err
        assert "s_overlay.png" in stdout


def test_every_image_command_has_the_option_with_one_rule(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    defaults = {"segment": 64_000_000, "auto": 64_000_000, "embed": 64_000_000}
    defaults["serve"] = 40_000_000  # uploads from the network: a stricter default
    for name, default in defaults.items():
        text = " ".join(sub.choices[name].format_help().split())
        assert "--max-pixels N largest image to decode, in pixels (width x height)" in text
        assert f"(default: {default:,})" in text
        args = parser.parse_args([name, "x", "--out", "o"] if name != "serve" else [name])
        assert args.max_pixels == default
    args = parser.parse_args(["auto", "x", "--out", "o", "--max-pixels", "120_000_000"])
    assert args.max_pixels == 120_000_000
    for bad in ("0", "-1", "1e8", "none"):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["serve", f"--max-pixels={bad}"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: samkit serve") and "argument --max-pixels" in err
        assert "positive" in err


@pytest.mark.parametrize("command", ["finetune", "eval"])
def test_finetune_and_eval_read_their_dataset_under_the_limit(command, tmp_path, capsys):

    data = write_folder_dataset(make_shapes_dataset(2, seed=3, size=(96, 128)), tmp_path / "d")
    argv = [command, "--data", str(data), "--out", str(tmp_path / "o"), *MODEL[2:]]
    code, _, err = run_cli([*argv, "--max-pixels", "12287"], capsys)  # 128 x 96 = 12,288
    assert code == 2
    assert "128x96 = 12,288 pixels, over the limit of 12,287 pixels" in err
    assert "pass --max-pixels N" in err
    assert build_parser().parse_args(argv).max_pixels == 64_000_000


@pytest.mark.parametrize("command", ["auto", "embed"])
def test_ray_runs_get_the_limit(command, tmp_path, monkeypatch, capsys):

    monkeypatch.setattr(dist_run, "import_ray", lambda: None)  # the arguments, not Ray, tested

    seen: dict = {}

    def run(inputs, out_dir, **kwargs):  # stands in for label_images / embed_images
        seen.update(kwargs)
        return RunSummary(manifest=tmp_path / "manifest.parquet")

    name = "label_images" if command == "auto" else "embed_images"
    monkeypatch.setattr(dist, name, run, raising=False)
    argv = [command, str(SMALL), "--out", str(tmp_path / "o"), "--ray", *MODEL]
    code, _, err = run_cli([*argv, "--max-pixels", "5000"], capsys)
    assert code == 0, err
    assert seen["max_pixels"] == 5000
