"""What `samkit track` says on stderr after tracking, beyond its JSON summary: the objects that
a click or box left hidden on the frame it was given on (the web app's message for it,
`samkit.server.video_answers.hidden_object_message`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samkit.cli.argparsing import print_warnings
from samkit.server.video_answers import hidden_object_message


def hidden_prompt_warnings(
    annotations: str | Path, prompts: Sequence[Any], takes_boxes: bool = True
) -> list[str]:
    """One warning per point / box prompt whose object has no mask on its own (tracked) frame.

    Args:
        annotations: the annotations.json `samkit.video.track.track_video` wrote (YouTube-VIS
            style: per object `areas` (None where the mask is empty), `object_scores` (logits,
            None where not reported) and `tracked_frames`).
        prompts: the `VideoPrompt`s tracked; mask prompts are skipped (the mask is the answer).
        takes_boxes: whether the model takes a box for one object (not SAM 3's video model).
    """
    doc = json.loads(Path(annotations).read_text())
    by_obj = {int(a["object_id"]): a for a in doc.get("annotations", [])}
    out = []
    for p in prompts:
        if p.mask is not None:
            continue
        ann = by_obj.get(p.obj_id)
        if ann is not None and p.frame not in ann.get("tracked_frames", []):
            continue  # its frame was not tracked (--start-frame / --max-frames)
        if ann is None or ann["areas"][p.frame] is None:
            score = None if ann is None else ann["object_scores"][p.frame]
            out.append(hidden_object_message(p.obj_id, p.frame, score, takes_boxes))
    return out


def warn_hidden_prompts(annotations: str | Path, prompts: Sequence[Any], predictor: Any) -> None:
    """Print `hidden_prompt_warnings` as `samkit track: warning: ...` lines on stderr (the fix
    names a box only for a predictor that takes one: not a concept tracker)."""
    takes_boxes = not getattr(predictor, "finds_concepts", False)
    print_warnings("track", hidden_prompt_warnings(annotations, prompts, takes_boxes))
