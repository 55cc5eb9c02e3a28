"""Atomic writes give outputs the user's normal permissions (umask), and one mask PNG format."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli import main
from samkit.io.atomic import atomic_path, atomic_write_bytes
from samkit.io.masks import mask_png_bytes, write_mask_png
from tests.conftest import FIXTURES

SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writers_follow_the_umask(tmp_path, mask):
    from samkit.amg.io import write_coco_json
    from samkit.io.embeddings import save_embedding

    with umask(mask):
        a = atomic_write_bytes(tmp_path / "a.bin", b"abc")
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("b")
        write_coco_json(tmp_path / "c.json", {"height": 2, "width": 2}, [])
        save_embedding(
            tmp_path / "d.safetensors",
            torch.zeros(1, 4, 2, 2),
            variant="x",
            family="sam1",
            original_size=(2, 2),
            input_size=(2, 2),
            img_size=2,
        )
        write_mask_png(tmp_path / "e.png", np.eye(3, dtype=bool))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.bin", "b.txt", "c.json", "d.safetensors", "e.png"]  # no temporaries left
    assert a.read_bytes() == b"abc"
    for p in tmp_path.iterdir():
        assert _mode(p) == 0o666 & ~mask, (p.name, oct(_mode(p)))


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_segment_auto_embed_outputs_follow_the_umask(tmp_path, mask, capsys):
    image = str(SHAPES / "shapes_1.png")
    with umask(mask):
        assert (
            main(["segment", image, "--point", "200,150", "--out", str(tmp_path / "s"), *MODEL])
            == 0
        )
        assert main(
            ["auto", image, "--out", str(tmp_path / "a"), "--points-per-side", "2", "--quiet", *MODEL]
        ) == 0  # fmt: skip
        assert main(["embed", image, "--out", str(tmp_path / "e"), *MODEL]) == 0
    capsys.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} == {"s", "a", "e"} and len(files) == 7  # auto: 3
    for p in files:
        assert not p.name.endswith(".tmp")
        assert _mode(p) == 0o666 & ~mask, (str(p.relative_to(tmp_path)), oct(_mode(p)))


def test_the_one_mask_png_format(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:6] = True
    data = mask_png_bytes(mask)
    p = tmp_path / "m.png"
    p.write_bytes(data)
    with Image.open(p) as im:
        assert im.mode == "1" and im.size == (7, 5)
        np.testing.assert_array_equal(np.array(im), mask)
        np.testing.assert_array_equal(np.array(im.convert("L")), mask * 255)
    assert mask_png_bytes(mask.astype(np.uint8) * 255) == data  # any non-zero is the object
    for bad in (np.zeros(3), np.zeros((2, 2, 2)), np.zeros((0, 4))):
        with pytest.raises(ValueError, match="HxW"):
            mask_png_bytes(bad)


def test_segment_json_points_at_its_pngs(tmp_path, capsys):
    # the CLI writes its mask PNGs with the shared writer: same bytes as mask_png_bytes
    from tests.server.conftest import coco_decode

    image = str(SHAPES / "shapes_1.png")
    assert main(["segment", image, "--point", "200,150", "--out", str(tmp_path), *MODEL]) == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / "shapes_1.json").read_text())
    rec = doc["masks"][0]
    m = coco_decode(rec["segmentation"])
    assert (tmp_path / rec["file"]).read_bytes() == mask_png_bytes(m)


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    from samkit.io.atomic import is_temporary, remove_stale_temporaries, temporary_sibling

    stale = [temporary_sibling(tmp_path / n) for n in ("a.json", "a_overlay.png", "b.json")]
    keep = ["a.json", "notes.tmp", "a.json.tmp", "a.json.12.xyz.tmp", "a.json.1.0123456789ab.tmpx"]
    for p in stale:
        p.write_bytes(b"partial")
    for n in keep:
        (tmp_path / n).write_bytes(b"mine")
    (tmp_path / "sub").mkdir()
    deeper = temporary_sibling(tmp_path / "sub" / "c.json")
    deeper.write_bytes(b"partial")
    assert all(is_temporary(p) for p in stale) and not any(is_temporary(n) for n in keep)

    # only the named outputs' temporaries
    assert remove_stale_temporaries(tmp_path, ["a.json"]) == [stale[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*keep, "sub", stale[1].name, stale[2].name]
    )
    # every temporary of the folder, not of its subfolders
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "sub"])
    assert deeper.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    from samkit.io.atomic import atomic_dir, remove_stale_temporaries

    final = tmp_path / "ckpt" / "step_1"
    with atomic_dir(final) as tmp:
        (tmp / "a.bin").write_bytes(b"a")
        assert not final.exists()
    assert sorted(p.name for p in final.iterdir()) == ["a.bin"]
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "b.bin").write_bytes(b"b")
        raise KeyboardInterrupt
    assert sorted(p.name for p in final.parent.iterdir()) == ["step_1"]  # old one kept
    with atomic_dir(final) as tmp:  # a new one replaces the old one
        (tmp / "c.bin").write_bytes(b"c")
    assert sorted(p.name for p in final.iterdir()) == ["c.bin"]
    # a killed save leaves its folder: removed as a stale temporary
    (tmp_path / "ckpt" / "step_2.123.0123456789ab.tmp").mkdir()
    (tmp_path / "ckpt" / "step_2.123.0123456789ab.tmp" / "x").write_bytes(b"partial")
    assert [p.name for p in remove_stale_temporaries(tmp_path / "ckpt")] == [
        "step_2.123.0123456789ab.tmp"
    ]
    assert sorted(p.name for p in final.parent.iterdir()) == ["step_1"]
