"""The state of one video in `samkit.video.track_concepts.ConceptTracker`: the frames, one
predictor session per concept, track ids and the kept outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samkit.io.rle import mask_runs

MAX_TRACK_ID = 255  # palette PNGs


@dataclass
class ConceptTrackState:
    """The state of one video (the SAM 2 state's `num_frames`, `video_height`, `video_width`).

    Attributes:
        frames: the video (what each session is started on): a `VideoFrames`, decoded when a
            session needs a frame, or a list of HxWx3 uint8 RGB arrays.
        concepts: per concept index, its text (None: objects started by clicks; "" never).
        exemplars: per concept index, whether an exemplar box was part of its prompt.
        sessions: per concept index, the predictor's session id.
        prompt_frames: per concept index, the frame its find prompt was given on (-1: none).
        prompted: every frame a prompt (find or click) was given on.
        pinned: start frames of passes (their outputs are kept, as prompt frames').
        track_of: (concept index, official obj id) -> track id; `key_of` the inverse.
        last: frame -> track id -> the latest output mask, run-length encoded (`kept` /
            `keep`: a few KB for a real object, where a bit per pixel takes H * W / 8 bytes;
            bit-packed when that is smaller), for the start frame of a reverse pass and for merging
            a click's frame with the other concepts' outputs; prompt frames always, every
            tracked frame with `keep_outputs` (the web app: clicks after tracking).
        scores: track id -> the official `out_probs` (its detection score; 1.0 for clicks).
    """

    frames: Any
    video_height: int
    video_width: int
    keep_outputs: bool = True
    concepts: list[str | None] = field(default_factory=list)
    exemplars: list[bool] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    prompt_frames: list[int] = field(default_factory=list)
    prompted: set[int] = field(default_factory=set)
    pinned: set[int] = field(default_factory=set)
    track_of: dict[tuple[int, int], int] = field(default_factory=dict)
    key_of: dict[int, tuple[int, int]] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    last: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def rgb(self, t: int) -> np.ndarray:
        """Frame t as the sessions read it: HxWx3 uint8 RGB (decoded now from a `VideoFrames`)."""
        return np.asarray(self.frames[t] if isinstance(self.frames, list) else self.frames.rgb(t))

    def kept(self, t: int) -> dict[int, np.ndarray]:
        """track id -> (H, W) bool mask kept for frame t."""
        hw = (self.video_height, self.video_width)
        return {o: _decode(r, hw) for o, r in self.last.get(t, {}).items()}

    def keep(self, t: int, masks: dict[int, np.ndarray]) -> None:
        self.last[t] = {o: _encode(m) for o, m in masks.items()}

    def __getitem__(self, key: str) -> Any:  # the official dict-style keys
        if key in ("num_frames", "video_height", "video_width"):
            return getattr(self, key)
        if key == "obj_ids":
            return self.obj_ids
        raise KeyError(key)

    @property
    def obj_ids(self) -> list[int]:
        """Track ids started so far and not removed."""
        return sorted(t for t in self.key_of if t not in self.removed)

    def predictor_id(self, track_id: int) -> tuple[int, int]:
        """`(concept index, official obj id)` of a track.

        Raises:
            ValueError: an unknown (or removed) track id.
        """
        if track_id not in self.key_of or track_id in self.removed:
            raise ValueError(f"unknown object id {track_id!r}; objects: {self.obj_ids}")
        return self.key_of[track_id]

    def category(self, track_id: int) -> str:
        """The concept name of a track ("clicked object" for click-started ones)."""
        k = self.key_of[track_id][0]
        text = self.concepts[k]
        if text is None:
            return "exemplar" if self.exemplars[k] else "clicked object"
        return text

    def track_id(self, concept: int, obj_id: int) -> int:
        key = (concept, int(obj_id))
        if key not in self.track_of:
            new = max(self.key_of, default=0) + 1
            if new > MAX_TRACK_ID:
                raise ValueError(
                    f"more than {MAX_TRACK_ID} objects: palette PNGs store ids 1..{MAX_TRACK_ID}"
                )
            self.track_of[key], self.key_of[new] = new, key
        return self.track_of[key]

    def concept_outputs(self, k: int, t: int) -> dict[str, Any]:
        """Concept k's kept outputs on frame t, `{"tracks", "masks"}` (empty when none): the
        start frame of a reverse pass."""
        masks = self.kept(t)
        ids = [o for o in sorted(masks) if self.key_of[o][0] == k]
        hw = (0, self.video_height, self.video_width)
        return {
            "tracks": ids,
            "masks": np.stack([masks[o] for o in ids]) if ids else np.zeros(hw, bool),
        }

    def merge(
        self, t: int, outputs: dict[int, dict[str, Any]], remember: bool
    ) -> tuple[list[int], np.ndarray]:
        """Merge per-concept outputs of frame t (official output dicts, or `concept_outputs`)
        with the kept outputs of the other concepts: track ids ascending and their (K, H, W)
        bool masks; with `remember`, kept as `last` (see the class doc)."""
        masks: dict[int, np.ndarray] = {}
        for k, out in outputs.items():
            if "tracks" in out:
                masks.update(zip(out["tracks"], out["masks"]))
                continue
            for i, official in enumerate(out["out_obj_ids"].tolist()):
                tid = self.track_id(k, official)
                masks[tid] = np.asarray(out["out_binary_masks"][i], dtype=bool)
                self.scores[tid] = float(out["out_probs"][i])
        if any(k not in outputs for k in range(len(self.sessions))):
            for tid, m in self.kept(t).items():  # the other concepts' outputs there
                if self.key_of[tid][0] not in outputs and tid not in self.removed:
                    masks[tid] = m
        if remember and (self.keep_outputs or t in self.prompted or t in self.pinned):
            self.keep(t, masks)
        ids = sorted(masks)
        hw = (0, self.video_height, self.video_width)
        return ids, np.stack([masks[i] for i in ids]) if ids else np.zeros(hw, bool)


def _encode(mask: np.ndarray) -> np.ndarray:
    """An (H, W) bool mask as its row-major run lengths (int32, zeros first: `mask_runs` of the
    transpose, read without a copy), or bit-packed (uint8) when that is smaller (a mask of
    many tiny pieces): never more than H * W / 8 bytes and a few."""
    m = np.asarray(mask, dtype=bool)
    runs = mask_runs(m.T)
    if 4 * runs.size < m.size / 8:
        return runs.astype(np.int32)
    return np.packbits(m.reshape(-1))


def _decode(code: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if code.dtype == np.uint8:
        return np.unpackbits(code, count=hw[0] * hw[1]).reshape(hw).astype(bool)
    return np.repeat((np.arange(code.size) % 2).astype(bool), code).reshape(hw)
