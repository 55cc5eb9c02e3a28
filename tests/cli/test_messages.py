"""What a newcomer trial of the command line found: messages that say what was wrong and what to
pass (no `[Errno ...]`, no bare key lists), the model an embedding file names, every model name
listed (aliases such as MobileSAM's official `vit_t`, and `sam3`), the public names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit import build_mobile_sam
from samkit.cli.info import checkpoint_hint, checkpoint_lookalikes
from samkit.io.embeddings import save_embedding
from samkit.video.frames.sources import open_video
from tests.cli.conftest import MODEL, run_cli
from tests.conftest import IMAGES, load_rgb

DOG = str(IMAGES / "dog.jpg")


def test_track_given_one_image_says_it_is_an_image(tmp_path, capsys):
    code, _, err = run_cli(["track", DOG, "--point", "1,1", "--out", str(tmp_path)], capsys)
    assert code == 2 and "dog.jpg is a single image, not a video" in err
    assert "folder of frames" in err and "samkit segment" in err and "damaged" not in err
    with pytest.raises(ValueError, match="single image"):
        open_video(IMAGES / "dog.jpg")


def test_missing_images_and_out_files_are_named_without_errno(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    seg = ["segment", "--point", "1,1", *MODEL]
    cases = [
        ([*seg, str(tmp_path / "nope.jpg"), "--out", str(tmp_path)], "nope.jpg: no such image"),
        ([*seg, DOG, "--out", str(a_file)], "file.txt is a file; --out names the folder"),
        ([*seg, DOG, "--out", str(a_file / "sub")], "file.txt is a file, so no folder"),
        ([*seg, str(tmp_path), "--out", str(tmp_path / "o")], "is a folder, not an image"),
        (["auto", DOG, *MODEL, "--out", str(a_file)], "file.txt is a file; --out names"),
        (["embed", DOG, *MODEL, "--out", str(a_file)], "file.txt is a file; --out names"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and message in err and "Errno" not in err, (argv, err)


@pytest.fixture(scope="module")
def dog_embedding(tmp_path_factory, predictor):
    """dog.jpg's embedding by the sam1_shapes fixture model (its --model is a config path)."""
    path = tmp_path_factory.mktemp("emb") / "dog.safetensors"
    predictor.set_image(load_rgb("dog.jpg"))
    return predictor.save_embedding(path, load_rgb("dog.jpg"), variant=MODEL[1])


def test_segment_embedding_uses_the_model_it_names(tmp_path, predictor, dog_embedding, capsys):
    argv = ["segment", DOG, "--point", "300,200", "--multimask", "--embedding", str(dog_embedding)]
    # the file names a config: its checkpoint is still needed, and the message says so
    code, _, err = run_cli([*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and f"using {MODEL[1]}, the model --embedding" in err
    assert "--checkpoint" in err
    code, _, err = run_cli([*argv, "--checkpoint", MODEL[3], "--out", str(tmp_path)], capsys)
    assert code == 0, err
    predictor.set_image(load_rgb("dog.jpg"))
    ref = predictor.predict(np.array([[300, 200]]), np.array([1]))[0]
    for i in range(3):
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / f"dog_mask_{i}.png")), ref[i])


def test_segment_embedding_of_a_named_variant(tmp_path, capsys):
    emb = tmp_path / "dog.safetensors"
    h, w = load_rgb("dog.jpg").shape[:2]
    save_embedding(emb, torch.zeros(1, 256, 64, 64), variant="vit_t", family="mobile_sam",
                   original_size=(h, w), input_size=(683, 1024), img_size=1024)  # fmt: skip
    argv = ["segment", DOG, "--point", "300,200", "--embedding", str(emb), "--out", str(tmp_path)]
    # another variant named: refused before any model is built
    code, _, err = run_cli([*argv, "--model", "vit_b", "--random-weights"], capsys)
    assert code == 2 and "computed by mobile_sam, but --model is vit_b" in err
    # no --model: the file's (vit_t is mobile_sam)
    code, _, err = run_cli([*argv, "--random-weights"], capsys)
    assert code == 0 and "using mobile_sam" in err, err
    assert json.loads((tmp_path / "dog.json").read_text())["model"] == "mobile_sam"


