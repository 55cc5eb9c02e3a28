"""`samkit auto --ray` / `samkit embed --ray` on a real local Ray instance (tests/distributed/
conftest.py), checked byte for byte against the single-process commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli import main
from samkit.jobs import DATASET_NAME
from tests.cli.conftest import AUTO_OPTS, MODEL, SHAPES
from tests.conftest import FIXTURES, IMAGES
from tests.distributed.conftest import descendants
from tests.processes import kill_at_first_output, samkit_env

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = FIXTURES / "sam1_tiny"


def _images(folder: Path, n_generated: int = 1, long_side: int = 160, shared: int = 3) -> list[str]:
    """Small copies of `shared` ../shared/images plus generated images (shapes on noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for src in sorted(IMAGES.glob("*.jpg"))[:shared]:
        with Image.open(src) as im:
            s = long_side / max(im.size)
            im.convert("RGB").resize((round(im.width * s), round(im.height * s))).save(
                folder / f"{src.stem}.png"
            )
        names.append(f"{src.stem}.png")
    rng = np.random.default_rng(0)
    for i in range(n_generated):
        a = rng.integers(0, 60, (120 + 8 * i, long_side, 3), dtype=np.uint8)
        a[20:70, 30:90] = (220, 40, 40)
        a[60:110, 100 - i : 150 - i] = (40, 200, 60)
        Image.fromarray(a).save(folder / f"gen{i}.png")
        names.append(f"gen{i}.png")
    return names


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "manifest.parquet"
    }


def _manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_auto_on_ray_writes_the_single_process_bytes(tmp_path, ray_address, capsys):
    src = tmp_path / "in"
    names = _images(src, n_generated=1, shared=2)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    one, dist = tmp_path / "one", tmp_path / "ray"
    # The 2 workers get 1 torch thread each (2 CPUs): float sums, and so predicted IoUs, can
    # differ in the last bit with another thread count, so the single-process run uses 1 too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["auto", str(src), "--out", str(one), *AUTO_OPTS, *MODEL, "--quiet"]) == 1
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    argv = ["auto", str(src), "--out", str(dist), *AUTO_OPTS, *MODEL, "--ray"]
    assert main([*argv, "--num-workers", "2"]) == 1  # the broken image fails, the others go on
    out = capsys.readouterr()
    assert "3 images segmented, 0 skipped" in out.out and "1 failed" in out.out
    assert f"COCO dataset {dist / DATASET_NAME}" in out.out
    assert "broken.jpg" in out.out and "images/s" in out.err and "4/4 images" in out.err

    expected = _files(one)
    assert sorted(expected) == sorted(
        [DATASET_NAME]
        + [
            n
            for name in names
            for n in (f"{Path(name).stem}.json", f"{Path(name).stem}_overlay.png")
        ]
    )
    assert _files(dist) == expected  # same files, same bytes (image ids, the dataset included)

    rows = _manifest(dist)
    assert [r["file_name"] for r in rows] == sorted(["broken.jpg", *names])
    assert [r["image_id"] for r in rows] == [1, 2, 3, 4]  # COCO ids: by file name
    dataset = json.loads((dist / DATASET_NAME).read_text())
    by_name = {r["file_name"]: r for r in rows}
    assert [(i["id"], i["file_name"]) for i in dataset["images"]] == [
        (by_name[n]["image_id"], n) for n in sorted(names)
    ]  # the failed image is left out
    ann_ids = [a["id"] for a in dataset["annotations"]]
    assert ann_ids == list(range(1, sum(by_name[n]["masks"] for n in names) + 1))
    for r in rows:
        if r["file_name"] == "broken.jpg":
            assert r["status"] == "failed" and r["masks"] is None
            assert "ImageDecodeError" in r["error"] and "broken.jpg" in r["error"]
        else:
            doc = json.loads((dist / f"{Path(r['file_name']).stem}.json").read_text())
            assert r["status"] == "done" and r["error"] == ""
            assert r["masks"] == len(doc["annotations"]) > 0
            assert r["seconds"] > 0 and r["worker"]
            assert r["path"] == str(src / r["file_name"])

    # Once the broken image is gone, a rerun has nothing to do: the complete images are skipped.
    (src / "broken.jpg").unlink()
    kept = [p for p in dist.iterdir() if p.suffix != ".parquet" and p.name != DATASET_NAME]
    mtimes = {p.name: p.stat().st_mtime_ns for p in kept}
    assert main([*argv, "--quiet"]) == 0
    assert "0 images segmented, 3 skipped" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in kept} == mtimes
    # the dataset is rebuilt from the per-image files, with the ids of this run's images
    rebuilt = json.loads((dist / DATASET_NAME).read_text())
    assert [(i["id"], i["file_name"]) for i in rebuilt["images"]] == [
        (k + 1, n) for k, n in enumerate(sorted(names))
    ]
    assert [a["segmentation"] for a in rebuilt["annotations"]] == [
        a["segmentation"] for a in dataset["annotations"]
    ]
    rerun = {r["file_name"]: r for r in _manifest(dist)}
    assert {n: rerun[n]["status"] for n in names} == dict.fromkeys(names, "skipped")
    assert {n: rerun[n]["masks"] for n in names} == {r["file_name"]: r["masks"] for r in rows[1:]}


