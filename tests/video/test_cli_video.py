"""`samkit track` and `samkit eval-video` with the sam2_tiny fixture model on synthetic clips."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import samkit
from samkit.cli import main
from samkit.video.eval.metrics import boundary_f, region_similarity
from samkit.video.formats import label_map, read_label_png, write_palette_png
from tests.conftest import FIXTURES
from tests.video.clips import encode_video, make_davis, moving_shapes, write_jpeg_folder

TINY = FIXTURES / "sam2_tiny"
MODEL = ["--model", str(TINY / "config.json"), "--checkpoint", str(TINY / "sam2_tiny.pt")]
N, H, W = 4, 96, 128
PROMPTS = ["--point", "0:1:20,40", "--point", "0:1:100,10,0", "--box", "0:2:92,52,124,88"]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    arrays = write_jpeg_folder(d / "frames", moving_shapes(n=N, h=H, w=W))
    return {"folder": d / "frames", "mp4": encode_video(d / "clip.mp4", arrays), "dir": d}


# ------------------------------------------------------------------ errors (no model needed)


@pytest.mark.parametrize(
    "extra,msg",
    [
        (
            ["--point", "20:1:5,5"],
            r"--point 20:1:5,5: frame 20 is outside the video \(frames 0..3\)",
        ),
        (["--box", "0:1:5,5,500,9"], r"--box 0:1:5,5,500,9: the box is outside the 128x96 frame"),
        ([], "no prompts"),
        (["--point", "0:1:5,5", "--start-frame", "9"], "--start-frame 9 is outside the video"),
        (["--point", "0:1:5,5", "--max-frames", "-2"], "--max-frames must be >= 1"),
        (["--point", "0:1:5,5", "--max-frames", "0"], "--max-frames must be >= 1"),
        (["--point", "0:1:5,5", "--model", "vit_b"], "--model vit_b: video tracking needs a SAM 2"),
    ],
)
def test_track_argument_errors(shapes_clip, tmp_path, capsys, extra, msg):
    model = [] if "--model" in extra else MODEL
    code, _, err = run(
        ["track", str(shapes_clip["folder"]), "--out", str(tmp_path), *extra, *model], capsys
    )
    assert code == 2
    assert re_search(msg, err), err


def re_search(pattern, text):
    import re

    return re.search(pattern, text) is not None


def test_track_unknown_mask_object_and_bad_video(shapes_clip, tmp_path, capsys):
    lab = np.zeros((H, W), np.uint8)
    lab[5:20, 5:20], lab[40:60, 40:60] = 1, 2
    write_palette_png(tmp_path / "ann.png", lab)
    code, _, err = run(
        [
            "track",
            str(shapes_clip["mp4"]),
            "--out",
            str(tmp_path / "o"),
            "--mask",
            f"0:3:{tmp_path / 'ann.png'}",
            *MODEL,
        ],
        capsys,
    )
    assert code == 2 and "object 3 is not in ann.png (its ids: 1, 2)" in err
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    code, _, err = run(
        ["track", str(bad), "--out", str(tmp_path / "o"), "--point", "0:1:5,5", *MODEL], capsys
    )
    assert code == 2 and "broken.mp4: not a decodable video" in err
    code, _, err = run(
        ["track", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"), "--point", "0:1:5,5"],
        capsys,
    )
    assert code == 2 and "nope.mp4: no such file or folder" in err
    assert not (tmp_path / "o").exists()  # nothing written before the checks pass


def test_eval_video_mismatched_annotations(tmp_path, capsys):
    root = make_davis(tmp_path / "davis", videos=("a",))
    (root / "Annotations" / "a" / "00002.png").rename(root / "Annotations" / "a" / "00042.png")
    code, _, err = run(
        ["eval-video", "--data", str(root), "--out", str(tmp_path / "o"), *MODEL], capsys
    )
    assert code == 2 and "00042.png: annotation has no frame of the same name" in err


# ------------------------------------------------------------------ with the video predictor

needs_predictor = pytest.mark.skipif(
    not hasattr(samkit, "build_sam2_video_predictor")
    and "build_sam2_video_predictor" not in getattr(samkit, "_EXPORTS", {}),
    reason="samkit has no SAM 2 video predictor in this tree",
)


@pytest.fixture(scope="module")
def reference(shapes_clip):
    """The predictor's masks for PROMPTS, tracked in-process from the JPEG folder."""
    predictor = samkit.build_sam2_video_predictor(
        str(TINY / "config.json"), str(TINY / "sam2_tiny.pt")
    )
    state = predictor.init_state(str(shapes_clip["folder"]))
    predictor.add_new_points_or_box(
        state,
        0,
        1,
        points=np.array([[20, 40], [100, 10]], np.float32),
        labels=np.array([1, 0], np.int32),
    )
    predictor.add_new_points_or_box(state, 0, 2, box=np.array([92, 52, 124, 88], np.float32))
    out = {}
    for t, ids, logits in predictor.propagate_in_video(state):
        out[t] = ([int(i) for i in ids], (logits > 0).reshape(len(ids), H, W).cpu().numpy())
    return out


