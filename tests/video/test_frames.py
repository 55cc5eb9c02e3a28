"""Frame sources: every input kind gives the official loader's tensors, lazily, with bounded caches."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.video import LiveFrames, VideoFrames, open_video, preprocess_frame
from samkit.video.frames.folder import FrameIndexError
from tests.conftest import FIXTURES
from tests.video.clips import encode_video, moving_shapes, write_jpeg_folder

S = 32  # small model side: the preprocessing path is the same at any size


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    """Frames (as decoded from JPEG), their JPEG folder and a lossless MP4 of the same frames."""
    d = tmp_path_factory.mktemp("clip")
    arrays = write_jpeg_folder(d / "frames", moving_shapes())
    mp4 = encode_video(d / "clip.mp4", arrays)
    return {"arrays": arrays, "folder": d / "frames", "mp4": mp4, "dir": d}


def official_load_folder(folder: str, image_size: int) -> tuple[torch.Tensor, int, int]:
    """The official `sam2.utils.misc.load_video_frames_from_jpg_images` (synchronous path)."""
    names = [p for p in os.listdir(folder) if os.path.splitext(p)[-1] in [".jpg", ".jpeg"]]
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    images = torch.zeros(len(names), 3, image_size, image_size, dtype=torch.float32)
    for n, name in enumerate(names):
        img_pil = Image.open(os.path.join(folder, name))
        img_np = np.array(img_pil.convert("RGB").resize((image_size, image_size)))
        img_np = img_np / 255.0
        images[n] = torch.from_numpy(img_np).permute(2, 0, 1)
        video_width, video_height = img_pil.size
    images -= torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    images /= torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    return images, video_height, video_width


def all_frames(src: VideoFrames) -> torch.Tensor:
    return torch.stack(list(src))  # iteration also pulls the frames of live sources


def test_fixture_frames_equal_the_official_loader_bit_for_bit():
    folder = FIXTURES / "sam2_video" / "frames"
    ref, h, w = official_load_folder(str(folder), 1024)
    src = open_video(folder, 1024, cache_frames=2)
    assert (len(src), src.video_height, src.video_width) == (10, h, w) == (10, 540, 960)
    assert not src.is_live
    for i in range(len(src)):
        got = src[i]
        assert got.dtype == torch.float32 and got.shape == (3, 1024, 1024)
        assert torch.equal(got, ref[i]), i
    assert src.frame_name(3) == "00003"


def test_every_source_kind_gives_identical_tensors(clip):
    arrays = clip["arrays"]
    ref, h, w = official_load_folder(str(clip["folder"]), S)

    def gen():
        yield from arrays

    live = LiveFrames(S, cache_frames=len(arrays))
    assert [live.append(a) for a in arrays] == list(range(len(arrays)))
    sources = {
        "folder": open_video(clip["folder"], S),
        "folder_str": open_video(str(clip["folder"]), S),
        "arrays": open_video(arrays, S),
        "stacked": open_video(np.stack(arrays), S),
        "pil": open_video([Image.fromarray(a) for a in arrays], S),
        "iterator": open_video(gen(), S),
        "live": live,
        "mp4": open_video(clip["mp4"], S),
        "mp4_bytes": open_video(clip["mp4"].read_bytes(), S),
    }
    for name, src in sources.items():
        assert (src.video_height, src.video_width) == (h, w), name
        assert torch.equal(all_frames(src), ref), name
        assert len(src) == len(arrays), name
    assert sources["iterator"].is_live and sources["live"].is_live
    assert not sources["mp4"].is_live


def test_lossless_mp4_decodes_to_exactly_the_encoded_frames(clip):
    src = open_video(clip["mp4"], S)
    for i in [0, 5, 2, 3, 1, 4]:  # random order
        np.testing.assert_array_equal(src.rgb(i), clip["arrays"][i])


@pytest.mark.parametrize(
    "suffix,codec,pix_fmt,options",
    [
        (".mp4", "libx264", "yuv420p", {"g": "4", "bf": "2"}),  # B-frames: decode != display order
        (".mov", "libx264", "yuv420p", {"g": "5"}),
        (".webm", "libvpx-vp9", "yuv420p", {"g": "4"}),
        (".avi", "mpeg4", "yuv420p", {"g": "3"}),
    ],
)
def test_random_and_reverse_access_match_sequential_decoding(
    tmp_path, suffix, codec, pix_fmt, options
):
    import av

    frames = moving_shapes(n=13, h=48, w=64, seed=1)
    path = encode_video(tmp_path / f"v{suffix}", frames, codec, pix_fmt, options)
    with av.open(str(path)) as c:  # reference: one plain sequential decode
        seq = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(seq) == len(frames)
    src = open_video(path, S)
    assert len(src) == len(frames) and (src.video_height, src.video_width) == (48, 64)
    for order in (range(13), reversed(range(13)), [7, 2, 12, 0, 11, 6, 6, 1]):
        for i in order:
            np.testing.assert_array_equal(src.rgb(i), seq[i], err_msg=f"{suffix} frame {i}")
    # lossy, but each decoded frame is nearest to the frame encoded at its index (order kept)
    err = [[np.abs(d.astype(int) - f).mean() for f in frames] for d in seq]
    assert np.argmin(err, axis=1).tolist() == list(range(13))


def test_iterator_pulls_frames_only_as_requested():
    pulled = []

    def gen():
        for i, a in enumerate(moving_shapes(n=5)):
            pulled.append(i)
            yield a

    src = open_video(gen(), S, cache_frames=3)
    assert len(src) == 1 and pulled == [0]
    src[2]
    assert len(src) == 3 and pulled == [0, 1, 2]
    assert len(list(src)) == 5  # iteration stops at the end of the iterator
    with pytest.raises(ValueError, match="frame index 5 is outside"):
        src[5]
    with pytest.raises(ValueError, match="no longer held"):
        src.rgb(0)  # only the last 3 frames are kept


def test_live_frames_push_and_errors():
    live = LiveFrames(S, cache_frames=2, video_height=48, video_width=64)
    assert len(live) == 0 and live.is_live
    with pytest.raises(FrameIndexError):
        live[0]
    frames = moving_shapes(n=4)
    for i, f in enumerate(frames):
        assert live.append(Image.fromarray(f) if i % 2 else f) == i
    assert torch.equal(live[3], preprocess_frame(frames[3], S))
    with pytest.raises(ValueError, match="frame 0 is no longer held"):
        live[0]
    with pytest.raises(ValueError, match="all frames must have the same size"):
        live.append(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype uint8"):
        live.append(np.zeros((48, 64, 3), np.float32))
    live.close()
    with pytest.raises(ValueError, match="closed"):
        live.append(frames[0])


def test_bad_inputs_name_the_problem(tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: no frame images"):
        open_video(empty)
    with pytest.raises(ValueError, match="no such file or folder"):
        open_video(tmp_path / "missing.mp4")
    named = tmp_path / "named"
    write_jpeg_folder(named, moving_shapes(n=2))
    (named / "00001.jpg").rename(named / "frame_b.jpg")
    with pytest.raises(ValueError, match=r"named <index>\.jpg.*frame_b\.jpg"):
        open_video(named)
    mixed = tmp_path / "mixed"
    write_jpeg_folder(mixed, moving_shapes(n=2))
    Image.fromarray(moving_shapes(n=1, h=40)[0]).save(mixed / "00002.jpg")
    with pytest.raises(ValueError, match=r"00002\.jpg is 64x40 .* same size"):
        open_video(mixed)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(ValueError, match=r"notes\.mp4: not a decodable video"):
        open_video(text)
    with pytest.raises(ValueError, match="not a decodable video"):
        open_video(b"\x00\x01garbage" * 100)

    a = clip["arrays"]
    with pytest.raises(ValueError, match="video frame 1 is 64x40"):
        open_video([a[0], moving_shapes(n=1, h=40)[0]])
    with pytest.raises(ValueError, match="video frame 0: expected dtype uint8"):
        open_video([a[0].astype(np.float32)])
    with pytest.raises(ValueError, match=r"expected shape HxWx3 \(RGB\), got \(48, 64\)"):
        open_video([a[0][..., 0]])
    with pytest.raises(ValueError, match="got \\(48, 64, 4\\)"):
        open_video([np.dstack([a[0], a[0][..., :1]])])
    with pytest.raises(ValueError, match="shape TxHxWx3"):
        open_video(a[0])
    with pytest.raises(ValueError, match="sequence of frames is empty"):
        open_video([])
    with pytest.raises(ValueError, match="iterator yielded no frame"):
        open_video(iter([]))
    with pytest.raises(ValueError, match="got int"):
        open_video(5)

    src = open_video(clip["folder"], S)
    for bad in (6, -1, 100):
        with pytest.raises(ValueError, match=f"frame index {bad} is outside the video"):
            src[bad]
    with pytest.raises(ValueError, match="must be an integer"):
        src[1.0]
    with pytest.raises(ValueError, match="needs 64"):
        open_video(src, 64)
    assert open_video(src, S) is src
    mp4 = open_video(clip["mp4"], S)
    with pytest.raises(ValueError, match="frame index 6 is outside the video"):
        mp4[6]


def test_cache_is_bounded_and_reused(clip):
    src = open_video(clip["mp4"], S, cache_frames=3)
    first = src[0]
    assert src[0] is first  # served from the cache
    for i in range(6):
        src[i]
        assert len(src._cache) <= 3
    assert sorted(src._cache) == [3, 4, 5]
    assert src[0] is not first and torch.equal(src[0], first)
    assert len(src._raw) <= src._keep
    none = open_video(clip["folder"], S, cache_frames=0)
    none[1]
    assert len(none._cache) == 0 and torch.equal(none[1], src[1])


def test_missing_pyav_names_the_extra(monkeypatch, clip):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"samkit\[video\]"):
        open_video(clip["mp4"])
