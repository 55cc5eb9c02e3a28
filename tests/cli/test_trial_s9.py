"""Messages found by the session-9 new-user trial of `samkit`: a video given where images are
read says to use `samkit track`, `samkit track` words a model it cannot build as `samkit
segment` does (flags, summarised key reports; no Python calls), and `samkit finetune` / `eval`
refuse a family without fine-tuning and a missing --data before anything else is read or
printed. Runs `samkit` in process on the tiny fixture checkpoints and a 6-frame clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import run_cli
from tests.conftest import FIXTURES, IMAGES

SAM1 = str(FIXTURES / "sam1_tiny" / "sam1_tiny.pth")
SAM2 = str(FIXTURES / "sam2_tiny" / "sam2_tiny.pt")
SAM2_CONFIG = str(FIXTURES / "sam2_tiny" / "config.json")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    from tests.video.clips import encode_video, moving_shapes

    folder = tmp_path_factory.mktemp("clip")
    return encode_video(folder / "shapes.mp4", moving_shapes(6, 48, 64))


def _error(err: str) -> str:
    return err.split("error: ", 1)[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "{clip}", "--point", "5,5"],
        ["embed", "{clip}"],
        ["auto", "{clip}", "--points-per-side", "2"],
    ],
)
def test_a_video_where_images_are_read_points_to_track(argv, clip, tmp_path, capsys):
    out = tmp_path / "out"
    args = [a.format(clip=clip) for a in argv] + ["--checkpoint", SAM1, "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    message = _error(err)
    assert message.startswith(f"{clip} is a video; this command reads images (.png, .jpg"), err
    assert f"`samkit track {clip}`" in message and "\n" not in message.strip(), err
    assert not out.exists()  # refused before any output or model


def test_a_folder_of_videos_says_what_it_holds(clip, tmp_path, capsys):
    code, _, err = run_cli(["auto", str(clip.parent), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and f"no image files in {clip.parent}" in err, err
    assert "it holds videos (shapes.mp4): segment a video with `samkit track VIDEO`" in err
    # a folder with images and a video: the images are segmented as before (no refusal)
    code, _, err = run_cli(
        ["embed", str(IMAGES / "dog.jpg"), "--checkpoint", SAM1, "--out", str(tmp_path / "e")],
        capsys,
    )
    assert code == 0, err


def _track(clip: Path, model: list[str], out: Path, capsys) -> tuple[int, str]:
    argv = ["track", str(clip), "--point", "0:1:10,10", *model, "--out", str(out), "--quiet"]
    code, _, err = run_cli(argv, capsys)
    return code, err


def test_track_words_a_model_it_cannot_build_as_segment_does(clip, tmp_path, capsys):
    # a variant with a checkpoint of another size: the advice in flags, the key report summarised
    code, err = _track(clip, ["--model", "sam2.1_hiera_t", "--checkpoint", SAM2], tmp_path, capsys)
    assert code == 2, err
    first = _error(err).splitlines()[0]
    assert first == (
        "this checkpoint is a 16-wide, 7-block Hiera of no registered size, not "
        "'sam2.1_hiera_t': pass the config.json it was made with as --model"
    ), err
    assert "build_sam2" not in err and "tensors missing from the checkpoint" in err, err
    # a config of one family and a checkpoint of another: what builds the checkpoint
    code, err = _track(clip, ["--model", SAM2_CONFIG, "--checkpoint", SAM1], tmp_path, capsys)
    assert code == 2 and "is a SAM 1 checkpoint, not a SAM 2 one" in err, err
    assert "load it with build_sam" not in err and "Leave --model out" in err, err
    # a custom checkpoint alone: its config.json, in flags
    code, err = _track(clip, ["--checkpoint", SAM2], tmp_path, capsys)
    assert code == 2 and "--model CONFIG.json" in err, err
    assert "variant_or_config" not in err and "Sam2Config" not in err, err
    # (the advice works: tests/video/test_cli_video.py tracks with this config and checkpoint)


@pytest.mark.parametrize("command", ["finetune", "eval"])
def test_training_commands_refuse_before_reading_data_or_warning(command, tmp_path, capsys):
    out = str(tmp_path / "o")
    data = str(tmp_path)  # exists: the family is refused before the folder is read
    code, _, err = run_cli([command, "--data", data, "--out", out, "--model", "sam3"], capsys)
    assert code == 2, err
    assert err.strip().splitlines() == [err.strip()], err  # no warnings before it
    assert f"samkit {command} cannot use a SAM 3 model" in err and "--model vit_b" in err, err
    code, _, err = run_cli([command, "--data", "nope", "--out", out, "--checkpoint", SAM1], capsys)
    assert code == 2, err
    assert _error(err).strip() == (
        "--data nope: dataset not found; expected a DATA folder (images/ + masks/) or a COCO .json"
    ), err


@pytest.mark.parametrize("given", ["image", "missing", "other"])
def test_an_embedding_that_is_none_says_what_embedding_takes(given, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    path = {
        "image": str(IMAGES / "dog.jpg"),
        "missing": str(tmp_path / "nope.safetensors"),
        "other": str(tmp_path / "w.safetensors"),
    }[given]
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    argv = ["segment", str(IMAGES / "dog.jpg"), "--point", "1,1", "--embedding", path]
    code, _, err = run_cli([*argv, "--checkpoint", SAM1, "--out", str(tmp_path / "o")], capsys)
    assert code == 2, err
    message = _error(err).strip()
    assert message.startswith(f"--embedding {path}: "), err
    assert message.endswith(
        "; expected the .safetensors file `samkit embed IMAGE --out DIR` writes for this image"
    ), err
    says = {
        "image": "not a safetensors file",
        "missing": "no such file",
        "other": "not a samkit embedding",
    }
    assert says[given] in message and "\n" not in message, err


def test_download_of_sam3_says_where_to_get_its_gated_file(tmp_path, capsys):
    code, out, err = run_cli(["download", "SAM3", "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and "unknown samkit variant" not in err, err
    assert _error(err).strip() == (
        "SAM3: samkit does not download sam3.pt (Meta gates it): request access at "
        f"https://huggingface.co/facebook/sam3, download sam3.pt and put it at {tmp_path / 'sam3.pt'}"
        ", or pass its path as --checkpoint PATH"
    ), err
    (tmp_path / "sam3.pt").write_bytes(b"")  # in the cache: download prints its path
    code, out, err = run_cli(["download", "sam3", "--cache-dir", str(tmp_path)], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "sam3.pt"), err
    code, out, _ = run_cli(["info", "--cache-dir", str(tmp_path)], capsys)
    assert code == 0 and any(
        line.split()[:4] == ["sam3", "sam3", "sam3.pt", "yes"] for line in out.splitlines()
    ), out
