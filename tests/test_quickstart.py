"""examples/quickstart.py and the README's set-up, as a newcomer meets them in their first hour
(issue 15, part 6): offline, the first command says why and shows the built-in demo; --demo;
masks and overlay as the predictor gives them; clean errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from samkit import SamPredictor
from samkit.cli import main
from samkit.configs import sam as configs
from samkit.io.masks import mask_png_bytes
from samkit.train.demo import build_demo_model, deepest_point, demo_sample, segment
from tests.conftest import FIXTURES, IMAGES, ROOT, load_rgb
from tests.processes import closed_port


def _quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """vit_b's URL points at a closed port and the cache is empty: the first command's failure."""
    v = configs.get_variant("vit_b")
    url = f"http://127.0.0.1:{closed_port()}/{v.filename}"
    monkeypatch.setitem(configs.VARIANTS, "vit_b", dataclasses.replace(v, url=url))
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    return url


def test_offline_first_command_says_why_and_shows_the_demo(tmp_path, offline, capsys):
    """The README's first command offline: the download advice, then the built-in demo's masks."""
    out = tmp_path / "o"
    argv = [str(IMAGES / "truck.jpg"), "--point", "500,375", "--out", str(out)]
    code = _quickstart().main(argv)
    captured = capsys.readouterr()
    err, stdout = captured.err, captured.out
    assert code == 0 and "Traceback" not in err
    assert offline in err and "--checkpoint PATH" in err and "--random-weights" in err
    assert "truck.jpg is not segmented" in err and "built-in demo" in err and "--demo" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "demo_shapes.png",
        "demo_shapes_mask.png",
        "demo_shapes_overlay.png",
    ]
    sample = demo_sample()
    with Image.open(out / "demo_shapes.png") as im:
        np.testing.assert_array_equal(np.array(im), sample.image)
    mask = np.array(Image.open(out / "demo_shapes_mask.png")) > 0
    expected, _, iou = segment(build_demo_model(), sample)
    np.testing.assert_array_equal(mask, expected)
    truth = sample.masks[sample.shape_at(*sample.point)]
    assert iou >= 0.85 and (mask & truth).sum() / (mask | truth).sum() == pytest.approx(iou)
    assert f"{iou:.3f}" in stdout and "IoU with the true shape" in stdout
    with Image.open(out / "demo_shapes_overlay.png") as im:
        overlay = np.array(im.convert("RGB"))
    changed = (overlay != sample.image).any(-1)
    assert changed[mask].mean() > 0.9 and changed[~mask].mean() < 0.05  # the mask is drawn
    # the CLI keeps its own advice (no demo there)
    code = main(["segment", str(IMAGES / "truck.jpg"), "--point", "1,1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--random-weights" in err


def test_quickstart_demo_flag(tmp_path, capsys):
    qs = _quickstart()
    assert qs.main(["--demo", "--out", str(tmp_path / "a")]) == 0
    assert "IoU with the true shape" in capsys.readouterr().out
    # a point of the user's on the demo image: the shape under it is compared
    sample = demo_sample()
    small = next(k for k in range(3) if k != sample.shape_at(*sample.point))
    x, y = deepest_point(sample.masks[small])
    assert qs.main(["--demo", "--point", f"{x},{y}", "--out", str(tmp_path / "b")]) == 0
    _, _, iou = segment(build_demo_model(), sample, (x, y))
    assert f"IoU with the true shape under the point ({x}, {y}): {iou:.3f}" in (
        capsys.readouterr().out
    )
    # outside the image or on the background: no comparison, still a mask
    assert qs.main(["--demo", "--point=-5,-5", "--out", str(tmp_path / "c")]) == 0
    assert "is outside the 512x384 image" in capsys.readouterr().out
    bx, by = next(
        (x, y) for y in range(0, 384, 8) for x in range(0, 512, 8) if sample.shape_at(x, y) is None
    )
    assert qs.main(["--demo", "--point", f"{bx},{by}", "--out", str(tmp_path / "c2")]) == 0
    assert "on the background" in capsys.readouterr().out
    # --demo IMAGE: the demo model on the user's image, with a note
    image = FIXTURES / "sam1_shapes" / "shapes_1.png"
    assert qs.main([str(image), "--demo", "--out", str(tmp_path / "d")]) == 0
    assert "only knows generated shapes" in capsys.readouterr().err
    assert (tmp_path / "d" / "shapes_1_mask.png").is_file()
    # no image and no --demo: a usage error naming both
    with pytest.raises(SystemExit) as e:
        qs.main(["--out", str(tmp_path / "e")])
    assert e.value.code == 2 and "--demo" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --demo and a checkpoint exclude each other
        qs.main(["--demo", "--checkpoint", "x.pth"])


def test_readme_gives_the_offline_path_and_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = setup.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "--random-weights" in setup and "--checkpoint PATH" in setup
    assert "chromium" in setup and "minutes" in setup
    # offline: what runs instead and what a user sees
    assert "--demo" in setup and "out/demo_shapes_overlay.png" in setup
    # a quick subset next to the full run, and the progress lines
    assert 'python -m pytest -q -m "not slow"' in setup and "--progress-after" in setup
    # CI runs the README's test command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1].replace("python ", "python3 ", 1).strip() in ci, (commands[1], ci)


def test_quickstart_writes_mask_and_overlay(tmp_path, sam1_tiny, capsys):
    ckpt = FIXTURES / "sam1_tiny" / "sam1_tiny.pth"
    argv = [str(IMAGES / "dog.jpg"), "--point", "400,260", "--checkpoint", str(ckpt)]
    assert _quickstart().main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dog_mask.png" in out and "dog_overlay.png" in out
    predictor = SamPredictor(sam1_tiny)
    image = load_rgb("dog.jpg")
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[400, 260]]), np.array([1]))
    best = masks[int(np.argmax(scores))]
    assert (tmp_path / "dog_mask.png").read_bytes() == mask_png_bytes(best)  # the one format
    with Image.open(tmp_path / "dog_overlay.png") as im:
        overlay = np.array(im.convert("RGB"))
    assert overlay.shape == image.shape
    changed = (overlay != image).any(-1)
    assert changed[best].mean() > 0.9 and changed[~best].mean() < 0.05  # the mask is drawn


def test_quickstart_errors_are_clean(tmp_path, capsys):
    qs = _quickstart()
    code = qs.main([str(IMAGES / "dog.jpg"), "--model", "vit_x", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown samkit variant 'vit_x'; did you mean")
    code = qs.main([str(tmp_path / "missing.jpg"), "--random-weights", "--out", str(tmp_path)])
    assert code == 2 and "missing.jpg" in capsys.readouterr().err
    code = qs.main([str(IMAGES / "dog.jpg"), "--point", "1", "--random-weights"])
    assert code == 2 and "expected X,Y" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a checkpoint and random weights exclude each other
        qs.main([str(IMAGES / "dog.jpg"), "--random-weights", "--checkpoint", "x.pth"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_quickstart_random_weights_runs_offline(tmp_path, offline):
    # the README's offline path, as a user runs it: a fresh process, vit_b with random weights
    small = tmp_path / "small.png"
    Image.fromarray(load_rgb("truck.jpg")[::8, ::8]).save(small)
    env_py = {"PYTHONPATH": str(ROOT / "src"), "SAMKIT_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(small), "--random-weights",
         "--out", str(tmp_path / "o")],
        env={**os.environ, **env_py}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "MEANINGLESS" in r.stderr
    assert (tmp_path / "o" / "small_mask.png").is_file()
    assert (tmp_path / "o" / "small_overlay.png").is_file()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
