"""The web app's video sessions: at most `VideoLimits.max_sessions` open `VideoSession`s, and the
thread their torch jobs run on.

Every torch job of the video mode (opening a clip, a click, tracking, the overlay MP4) runs one at a
time, in submission order (the thread discipline of `samkit.server.threads`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from samkit.server.threads import run_in_fresh_thread
from samkit.server.video_session import VideoLimits, VideoSession


class VideoManager:
    """The sessions of one app and the thread their torch jobs run on.

    Args:
        predictor: a `Sam2VideoPredictor` on the server's model.
        limits: what uploads may be.
        threads: torch intra-op threads of a job (default: the caller's setting).
    """

    def __init__(self, predictor: Any, limits: VideoLimits, threads: int | None = None) -> None:
        self.predictor = predictor
        self.limits = limits
        self.threads = torch.get_num_threads() if threads is None else int(threads)
        self.root = Path(tempfile.mkdtemp(prefix="samkit-video-"))
        self.sessions: dict[str, VideoSession] = {}
        self._lock = threading.Lock()
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samkit-video")

    def submit(self, fn: Any, *args: Any) -> Future:
        """Run `fn(*args)` after the jobs before it, on a fresh thread (a future of its result)."""
        return self._jobs.submit(run_in_fresh_thread, fn, *args, threads=self.threads)

    def open(self, data: bytes, name: str) -> VideoSession:
        """Decode and check a clip, start its predictor state (a job; call through `submit`)."""
        session = VideoSession(self.predictor, data, name, self.limits, self.root)
        with self._lock:
            idle = sorted(
                (s for s in self.sessions.values() if not s.tracking), key=lambda s: s.last_used
            )
            while len(self.sessions) >= self.limits.max_sessions and idle:
                self.sessions.pop(idle.pop(0).id).close()
            self.sessions[session.id] = session
        return session

    def get(self, video_id: str) -> VideoSession | None:
        with self._lock:
            s = self.sessions.get(video_id)
            if s is not None:
                s.last_used = time.monotonic()
            return s

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
        self._jobs.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)
