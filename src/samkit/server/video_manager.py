"""The web app's video sessions: at most `VideoLimits.max_sessions` open `VideoSession`s, and the
thread their torch jobs run on.

Every torch job of the video mode (opening a clip, a click, tracking, the overlay MP4) runs one at
a time, in submission order, on one long-lived `JobThread` (`samkit.server.threads` says why).

Slots: a new video takes a free slot; when every slot is taken, the least recently used session
that has been idle for `VideoLimits.idle_s` seconds and is not tracking is closed for it (the
answer names it, and later requests for it get a 404 saying why it was closed); when none is that
idle, the new video is refused (`VideoSlotsFull`, HTTP 503) with the limit, the way to free a slot
and when the next one frees itself.

Memory: every session is an uploaded file of at most `VideoLimits.max_frames` frames of at most
`max_pixels` pixels, so what it holds is bounded by the limits: its bytes, a JPEG per frame, the
latest masks as COCO RLE, and the predictor's state, which decodes frames when it needs them
(with SAM 3: the official cached outputs and the concept tracker's kept masks, both run-length
encoded, a few KB per object and tracked frame). Live sources, whose length has no bound, are a
feature of the SAM 3 video predictor, which keeps the outputs of only their last
`Sam3VideoSettings.live_output_frames` (300) frames by default; the web app opens none.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from samkit.server.threads import JobThread
from samkit.server.video_session import VideoLimits, VideoSession

_REMEMBER_CLOSED = 256  # ids of sessions closed for a new one, kept to say so in a 404


class VideoSlotsFull(RuntimeError):
    """Every video slot is taken by a session in use (HTTP 503); `retry_after_s`: when the least
    recently used one will have been idle long enough to be closed for a new one."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VideoManager:
    """The sessions of one app and the thread their torch jobs run on.

    Args:
        predictor: a `Sam2VideoPredictor` on the server's model.
        limits: what uploads may be, how many sessions stay open and how long an idle one keeps
            its slot.
        threads: torch intra-op threads of a job (default: the caller's setting).
    """

    def __init__(self, predictor: Any, limits: VideoLimits, threads: int | None = None) -> None:
        self.predictor = predictor
        self.limits = limits
        self.threads = torch.get_num_threads() if threads is None else int(threads)
        self.root = Path(tempfile.mkdtemp(prefix="samkit-video-"))
        self.sessions: dict[str, VideoSession] = {}
        self.closed: OrderedDict[str, str] = OrderedDict()  # id -> why it was closed
        self._opening = 0  # uploads between `reserve` and `open`
        self._lock = threading.Lock()
        self._jobs = JobThread("samkit-video", self.threads)

    def submit(self, fn: Any, *args: Any) -> Future:
        """Run `fn(*args)` after the jobs before it, on the video job thread (a future of its
        result or error)."""
        return self._jobs.submit(fn, *args)

    def reserve(self) -> list[dict[str, Any]]:
        """Take a slot for a video about to be opened (release it with `release`); closes the
        least recently used idle session if that is needed.

        Returns:
            The sessions closed for it: `{video_id, name, idle_s}` each (at most one).

        Raises:
            VideoSlotsFull: every slot is held by a session used in the last `idle_s` seconds,
                tracking, or being opened.
        """
        lim = self.limits
        now = time.monotonic()
        freed: list[VideoSession] = []
        with self._lock:
            if len(self.sessions) + self._opening >= lim.max_sessions:
                idle = sorted(
                    (s for s in self.sessions.values() if not s.tracking),
                    key=lambda s: s.last_used,
                )
                if not idle or now - idle[0].last_used < lim.idle_s:
                    wait = lim.idle_s - (now - idle[0].last_used) if idle else lim.idle_s
                    raise VideoSlotsFull(
                        f"all {lim.max_sessions} video slots of this server are in use "
                        f"(samkit serve --max-video-sessions {lim.max_sessions}): close a video "
                        "you no longer need (DELETE /api/videos/ID; the page closes its video "
                        "when it opens another), or try again in "
                        f"{max(1, round(wait))} s, when the least recently used one will have "
                        f"been idle for {lim.idle_s:g} s and may be closed for yours",
                        max(1.0, wait),
                    )
                s = idle[0]
                self.sessions.pop(s.id)
                self.closed[s.id] = (
                    f"it was closed after {now - s.last_used:.0f} s idle to free a slot for "
                    f"another video (samkit serve --max-video-sessions {lim.max_sessions})"
                )
                while len(self.closed) > _REMEMBER_CLOSED:
                    self.closed.popitem(last=False)
                freed.append(s)
            self._opening += 1
        for s in freed:  # after the jobs already queued for it
            self._jobs.submit(s.close)
        return [
            {"video_id": s.id, "name": s.name, "idle_s": round(now - s.last_used, 1)} for s in freed
        ]

    def release(self) -> None:
        """Give back the slot taken by `reserve` (the upload was opened or refused)."""
        with self._lock:
            self._opening -= 1

    def open(self, data: bytes, name: str) -> VideoSession:
        """Decode and check a clip, start its predictor state (a job; call through `submit`,
        holding a slot from `reserve`). Raises ValueError for a clip that is refused."""
        session = VideoSession(self.predictor, data, name, self.limits, self.root)
        with self._lock:
            self.sessions[session.id] = session
        return session

    def get(self, video_id: str) -> VideoSession | None:
        with self._lock:
            s = self.sessions.get(video_id)
            if s is not None:
                s.last_used = time.monotonic()
            return s

    def why_closed(self, video_id: str) -> str | None:
        """Why a session was closed for another one (None: never open, or closed by a client)."""
        with self._lock:
            return self.closed.get(video_id)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "open": len(self.sessions),
                "opening": self._opening,
                "max_sessions": self.limits.max_sessions,
                "idle_s": self.limits.idle_s,
            }

    def remove(self, video_id: str) -> bool:
        with self._lock:
            s = self.sessions.pop(video_id, None)
        if s is not None:
            s.close()
        return s is not None

    def close(self) -> None:
        with self._lock:
            for s in self.sessions.values():
                s.close()
            self.sessions.clear()
        self._jobs.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)
