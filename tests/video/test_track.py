"""`samkit.video.track.track_video` when a frame cannot be read mid-run: the error says what was written."""

from __future__ import annotations

import pytest

from samkit.video import build_sam2_video_predictor
from samkit.video.frames.sources import open_video
from samkit.video.track import track_video
from samkit.video.track_prompts import parse_point, resolve_prompts
from tests.conftest import FIXTURES
from tests.video.clips import moving_shapes, write_jpeg_folder

TINY = FIXTURES / "sam2_tiny"


def test_unreadable_frame_mid_run_names_what_was_written(tmp_path):
    folder = tmp_path / "frames"
    write_jpeg_folder(folder, moving_shapes(n=4, h=48, w=64))
    bad = folder / "00002.jpg"
    bad.write_bytes(bad.read_bytes()[:-400])  # header intact, data cut: fails when decoded
    predictor = build_sam2_video_predictor(
        str(TINY / "config.json"), checkpoint=str(TINY / "sam2_tiny.pt")
    )
    src = open_video(folder, predictor.image_size)
    prompts = resolve_prompts([parse_point("0:1:20,20")], len(src), 48, 64)
    out = tmp_path / "out"
    with pytest.raises(
        ValueError,
        match=r"00002\.jpg: not a readable image .*; tracking stopped there: the masks of 2 "
        r"frames \(0\.\.1\) are in .*masks; annotations\.json and overlay\.mp4 were not written",
    ):
        track_video(predictor, src, prompts, out, progress=False)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert not (out / "annotations.json").exists()
