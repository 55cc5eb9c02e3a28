"""`samkit track --text` with a SAM 3 checkpoint on the first 2 frames of the SAM 2 video
fixture: the files `samkit track` writes, against the SAM 3 video predictor's own answers to the
same requests; and the refusals that need no model run (on the sam3_tiny fixture's file).

The run uses the 336 px SAM 3 checkpoint of the product tests (the `sam3_small` fixture,
tests/fixtures/sam3_small.py: the sam3_tiny random weights at 24x24 tokens instead of 72x72): the
claim is `samkit track` against samkit's own video predictor on the same model, not parity with
the official recording (that is tests/video/sam3/test_parity_sam3_video.py); its queries score as
the fixture's (about 0.23), so THRESHOLD still starts tracks on both frames. The model runs
once: the end-to-end run (a find plus 2 tracked frames) records every request `samkit track`
sends to the SAM 3 video predictor and its answers. The requests must be the official ones for the clip (start_session
on the clip's frames, add_prompt with the text on frame 0, a forward propagate_in_video from
frame 0) and the frames sent the ones the predictor reads from the clip folder itself; then the
recorded answers are the predictor's own answers to those requests (it is deterministic), and
the written files are compared with them."""

from __future__ import annotations

import copy
import json
import shutil

import av
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import samkit.cli.video as video_cli
from samkit.cli import main
from samkit.video.formats import read_label_png
from samkit.video.sam3.frames import load_frames
from tests.conftest import FIXTURES