@needs_predictor
@pytest.mark.parametrize("source", ["folder", "mp4"])
def test_track_outputs_equal_the_predictor(shapes_clip, reference, tmp_path, capsys, source):
    out = tmp_path / "out"
    code, stdout, err = run(
        ["track", str(shapes_clip[source]), "--out", str(out), *PROMPTS, *MODEL], capsys
    )
    assert code == 0, err
    assert "frames/s" in err and "ETA" in err
    summary = json.loads(stdout)
    assert summary["frames"] == N and summary["objects"] == [1, 2]
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == [f"{t:05d}.png" for t in range(N)]
    doc = json.loads((out / "annotations.json").read_text())
    assert doc["videos"][0]["length"] == N and (
        doc["videos"][0]["height"],
        doc["videos"][0]["width"],
    ) == (H, W)
    anns = {a["object_id"]: a for a in doc["annotations"]}
    assert sorted(anns) == [1, 2]
    for t, (ids, masks) in reference.items():
        with Image.open(out / "masks" / f"{t:05d}.png") as im:
            assert im.mode == "P"
        assert np.array_equal(read_label_png(out / "masks" / f"{t:05d}.png"), label_map(masks, ids))
        for i, oid in enumerate(ids):
            seg = anns[oid]["segmentations"][t]
            if masks[i].any():
                assert np.array_equal(mask_utils.decode(seg).astype(bool), masks[i])
                assert anns[oid]["areas"][t] == masks[i].sum()
            else:
                assert seg is None
    assert any(anns[1]["segmentations"])  # the test tracks something
    for a in anns.values():  # the predictor's object score logit on every tracked frame
        assert all(isinstance(x, float) and abs(x) < 100 for x in a["object_scores"])
    with av.open(str(out / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (sum(1 for _ in c.decode(s)), s.width, s.height) == (N, W, H)
    assert not list(out.rglob("*.tmp"))


class _Interrupting:
    """A real predictor whose propagation is interrupted (Ctrl-C) after `after` frames."""

    def __init__(self, predictor, after):
        self._p, self._after = predictor, after

    def __getattr__(self, name):
        return getattr(self._p, name)

    def propagate_in_video(self, *args, **kwargs):
        for i, item in enumerate(self._p.propagate_in_video(*args, **kwargs)):
            if i == self._after:
                raise KeyboardInterrupt
            yield item


@needs_predictor
def test_interrupted_track_leaves_no_partial_file(shapes_clip, tmp_path, capsys, monkeypatch):
    import samkit.cli.video as video_cli

    real = video_cli.load_video_predictor
    monkeypatch.setattr(
        video_cli, "load_video_predictor", lambda args: _Interrupting(real(args), 2)
    )
    out = tmp_path / "out"
    code, _, err = run(
        ["track", str(shapes_clip["folder"]), "--out", str(out), *PROMPTS, *MODEL], capsys
    )
    assert code == 130 and "interrupted" in err
    pngs = sorted((out / "masks").iterdir())
    assert [p.name for p in pngs] == ["00000.png", "00001.png"]
    for p in pngs:
        assert read_label_png(p).shape == (H, W)  # complete files
    assert sorted(p.name for p in out.iterdir()) == ["masks"]  # no JSON, no MP4, no temporaries

    # interrupted while encoding the overlay: the JSON is complete, no MP4 and no temporary
    import samkit.video.overlay as overlay

    monkeypatch.setattr(video_cli, "load_video_predictor", real)
    calls = []

    def render(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_render(*a, **k)

    real_render = overlay.render_overlay
    monkeypatch.setattr(overlay, "render_overlay", render)
    argv = ["track", str(shapes_clip["folder"]), "--out", str(out), "--max-frames", "2"]
    code, _, _ = run([*argv, *PROMPTS, *MODEL], capsys)
    assert code == 130 and len(calls) == 2
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "masks"]
    assert json.loads((out / "annotations.json").read_text())["videos"][0]["length"] == N


@needs_predictor
def test_track_reverse_both_and_bounded(shapes_clip, tmp_path, capsys):
    out = tmp_path / "rev"
    code, stdout, err = run(
        [
            "track",
            str(shapes_clip["folder"]),
            "--out",
            str(out),
            "--point",
            "3:1:30,40",
            "--reverse",
            "--max-frames",
            "2",
            "--no-overlay",
            *MODEL,
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00002.png", "00003.png"]
    assert not (out / "overlay.mp4").exists()
    out = tmp_path / "both"
    code, stdout, err = run(
        [
            "track",
            str(shapes_clip["mp4"]),
            "--out",
            str(out),
            "--point",
            "2:1:30,40",
            "--both-directions",
            "--max-frames",
            "2",
            *MODEL,
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 3  # frames 1..3: 2 back and 2 forward, sharing 2
    with av.open(str(out / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3


@needs_predictor
def test_track_max_frames_writes_exactly_that_many_frames(shapes_clip, tmp_path, capsys):
    out = tmp_path / "bounded"
    argv = ["track", str(shapes_clip["folder"]), "--out", str(out), "--max-frames", "3"]
    code, stdout, err = run([*argv, "--point", "0:1:30,40", "--no-overlay", *MODEL], capsys)
    assert code == 0, err
    assert "(3 frames per pass)" in err and ", 1 object, tracking" in err, err
    assert json.loads(stdout)["frames"] == 3
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]
    doc = json.loads((out / "annotations.json").read_text())
    tracked = [s is not None for s in doc["annotations"][0]["segmentations"]]
    assert tracked == [True, True, True, False]


@needs_predictor
def test_track_reverse_starts_at_the_last_prompted_frame(shapes_clip, tmp_path, capsys):
    out = tmp_path / "rev_default"
    argv = ["track", str(shapes_clip["folder"]), "--out", str(out), "--reverse", "--no-overlay"]
    code, stdout, err = run([*argv, "--point", "1:1:30,40", "--point", "2:2:60,50", *MODEL], capsys)
    assert code == 0, err
    assert "(3 frames per pass)" in err
    assert json.loads(stdout)["frames"] == 3
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]


@needs_predictor
def test_eval_video_on_a_tiny_davis_folder(tmp_path, capsys):
    root = make_davis(tmp_path / "davis", videos=("a", "b"), n=3, h=H, w=W)
    out = tmp_path / "eval"
    code, stdout, err = run(["eval-video", "--data", str(root), "--out", str(out), *MODEL], capsys)
    assert code == 0, err
    assert "overall" in stdout and "frames/s" in err
    doc = json.loads((out / "metrics.json").read_text())
    assert sorted(doc["videos"]) == ["a", "b"] and doc["overall"]["objects"] == 4
    for name in ("a", "b"):
        for oid in ("1", "2"):
            obj = doc["videos"][name]["objects"][oid]
            assert len(obj["J"]["per_frame"]) == 1  # frame 1: not the first, not the last
            for k, t in enumerate((1,)):  # the written results, scored again
                pred = read_label_png(out / name / f"{t:05d}.png")
                gt = read_label_png(root / "Annotations" / name / f"{t:05d}.png")
                assert obj["J"]["per_frame"][k] == pytest.approx(
                    region_similarity(gt == int(oid), pred == int(oid))
                )
                assert obj["F"]["per_frame"][k] == pytest.approx(
                    boundary_f(gt == int(oid), pred == int(oid))
                )
    with Image.open(out / "metrics.png") as im:
        assert im.width > 100