def test_embed_on_ray_from_a_uri_writes_the_single_process_bytes(tmp_path, ray_address, capsys):
    from samkit.distributed import embed_images

    src = tmp_path / "in"
    names = _images(src, n_generated=1, long_side=96, shared=1)
    model = ["--model", str(TINY / "config.json"), "--checkpoint", str(TINY / "sam1_tiny.pth")]
    assert main(["embed", str(src), "--out", str(tmp_path / "one"), *model]) == 0
    summary = embed_images(
        [f"file://{src}/*.png"],  # a pyarrow URI with a glob, read by Ray Data's reader
        tmp_path / "ray",
        model=str(TINY / "config.json"),
        checkpoint=str(TINY / "sam1_tiny.pth"),
        num_workers=1,
        progress=False,
    )
    assert [r["status"] for r in summary.rows] == ["done", "done"]
    assert [r["path"] for r in summary.rows] == [f"file://{src}/{n}" for n in sorted(names)]
    expected = _files(tmp_path / "one")
    assert sorted(expected) == sorted(f"{Path(n).stem}.safetensors" for n in names)
    assert _files(tmp_path / "ray") == expected


def _assert_same_dataset(a: object, b: object, where: str = "dataset") -> None:
    """Equal JSON documents, floats within 1e-6 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), where
        for k in a:
            _assert_same_dataset(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_dataset(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where


def test_a_killed_run_resumes_with_each_image_done_once(tmp_path, ray_address, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    names = _images(src, n_generated=2, long_side=128, shared=2)
    argv = ["auto", str(src), "--out", str(out), *AUTO_OPTS, *MODEL, "--ray", "--num-workers", "1"]
    kill_at_first_output([*argv, "--ray-address", ray_address], out, cwd=tmp_path, timeout=240)
    # Ray ends the dead driver's job: its model worker goes away (it may finish no more images).
    deadline = time.monotonic() + 60
    while any("ModelWorker" in a for a in descendants(os.getpid()).values()):
        assert time.monotonic() < deadline, "the killed run's Ray actor is still alive"
        time.sleep(0.2)
    done_at_kill = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert 0 < len(done_at_kill) < len(names), "the kill should land mid-run"

    assert main([*argv, "--quiet"]) == 0
    k = len(done_at_kill)
    assert f"{len(names) - k} images segmented, {k} skipped" in capsys.readouterr().out
    for name, mtime in done_at_kill.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    expected = sorted(
        n for name in names for n in (f"{Path(name).stem}.json", f"{Path(name).stem}_overlay.png")
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*expected, DATASET_NAME, "manifest.parquet"]
    )
    # the same dataset as a single-process run that was never interrupted, with 2 torch threads as
    # the one worker of the 2-CPU Ray instance (set here: an earlier test may have changed this
    # process's thread count, and the last bit of a score depends on it)
    one = tmp_path / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["auto", str(src), "--out", str(one), *AUTO_OPTS, *MODEL, "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    # same ids, files, masks and boxes; scores to float precision (the byte-for-byte promise is
    # checked by test_auto_on_ray_writes_the_single_process_bytes; here a worker restarted after
    # the kill may have run with another thread count, which moves a score's last bit)
    resumed = json.loads((out / DATASET_NAME).read_text())
    single = json.loads((one / DATASET_NAME).read_text())
    _assert_same_dataset(resumed, single)
    rows = _manifest(out)
    assert sorted(r["file_name"] for r in rows) == sorted(names)  # one row per image
    status = {r["file_name"]: r["status"] for r in rows}
    assert {n for n, s in status.items() if s == "skipped"} == {
        n.replace(".json", ".png") for n in done_at_kill
    }
    assert sum(s == "done" for s in status.values()) == len(names) - k


BLOCK_RAY = """
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoRay())
"""


def test_ray_without_the_extra_says_which_extra(tmp_path):
    # one interpreter: nothing imports Ray early, then (Ray blocked from there on) each command
    # refuses --ray naming the extra, before any work
    code = (
        "import sys, samkit, samkit.cli, samkit.distributed, samkit.distributed.run\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
        + BLOCK_RAY
        + "from samkit.cli import main\n"
        + "".join(
            f"print('{command} exit', main([{command!r}, {str(SHAPES / 'shapes_1.png')!r}, "
            f"'--out', {str(tmp_path)!r}, '--ray', *{MODEL!r}]), flush=True)\n"
            "sys.stderr.flush()\n"
            for command in ("auto", "embed")
        )
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=samkit_env()
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines == ["[]", "auto exit 2", "embed exit 2"], (lines, r.stderr)
    for command in ("auto", "embed"):
        assert f"samkit {command}: error: --ray:" in r.stderr
    assert r.stderr.count("pip install 'samkit[ray]'") == 2, r.stderr
    assert r.stderr.count("[ray] extra") == 2, r.stderr
    assert not any(tmp_path.iterdir())  # refused before any work


def test_inputs_are_listed_like_samkit_auto(tmp_path):
    from samkit.distributed.inputs import list_images

    src = tmp_path / "in"
    _images(src, n_generated=2, long_side=32)
    (src / "notes.txt").write_text("not an image")
    listed = list_images([str(src)])
    assert listed.names == ["dog.png", "gen0.png", "gen1.png", "groceries.png", "truck.png"]
    assert listed.paths == [str(src / n) for n in listed.names] and listed.filesystem is None
    assert list_images([str(src / "gen*.png")]).names == ["gen0.png", "gen1.png"]
    remote = list_images([f"file://{src}"])
    assert remote.names == listed.names and remote.filesystem is not None
    assert remote.uris == [f"file://{src}/{n}" for n in listed.names]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "dog.jpg").write_bytes((src / "dog.png").read_bytes())
    for bad, msg in [
        ([str(tmp_path / "missing")], "no such file"),
        ([str(src / "*.gif")], "matches no file"),
        ([str(src), f"file://{src}"], "mix of local paths and URIs"),
        ([str(src), str(tmp_path / "other")], "same outputs (dog.*)"),
        ([], "no inputs"),
    ]:
        with pytest.raises(ValueError, match=None) as e:
            list_images(bad)
        assert msg in str(e.value)


def test_manifest_without_pyarrow_is_jsonl(tmp_path, monkeypatch):
    from samkit.distributed import manifest

    rows = [
        {"image_id": 1, "path": "b.png", "file_name": "b.png", "status": "failed",
         "error": "ImageDecodeError: b.png is not an image", "masks": None, "seconds": 0.1,
         "worker": "h:2", "finished": 2.0},
        {"image_id": 0, "path": "a.png", "file_name": "a.png", "status": "done", "error": "",
         "masks": 3, "seconds": 1.5, "worker": "h:1", "finished": 1.0},
    ]  # fmt: skip
    assert manifest.write_manifest(tmp_path, rows).name == "manifest.parquet"
    assert manifest.read_manifest(tmp_path) == sorted(rows, key=lambda r: r["image_id"])
    monkeypatch.setattr(manifest, "_has_pyarrow", lambda: False)
    path = manifest.write_manifest(tmp_path, rows)
    assert path.name == "manifest.jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line)["image_id"] for line in lines] == [0, 1]
    assert manifest.read_manifest(tmp_path) == sorted(rows, key=lambda r: r["image_id"])
    assert not list(tmp_path.glob("*.tmp"))
