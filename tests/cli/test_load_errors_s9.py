"""How the command line reports a model it cannot build: every path of `load_model` (and of
`samkit finetune` / `eval`) raises a `CliError` with the command-line wording, the "does not fit"
advice is given once, and the real `samkit` prints one `error:` message, exit status 2, no
traceback. Runs on the tiny fixture checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samkit.cli import CliError, load_model
from tests.cli.conftest import run_cli
from tests.conftest import FIXTURES, ROOT
from tests.processes import samkit_env

IMAGE = str(FIXTURES / "sam1_shapes" / "shapes_1.png")
SAM1 = str(FIXTURES / "sam1_tiny" / "sam1_tiny.pth")
SAM2 = str(FIXTURES / "sam2_tiny" / "sam2_tiny.pt")
MOBILE = str(ROOT / "tests" / "fixtures" / "mobile_sam" / "mobile_sam_tiny.pt")


def _segment(args: list[str], out: Path, capsys) -> tuple[int, str]:
    code, _, err = run_cli(["segment", IMAGE, "--point", "20,20", *args, "--out", str(out)], capsys)
    return code, err


@pytest.mark.parametrize(
    ("model", "checkpoint"), [("vit_b", SAM1), ("mobile_sam", MOBILE), ("sam2.1_hiera_t", SAM2)]
)
def test_does_not_fit_gives_its_advice_once(model, checkpoint, tmp_path, capsys):
    code, err = _segment(["--model", model, "--checkpoint", checkpoint], tmp_path, capsys)
    assert code == 2, err
    first, *rest = err.split("error: ", 1)[1].splitlines()
    assert first.startswith("this checkpoint is ") and f"not {model!r}: " in first, first
    advice = first.split(": ", 1)[1]  # what to do, said in the first line
    rest_text = "\n".join(rest)
    for words in ("leave --model out", "pass --model", "as --model", "made with"):
        if words in advice:
            assert words not in rest_text, err  # not said again at the end
    assert "does not fit" in rest_text and "tensors" in rest_text  # the key report follows
    assert rest[-1].strip() == f"--checkpoint {checkpoint} has the layout of no samkit variant"


def test_load_model_raises_cli_errors_for_every_refused_model():
    with pytest.raises(CliError, match="custom SAM 2 architecture needs its config"):
        load_model(None, SAM2, device="meta")  # no --model
    with pytest.raises(CliError, match="is a SAM 2 checkpoint, not a SAM 1 one"):
        load_model("vit_b", SAM2, device="meta")  # another family's file, a variant name
    with pytest.raises(CliError, match="does not fit"):
        load_model("vit_b", SAM1, device="meta")


def _samkit(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samkit", *argv],
        capture_output=True,
        text=True,
        env=samkit_env(OMP_NUM_THREADS="1"),
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--checkpoint", SAM2], "custom SAM 2 architecture needs its config"),
        (["--model", "vit_b", "--checkpoint", SAM2], "is a SAM 2 checkpoint, not a SAM 1 one"),
    ],
)
def test_the_real_cli_prints_one_error_line(args, says, tmp_path):
    r = _samkit("segment", IMAGE, "--point", "20,20", *args, "--out", "o", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("samkit segment: error: "), r.stderr
    assert says in lines[0] and "build_sam" not in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_eval_words_a_misfit_as_the_other_commands(tmp_path, capsys):
    from samkit.train.synthetic import make_shapes_dataset, write_folder_dataset

    data = write_folder_dataset(make_shapes_dataset(1, seed=0, size=(48, 64)), tmp_path / "d")
    argv = ["eval", "--data", str(data), "--out", str(tmp_path / "e"), "--no-progress"]
    code, _, err = run_cli([*argv, "--model", "vit_b", "--checkpoint", SAM1], capsys)
    assert code == 2, err
    assert err.split("error: ", 1)[1].startswith("this checkpoint is a 64-wide, 4-block ViT")
    assert "build_sam(" not in err and "112 tensors missing" in err, err  # summarised
    code, _, err = run_cli([*argv, "--checkpoint", str(tmp_path / "nope.pth")], capsys)
    assert code == 2 and f"--checkpoint {tmp_path / 'nope.pth'}: no such file" in err, err