def test_a_checkpoint_of_another_size_is_named(tmp_path, capsys):
    torch.manual_seed(0)
    mobile = tmp_path / "mobile.pt"
    torch.save(build_mobile_sam("mobile_sam").state_dict(), mobile)
    assert checkpoint_lookalikes(str(mobile)) == ["mobile_sam"]
    hint = checkpoint_hint(str(mobile), "sam_hq_vit_tiny")
    assert "looks like a mobile_sam checkpoint, not sam_hq_vit_tiny" in hint
    assert "--model mobile_sam" in hint
    # a fixture-sized SAM 1 checkpoint with a SAM 1 variant: no variant has its layout
    code, _, err = run_cli(
        ["segment", DOG, "--point", "1,1", "--model", "vit_b", "--checkpoint", MODEL[3],
         "--out", str(tmp_path)], capsys)  # fmt: skip
    assert code == 2 and "does not fit" in err and "layout of no samkit variant" in err
    assert "leave --model out" in err


def test_info_lists_aliases_and_sam3_in_aligned_columns(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path))
    code, out, _ = run_cli(["info", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)["variants"]}
    assert code == 0 and "vit_t" in rows["mobile_sam"]["aliases"]
    assert rows["sam3"]["family"] == "sam3" and rows["sam3"]["file"] == "sam3.pt"
    code, out, _ = run_cli(["info"], capsys)
    table = out.splitlines()[2:]
    assert table[0].split() == ["variant", "family", "checkpoint", "present", "also", "named"]
    for column in ("family", "checkpoint", "present"):  # every row's cell starts there
        at = table[0].index(column)
        assert all(line[at - 2 : at] == "  " and line[at] != " " for line in table), column
    assert any(line.startswith("sam3 ") for line in table)
    assert any(
        line.startswith("mobile_sam ") and line.endswith("vit_t, mobilesam") for line in table
    )
    code, _, err = run_cli(["segment", DOG, "--point", "1,1", "--model", "vit_q",
                            "--out", str(tmp_path)], capsys)  # fmt: skip
    assert code == 2 and "mobile_sam (vit_t, mobilesam)" in err and err.rstrip().endswith("sam3")


def test_public_names():
    assert "Sam2AutomaticMaskGenerator" in samkit.__all__
    assert set(samkit.__all__) == set(samkit._EXPORTS)
    assert samkit.Sam2AutomaticMaskGenerator.__name__ == "Sam2AutomaticMaskGenerator"


def test_video_commands_take_sam3_by_name_and_say_where_its_weights_are(
    tmp_path, capsys, monkeypatch
):
    """`--model sam3` (or `--text` alone) on track / eval-video reaches SAM 3's own message on
    the gated sam3.pt, not "unknown samkit variant 'sam3'" (found by a newcomer trial)."""
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "empty_cache"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(frames / f"{i:05d}.jpg")
    out = str(tmp_path / "out")
    for argv in (
        ["track", str(frames), "--text", "car", "--model", "sam3", "--out", out],
        ["track", str(frames), "--text", "car", "--out", out],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert "sam3.pt" in err and "pass --checkpoint" in err, err
        assert "unknown samkit variant" not in err


def test_official_checkpoint_fetches_variants_even_when_a_family_has_the_same_name(monkeypatch):
    """`edgetam` is a variant and a family: its official file is fetched (never random weights
    in silence); `sam3` is only a family: its loader says where the gated file is."""
    import samkit.checkpoint as ckpt
    from samkit.build.loaded import official_checkpoint

    fetched: list[str] = []
    monkeypatch.setattr(ckpt, "fetch_checkpoint", lambda spec: fetched.append(spec) or "x.pt")
    assert official_checkpoint("edgetam", None, False) == "x.pt"
    assert official_checkpoint("sam2.1_hiera_t", None, False) == "x.pt"
    assert official_checkpoint("sam3", None, False) is None
    assert fetched == ["edgetam", "sam2.1_hiera_t"]
