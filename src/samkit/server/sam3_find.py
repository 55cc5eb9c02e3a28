"""SAM 3 in the web app: find every instance of a phrase in an uploaded image.

Route (registered by `samkit.server.app.create_app` on every server):
- `POST /api/images/{image_id}/find`, body `{text: "yellow school bus", threshold: 0.5}`: every
  instance of the phrase that scores above `threshold` (official `Sam3Processor` score,
  sigmoid(logit) * sigmoid(presence), in [0, 1]; default 0.5, the official default), by
  descending score: `instances` with `score`, `area` (pixels), `bbox` (XYWH, COCO's `toBbox`
  convention), `segmentation` (COCO RLE of the HxW mask) and `box_xyxy` (the detector's box in
  pixels, x0, y0, x1, y1; it may reach outside the image); `best_score` (the best query's score,
  kept or not; None when the model returned no query) and, when nothing was kept, `message`
  saying why and what to change.
  Errors: 409 on a server whose model is not SAM 3 (SAM 1 / SAM 2 cannot read a phrase), then
  404 for an unknown image id, then 413 / 415 / 422 for a bad body (`samkit.server.validation`):
  422 for an empty phrase, one longer than `MAX_PHRASE_CHARS`, or a threshold that is not a
  number strictly between 0 and 1 (the message names the field, the value and the range).

Thresholds: the image Find and the video Find take the same range, checked by the one rule
`samkit.configs.sam3_thresholds.check_score_threshold` (the official code keeps a detection
whose score is strictly above the threshold: 0 would keep all 200 queries, 1 none), as the CLI's
`--threshold` of `segment`, `auto` and `track` does.

The video mode's `POST /api/videos/{id}/find` (`samkit.server.video_routes`) checks its
optional `threshold` with `check_video_find_threshold` and says what to try when a find starts
no track (`video_find_message`, with how close the best candidate came).

The image's features come from the web app's cache (`samkit.server.engine.Entry`, the layout of
`samkit.amg.sam3.sam3_image_features`): a new phrase on an uploaded image runs only the text
encoder and the detector heads, never the backbone. The work runs on the engine's decoding
thread, one request at a time, like clicks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict

from samkit.amg.sam3 import check_text_prompts, sam3_state_from_features
from samkit.amg.sam3 import sam3_feature_bytes as feature_bytes
from samkit.build.registry import FAMILY_NAMES, family_names, get_family
from samkit.build.sam3_models import sam3_img_size
from samkit.configs.sam3_thresholds import (
    OFFICIAL_CONFIDENCE_THRESHOLD,
    best_candidate_note,
    check_score_threshold,
    suggested_threshold,
)
from samkit.io.masks import mask_records
from samkit.io.provenance import with_article
from samkit.predict.sam3 import Sam3Processor
from samkit.server.validation import parse_json_body

MAX_PHRASE_CHARS = 200  # a noun phrase; the tokenizer keeps 32 tokens anyway


class FindIn(BaseModel):
    """The body of `POST /api/images/{id}/find`."""

    model_config = ConfigDict(extra="forbid")
    JSON_SHAPE: ClassVar[str] = (
        '{"text": "a noun phrase", "threshold": number in (0, 1) exclusive (optional: '
        f"{OFFICIAL_CONFIDENCE_THRESHOLD:g} when left out or null)}}"
    )
    text: str
    threshold: Any = OFFICIAL_CONFIDENCE_THRESHOLD  # check_score_threshold: the video Find's words


def find_unavailable_reason(family: str) -> str | None:
    """Why this server cannot find phrases (None when it can: a family with text concepts in
    its registry entry, SAM 3)."""
    if get_family(family).has("concepts"):
        return None
    finders = family_names("concepts")
    example = " or ".join(f"--model {get_family(f).default_model}" for f in finders)
    return (
        f"finding a phrase needs {with_article(' or '.join(FAMILY_NAMES[f] for f in finders))} "
        f"model (samkit serve {example} --checkpoint sam3.pt); this server runs "
        f"{with_article(FAMILY_NAMES.get(family, family))} model, which answers clicks and boxes "
        "only"
    )


def check_find(body: FindIn) -> tuple[str, float]:
    """The phrase and threshold of a find request.

    Raises:
        ValueError: a blank phrase, one over `MAX_PHRASE_CHARS` characters, or a threshold
            that is not a number strictly between 0 and 1 (`check_score_threshold`); a null
            threshold is the default, `OFFICIAL_CONFIDENCE_THRESHOLD` (0.5).
    """
    (text,) = check_text_prompts([body.text])
    text = text.strip()
    if len(text) > MAX_PHRASE_CHARS:
        raise ValueError(
            f"the phrase has {len(text)} characters; give a short noun phrase (at most "
            f"{MAX_PHRASE_CHARS} characters, e.g. 'yellow school bus')"
        )
    if body.threshold is None:  # an explicit JSON null means the default, as leaving it out
        return text, OFFICIAL_CONFIDENCE_THRESHOLD
    return text, check_score_threshold(body.threshold)


def check_video_find_threshold(threshold: Any) -> float | None:
    """A video find's detection score threshold: None (the server's), or a number strictly
    between 0 and 1 (`check_score_threshold`, the image Find's rule too).

    Raises:
        ValueError: a string, a bool, NaN or a number outside (0, 1), saying what is expected.
    """
    return None if threshold is None else check_score_threshold(threshold)


def video_find_message(
    text: str,
    frame: int,
    threshold: float | None,
    used: dict[str, float | None],
    best: float | None = None,
) -> str:
    """What to try when a video find started no track: how close its best candidate came
    (`best`, a probability, `best_candidate_note`) and, when the request gave no threshold, the
    server's.

    Args:
        threshold: the request's threshold (None: the server's).
        used: the thresholds the find ran at, `{"detection", "new_object"}`
            (`samkit.server.video_answers.find_thresholds`; None where the predictor does not
            say).
    """
    det, new = used["detection"], used["new_object"]
    note = "" if det is None else best_candidate_note(best, det, new)
    at = "the detection threshold" if threshold is None else f"the threshold {threshold:g}"
    head = f"started a track ({note}); " if note else f"scored above {at}: "
    message = (
        f"no instance of {text!r} on frame {frame} {head}lower the threshold, try another "
        "phrase (a short noun phrase, e.g. 'person', 'red car') or another frame"
    )
    if threshold is None and det is not None and new is not None:
        message += f" (the defaults: detection score {det:g}, {new:g} to start a track)"
    guess = suggested_threshold(best)  # below the best score: it would keep that candidate
    if guess is not None and (threshold is None or guess < threshold):
        message += f'; e.g. "threshold": {guess:g}'

    return message


def sam3_feature_bytes(model: Any) -> int:
    """Bytes of one image's cached SAM 3 features (`samkit.amg.sam3.sam3_feature_bytes`)."""
    return feature_bytes(model)


