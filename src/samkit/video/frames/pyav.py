"""Video files (MP4, MOV, WebM, AVI, MKV) as `VideoFrames`, decoded lazily with PyAV.

Needs the `[video]` extra (`pip install samkit[video]`, which installs `av`).

Cost model: opening reads every packet header once (demuxing, no decoding; fast) to list the
frames' timestamps and keyframes, decodes frame 0 for the size and the last group of pictures (from
the last keyframe to the end) so that a file cut short is refused when it is opened. Reading frames in increasing
order decodes each frame once. A jump backwards, or forwards past the next keyframe, seeks to the
keyframe at or before the frame and decodes from there; the decoded frames just before the
requested one are kept in a raw-RGB cache of about 64 MiB, so tracking in reverse decodes each
group of pictures a few times rather than once per frame. Memory: one timestamp per frame plus
the caches, independent of the video length. Rotation metadata is not applied (frames come out
as stored).
"""

from __future__ import annotations

import bisect
import io
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from samkit.video.frames.folder import VideoFrames

RAW_CACHE_BYTES = 64 << 20


def import_av() -> Any:
    """The `av` module, or an ImportError saying which extra installs it."""
    try:
        import av
    except ImportError:
        raise ImportError(
            "reading and writing video files needs PyAV: pip install 'samkit[video]' (or: pip "
            "install av)"
        ) from None
    return av


class FileFrames(VideoFrames):
    """Frames of a video file (path or bytes), decoded on demand; see the module docstring.

    Raises:
        ValueError: the file cannot be opened as a video, has no video stream or no frames, is
            truncated (its header lists more frames than it holds, or its last frames cannot be
            decoded: both checked when it is opened, by decoding its last group of pictures), or
            a frame cannot be decoded / has another size than frame 0.
        ImportError: PyAV is not installed.
    """

    def __init__(self, source: str | Path | bytes, image_size: int = 1024, cache_frames: int = 8):
        super().__init__(image_size, cache_frames)
        av = import_av()
        self._av_errors = (av.error.FFmpegError, OSError, ValueError, EOFError)
        if isinstance(source, (bytes, bytearray)):
            self.name, handle = "<video bytes>", io.BytesIO(source)
        else:
            self.name, handle = str(source), str(source)
        try:
            self._container = av.open(handle)
        except self._av_errors as e:
            raise ValueError(f"{self.name}: not a decodable video file ({e})") from None
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"{self.name}: the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None  # frames per second, if known
        self._build_index()
        self._raw: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decoder: Any = None
        self._next: int | None = None  # index of the frame the decoder yields next, if known
        self._keep = 1
        first = self._decode_to(0)
        self._set_size(first.shape[0], first.shape[1], f"{self.name} frame 0")
        self._keep = max(1, RAW_CACHE_BYTES // first.nbytes)
        self._check_tail()

    def _check_tail(self) -> None:
        """Decode the last group of pictures once: a file cut short fails now, not at its end."""
        if not self._timed or len(self) < 2:
            return
        for i in range(self._keys[-1], len(self)):
            try:
                self._decode_to(i)
            except ValueError:
                raise ValueError(
                    f"{self.name}: the file is truncated: frames {i}..{len(self) - 1} of the "
                    f"{len(self)} it lists cannot be decoded (it ends at frame {i}, about "
                    f"{self._seconds(i)}); it was cut short (an interrupted download, copy or "
                    "recording) or is damaged. Get the whole file, or cut it to its decodable "
                    f"part (e.g. `ffmpeg -i IN -frames:v {i} OUT.mp4`)"
                ) from None
        self._raw.clear()
        self._decoder = None

    def _build_index(self) -> None:
        pts: list[int] = []
        key: list[int] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    pts = []
                    break
                pts.append(int(t))
                if packet.is_keyframe:
                    key.append(int(t))
        except self._av_errors as e:
            raise ValueError(f"{self.name}: not a decodable video file ({e})") from None
        declared = int(self._stream.frames or 0)  # the container's frame count, 0 if unknown
        if declared > len(pts) > 0:
            raise ValueError(
                f"{self.name}: the file is truncated: its header lists {declared} frames but only "
                f"{len(pts)} are in the file (it ends at frame {len(pts)}, about "
                f"{self._seconds(len(pts))}); it was cut short (an interrupted download, copy or "
                "recording). Get the whole file, or keep what is there with "
                "`ffmpeg -i IN -c copy OUT.mp4`"
            )
        self._timed = bool(pts)
        if not pts:  # no timestamps: count packets, decode from the start to reach a frame
            self._container.seek(0)
            try:
                n = sum(1 for p in self._container.demux(self._stream) if p.size)
            except self._av_errors as e:
                raise ValueError(f"{self.name}: not a decodable video file ({e})") from None
            if n == 0:
                raise ValueError(f"{self.name}: the video has no frames")
            self._pts, self._index, self._keys = list(range(n)), {}, [0]
            return
        self._pts = sorted(set(pts))
        self._index = {t: i for i, t in enumerate(self._pts)}
        self._keys = sorted({self._index[t] for t in key} | {0})

    def _seconds(self, frames: int) -> str:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return f"{frames / float(rate):.1f} s" if rate else "an unknown time"

    def __len__(self) -> int:
        return len(self._pts)

    def close(self) -> None:
        """Close the file (the source is unusable afterwards)."""
        self._container.close()

    def _load(self, idx: int) -> np.ndarray:
        hit = self._raw.get(idx)
        if hit is not None:
            self._raw.move_to_end(idx)
            return hit
        return self._decode_to(idx)

    def _seek(self, idx: int) -> None:
        """Position the decoder at the keyframe at or before frame `idx`."""
        k = self._keys[bisect.bisect_right(self._keys, idx) - 1]
        if self._timed and k > 0:
            self._container.seek(self._pts[k], stream=self._stream, backward=True, any_frame=False)
            self._next = None
        else:
            self._container.seek(0)
            self._next = 0
        self._decoder = self._container.decode(self._stream)

    def _decode_to(self, idx: int) -> np.ndarray:
        key = self._keys[bisect.bisect_right(self._keys, idx) - 1]
        if self._decoder is None or self._next is None or not key <= self._next <= idx:
            self._seek(idx)
        for attempt in range(2):
            if attempt == 1:  # the seek landed after the frame, or the decoder ended: restart
                self._container.seek(0)
                self._decoder = self._container.decode(self._stream)
                self._next = 0
            try:
                for frame in self._decoder:
                    if self._timed:
                        i = self._index.get(frame.pts)
                        if i is None:
                            continue
                    else:
                        i = self._next if self._next is not None else 0
                    self._next = i + 1
                    if i > idx:
                        break
                    if i < idx - self._keep:
                        continue
                    arr = frame.to_ndarray(format="rgb24")
                    if self.video_height is not None:
                        self._set_size(arr.shape[0], arr.shape[1], f"{self.name} frame {i}")
                    self._raw[i] = arr
                    self._raw.move_to_end(i)
                    while len(self._raw) > self._keep:
                        self._raw.popitem(last=False)
                    if i == idx:
                        return arr
                else:
                    self._decoder = None
            except self._av_errors as e:
                self._decoder = None
                raise ValueError(f"{self.name}: cannot decode frame {idx} ({e})") from None
        raise ValueError(
            f"{self.name}: frame {idx} could not be decoded: the decodable data ends before it "
            f"(the file lists {len(self)} frames; it is damaged or cut short)"
        )