CKPT = FIXTURES / "sam3_tiny" / "sam3_tiny.pt"
FRAMES = FIXTURES / "sam2_video" / "frames"
SAM2 = ["--model", str(FIXTURES / "sam2_tiny" / "config.json")]
SAM2 += ["--checkpoint", str(FIXTURES / "sam2_tiny" / "sam2_tiny.pt")]
N = 2  # frame 1 starts a second track at the threshold: ids from both frames
THRESHOLD = 0.228  # the recorded sessions' detection threshold (random weights score ~0.23)
pytestmark = [
    pytest.mark.skipif(not CKPT.is_file(), reason="no ../shared/fixtures/sam3_tiny"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("sam3clip") / "clip"
    d.mkdir()
    for i in range(N):
        shutil.copy(FRAMES / f"{i:05d}.jpg", d / f"{i:05d}.jpg")
    return d


@pytest.fixture(scope="module")
def tracked(clip, tmp_path_factory, sam3_small):
    """`samkit track CLIP --text person` (end to end), the predictor it built, and every
    request it sent to the SAM 3 video predictor with the answer (a copy of the outputs)."""
    built, sent = [], []
    real = video_cli.load_video_predictor

    def spy(args, **settings):
        built.append(real(args, **settings))
        sam3 = built[-1].predictor
        handle, stream = sam3.handle_request, sam3.handle_stream_request

        def record(request):
            response = handle(request)
            sent.append((request, copy.deepcopy(response)))
            return response

        def record_stream(request):
            answers = []
            sent.append((request, answers))
            for r in stream(request):
                answers.append(copy.deepcopy(r))
                yield r

        sam3.handle_request, sam3.handle_stream_request = record, record_stream
        return built[-1]

    out = tmp_path_factory.mktemp("sam3track") / "out"
    argv = ["track", str(clip), "--out", str(out), "--checkpoint", str(sam3_small)]
    argv += ["--text", "person", "--threshold", str(THRESHOLD), "--quiet"]
    mp = pytest.MonkeyPatch()
    mp.setattr(video_cli, "load_video_predictor", spy)
    try:
        assert main(argv) == 0
    finally:
        mp.undo()
        for sam3 in (b.predictor for b in built):
            del sam3.handle_request, sam3.handle_stream_request
    return out, sent


def _official(sent: list, clip) -> dict[int, dict]:
    """The SAM 3 video predictor's own outputs per frame, from the requests `samkit track` sent:
    they must be the official requests of the clip (else its answers are not the reference)."""
    kinds = [r["type"] for r, _ in sent]
    assert kinds[:3] == ["start_session", "add_prompt", "propagate_in_video"], kinds
    assert set(kinds[3:]) <= {"close_session"}, kinds
    (start, started), (prompt, _), (propagate, stream) = sent[:3]
    # the frames sent are those the predictor reads from the clip folder itself
    side = getattr(start["resource_path"], "image_size", 1008)  # the clip's VideoFrames: its own
    given, own = load_frames(start["resource_path"], side), load_frames(str(clip), side)
    assert len(given) == len(own) == N
    assert (given.video_height, given.video_width) == (own.video_height, own.video_width)
    for t in range(N):
        assert torch.equal(given[t], own[t]), t
    sid = started["session_id"]
    assert prompt == {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "person"}
    assert propagate["session_id"] == sid and propagate["start_frame_index"] == 0
    assert propagate["propagation_direction"] == "forward"
    assert propagate.get("max_frame_num_to_track") in (None, N - 1), propagate
    return {r["frame_index"]: r["outputs"] for r in stream}


def test_track_text_writes_the_sam2_outputs_with_the_predictors_ids(tracked, clip):
    out, sent = tracked
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:05d}.png" for i in range(N)]
    doc = json.loads((out / "annotations.json").read_text())
    # YouTube-VIS: one video, one category for the concept, one annotation per track
    assert doc["categories"] == [{"id": 1, "name": "person", "supercategory": "object"}]
    (video,) = doc["videos"]
    assert video["length"] == N and (video["height"], video["width"]) == (540, 960)
    assert video["file_names"] == [f"clip/{i:05d}.jpg" for i in range(N)]
    official = _official(sent, clip)
    assert sorted(official) == list(range(N))
    ids = sorted({int(o) for out_t in official.values() for o in out_t["out_obj_ids"]})
    assert len(ids) >= 2, "the fixture threshold finds several instances"
    # one concept tracked forward: track id = official id + 1 (palette PNGs store 1..255)
    anns = {a["object_id"]: a for a in doc["annotations"]}
    assert sorted(anns) == [o + 1 for o in ids]
    for a in anns.values():
        assert a["category_id"] == 1 and a["concept"] == "person"
        assert len(a["segmentations"]) == len(a["bboxes"]) == N
    for t, o in official.items():
        labels = read_label_png(out / "masks" / f"{t:05d}.png")
        assert labels.shape == (540, 960)
        present = {int(v) for v in np.unique(labels)} - {0}
        nonempty = {int(i) + 1 for i, m in zip(o["out_obj_ids"], o["out_binary_masks"]) if m.any()}
        assert present == nonempty, t
        for i, m in zip(o["out_obj_ids"].tolist(), o["out_binary_masks"]):
            # official masks do not overlap (object-wise non-overlap): each is its palette value
            np.testing.assert_array_equal(labels == i + 1, m)
            seg = anns[i + 1]["segmentations"][t]
            got = np.zeros_like(m) if seg is None else _decode(seg)
            np.testing.assert_array_equal(got, m)
            assert anns[i + 1]["object_scores"][t] is not None
        assert np.isclose(
            1 / (1 + np.exp(-anns[o["out_obj_ids"][0] + 1]["object_scores"][t])),
            o["out_probs"][0],
            atol=1e-5,
        )
    with av.open(str(out / "overlay.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == N and (frames[0].width, frames[0].height) == (960, 540)


def _decode(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--box", "0:1:5,5,50,50"], "--box: a SAM 3 video model reads a box as an exemplar"),
        (
            ["--text", "dog", "--text-frame", "7"],
            f"--text-frame 7 is outside the video (frames 0..{N - 1})",
        ),
        (["--exemplar", "9:5,5,50,50"], "--exemplar 9 is outside the video"),
    ],
)
def test_concept_refusals_before_the_model_loads(clip, tmp_path, capsys, extra, msg):
    argv = ["track", str(clip), "--out", str(tmp_path / "o"), "--checkpoint", str(CKPT), *extra]
    assert main(argv) == 2
    assert msg in capsys.readouterr().err


def test_text_with_a_sam2_model_is_refused(clip, tmp_path, capsys):
    argv = ["track", str(clip), "--out", str(tmp_path / "o"), *SAM2, "--text", "dog"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--text needs a model that finds concepts (SAM 3" in err, err


@pytest.mark.parametrize("bad", ["", "  "])
def test_empty_text_is_a_usage_error(clip, tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        main(["track", str(clip), "--out", str(tmp_path / "o"), "--text", bad])
    assert e.value.code == 2