class Sam3Finder:
    """Phrases on cached image features (one `Sam3Processor`, so repeated phrases reuse its
    cached text embeddings). Not thread-safe: the engine's decoding thread calls it."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.processor = Sam3Processor(model, resolution=sam3_img_size(model))

    def find(
        self, features: dict[str, Any], original_size: tuple[int, int], text: str, threshold: float
    ) -> dict[str, Any]:
        """Every instance of `text` scoring above `threshold` on an image of `original_size`
        (H, W): `instances` by descending score, `best_score`, `message` (None unless empty),
        `elapsed_ms`."""
        t = time.perf_counter()
        state = sam3_state_from_features(self.model, features, original_size)
        proc = self.processor
        proc.set_confidence_threshold(threshold)
        proc.set_text_prompt(text, state)
        masks = state["masks"][:, 0].cpu().numpy()
        scores = state["scores"].float().cpu().numpy().astype(np.float64)
        boxes = state["boxes"].float().cpu().numpy().astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        records = mask_records(masks[order], scores[order].tolist())
        for rec, i in zip(records, order):
            rec["box_xyxy"] = [float(v) for v in boxes[i]]
        all_scores = state["_last_output"].scores
        best = float(all_scores.max()) if all_scores.numel() else None
        message = None
        if not records:
            note = best_candidate_note(best, threshold)
            message = (
                f"0 instances of {text!r}: "
                f"{note or f'no query scored above the threshold {threshold:g}'}; lower the "
                "threshold to see more"
            )
            guess = suggested_threshold(best)  # below the best score: keeps that candidate
            if guess is not None and guess < threshold:
                message += f' (e.g. "threshold": {guess:g})'

        return {
            "instances": records,
            "best_score": best,
            "message": message,
            "elapsed_ms": (time.perf_counter() - t) * 1e3,
        }


def add_find_route(
    app: FastAPI, engine: Any, family: str, entry_or_404: Callable[[str], Any]
) -> dict[str, Any]:
    """Register `POST /api/images/{image_id}/find`; returns `{available, reason}` for
    `/api/info` (the page shows the Find box only when available)."""
    reason = find_unavailable_reason(family)
    finder = Sam3Finder(engine.model) if reason is None else None

    @app.post("/api/images/{image_id}/find")
    async def find(image_id: str, request: Request) -> dict[str, Any]:
        if finder is None:
            raise HTTPException(409, reason)
        entry = entry_or_404(image_id)  # 404 first, whatever the body
        body = await parse_json_body(request, FindIn)
        try:
            text, threshold = check_find(body)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        fut = engine.submit_decoding(
            finder.find, entry.features, entry.original_size, text, threshold
        )
        try:
            out = await asyncio.wrap_future(fut)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        h, w = entry.original_size
        return {
            "image_id": image_id,
            "width": w,
            "height": h,
            "text": text,
            "threshold": threshold,
            **out,
        }

    return {"available": finder is not None, "reason": reason}
