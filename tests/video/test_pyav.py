"""`samkit.video.frames.pyav.FileFrames` on damaged files: a truncated MP4 is named as such when opened."""

from __future__ import annotations

import av
import pytest

from samkit.cli import main
from samkit.video.frames.pyav import FileFrames
from tests.video.clips import moving_shapes

N, H, W = 30, 48, 64


def write_mp4(path, movflags="faststart", n=N):
    """An H.264 MP4: `faststart` puts the index (moov) before the data, as streaming encoders
    write it; `frag_keyframe+empty_moov` writes a fragmented file whose header has no frame count."""
    with av.open(str(path), "w", options={"movflags": movflags}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for f in moving_shapes(n=n, h=H, w=W):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("pyav")
    whole = write_mp4(d / "whole.mp4")
    data = whole.read_bytes()
    cut = d / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    return whole, cut


def test_whole_file_decodes(clips):
    frames = FileFrames(clips[0], 64)
    assert len(frames) == N
    assert all(frames.rgb(i).shape == (H, W, 3) for i in range(N))


def test_truncated_file_is_refused_when_opened(clips):
    with pytest.raises(
        ValueError,
        match=r"cut\.mp4: the file is truncated: its header lists 30 "
        r"frames but only \d+ are in the file \(it ends at frame \d+, about ",
    ):
        FileFrames(clips[1], 64)


def test_track_refuses_a_truncated_file_before_writing(clips, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(
        [
            "track",
            str(clips[1]),
            "--out",
            str(out),
            "--point",
            "0:1:5,5",
            "--random-weights",
            "--model",
            "sam2.1_hiera_t",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "the file is truncated" in err and "ffmpeg" in err
    assert not out.exists()


def test_fragmented_file_cut_short_is_refused_when_opened(tmp_path):
    """No frame count in the header (fragmented MP4): the last frames fail to decode at open."""
    path = write_mp4(tmp_path / "frag.mp4", "frag_keyframe+empty_moov")
    assert len(FileFrames(path, 64)) == N
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(
        ValueError,
        match=r"frag\.mp4: the file is truncated: frames \d+\.\.\d+ of "
        r"the \d+ it lists cannot be decoded \(it ends at frame \d+",
    ):
        FileFrames(path, 64)
