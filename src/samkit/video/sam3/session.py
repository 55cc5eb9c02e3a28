"""The state of one SAM 3 video session: frames, prompt, objects, cached frame outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from samkit.modeling.sam3.sam3_image import GeometricPrompt
from samkit.video.sam3.frames import Sam3Frames

VISUAL_TEXT = "visual"  # the detector's text when a prompt has no text (official)


@dataclass
class Sam3Object:
    """One tracked object.

    Attributes:
        obj_id: its id (never reused in a session).
        score: `out_probs`: the detection score on the frame it started (1.0 after clicks).
        first_frame: the frame it started on.
        cond_masks: frame -> (288, 288) detector logits given to the tracker as mask prompts.
    """

    obj_id: int
    score: float
    first_frame: int
    cond_masks: dict[int, Tensor] = field(default_factory=dict)


@dataclass
class Sam3VideoSession:
    """A session of `Sam3VideoPredictor` (official `inference_state`, typed).

    Attributes:
        session_id: the id `start_session` returned.
        frames: the clip (`Sam3Frames`).
        text: the concept prompt (None before `add_prompt`; "visual" for an exemplar box).
        visual_prompt: the exemplar box prompt and its frame, or None.
        objects: id -> `Sam3Object`, in creation order.
        max_obj_id: the largest id handed out (-1: none yet).
        outputs: frame -> that frame's official output dict (numpy arrays).
    """

    session_id: str
    frames: Sam3Frames
    text: str | None = None
    visual_prompt: tuple[int, GeometricPrompt] | None = None
    objects: dict[int, Sam3Object] = field(default_factory=dict)
    max_obj_id: int = -1
    outputs: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def reset(self) -> None:
        """Forget prompts, objects and outputs (official `reset_state`); frames stay."""
        self.text = None
        self.visual_prompt = None
        self.objects = {}
        self.max_obj_id = -1
        self.outputs = {}

    def check_frame(self, frame_index: object) -> int:
        """`frame_index` as an int in [0, num_frames).

        Raises:
            ValueError: not an int, or outside the video.
        """
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"frame_index must be an int, got {frame_index!r}")
        if not 0 <= int(frame_index) < self.num_frames:
            raise ValueError(
                f"frame_index {frame_index} is outside the video (0..{self.num_frames - 1})"
            )
        return int(frame_index)
