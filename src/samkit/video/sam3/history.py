"""What a SAM 3 video propagation does, from the session's action history (official
`Sam3VideoInferenceWithInstanceInteractivity.parse_action_history_for_propagation` and
`Sam3VideoInference._get_processing_order`, sam3 0.1.4).

Actions are `(type, frame, obj_ids)`: "add" / "refine" (clicks), "remove", and the
propagations "propagation_full" / "propagation_partial" / "propagation_fetch" (frame = the
request's `start_frame_index`, possibly None).
"""

from __future__ import annotations

from samkit.video.sam3.session import Sam3VideoSession

FULL = "propagation_full"
PARTIAL = "propagation_partial"
FETCH = "propagation_fetch"


def propagation_type(s: Sam3VideoSession) -> tuple[str, list[int] | None]:
    """(type, object ids to propagate for a partial pass).

    * no action yet: full (the detector-tracker loop on every frame);
    * after a full / partial pass: the same pass again (the other direction) unless two passes
      ran in a row or the last one started at the first or last frame, then fetch;
    * after a fetch: fetch;
    * otherwise the clicked objects since the last pass (partial), or fetch when there are
      none (removals only).
    """
    h = s.history
    if not h:
        return FULL, None
    last_type, last_frame, last_ids = h[-1]
    if last_type == FETCH:
        return FETCH, None
    if last_type in (FULL, PARTIAL):
        twice = len(h) > 1 and h[-2][0] in (FULL, PARTIAL)
        if twice or last_frame in (0, s.num_frames - 1):
            return FETCH, None
        return last_type, last_ids
    clicked: list[int] = []
    for kind, _, ids in reversed(h):
        if kind.startswith("propagation"):
            break
        if kind in ("add", "refine") and ids:
            clicked.extend(ids)
    if not clicked:
        return FETCH, None
    return PARTIAL, sorted(set(clicked))


def processing_order(
    s: Sam3VideoSession, start: int | None, max_n: int | None, reverse: bool
) -> tuple[list[int], int]:
    """(frames of a pass, its end frame): forward `start .. min(start + max_n, N - 1)`,
    backward `start - 1 .. max(start - max_n, 0)` (the start frame is not repeated); the
    default start is the first frame with outputs.

    Raises:
        ValueError: no start given and no frame has outputs yet.
    """
    n = s.num_frames
    if start is None:
        start = s.first_output_frame
        if start is None:  # clicks alone: the first clicked frame
            start = min(s.cached_masks, default=None)
        if start is None:
            raise ValueError("add a prompt before propagate_in_video (no frame has outputs yet)")
    max_n = n if max_n is None else max_n
    if reverse:
        end = max(start - max_n, 0)
        return list(range(start - 1, end - 1, -1)), end
    end = min(start + max_n, n - 1)
    return list(range(start, end + 1)), end
