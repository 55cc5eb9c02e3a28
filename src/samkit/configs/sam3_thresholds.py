"""SAM 3's score thresholds: the official defaults, the one rule for a threshold a user gives, and
the words that say how close the best candidate came when nothing was kept.

Standard library only, so that the command line checks `--threshold` with it before any model
(or numpy, or torch) is loaded; the web app's image and video Find, the image concept generator
(`samkit segment / auto --text`) and the video concept tracker (`samkit track --text`) check
theirs with the same `check_score_threshold`.

The rule, from the official code (sam3 0.1.4): a detection is kept when its score (a probability,
sigmoid(class logit) * sigmoid(presence logit)) is strictly above the threshold:
`Sam3Processor._forward_grounding` keeps `out_probs > confidence_threshold`, and the video model
keeps `pred_probs > score_threshold_detection` (`Sam3VideoBase`). A threshold of 0 would keep
every one of the detector's queries and 1 would keep none, so a threshold a user gives is a
number strictly between 0 and 1, in the Python API too (`Sam3Processor(confidence_threshold=)`,
`set_confidence_threshold`, `Sam3VideoPredictor.start_session`'s thresholds), so that a
threshold that works in a notebook works on the command line and in the web app.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

OFFICIAL_CONFIDENCE_THRESHOLD = 0.5  # Sam3Processor(confidence_threshold=0.5)
OFFICIAL_DETECTION_THRESHOLD = 0.5  # the video model's score_threshold_detection
OFFICIAL_NEW_OBJECT_THRESHOLD = 0.7  # new_det_thresh of the official video build
THRESHOLD_RANGE = "a number between 0 and 1 (exclusive)"
_WHY = "SAM 3 keeps a detection scoring above it, so 0 would keep every query and 1 none"
IOU_RANGE = "a number from 0 to 1 (inclusive)"
# `Sam3VideoSettings` fields: detection scores (`check_score_threshold`) and mask IoUs
# (`check_iou_threshold`; official `_associate_det_trk`, `det_nms_thresh` of the detector's NMS)
VIDEO_SCORE_THRESHOLDS = ("score_threshold_detection", "new_det_thresh")
VIDEO_IOU_THRESHOLDS = (
    "det_nms_thresh",
    "assoc_iou_thresh",
    "trk_assoc_iou_thresh",
    "occlusion_iou_thresh",
)


def check_score_threshold(value: Any, name: str = "threshold") -> float:
    """`value` as a SAM 3 score threshold: a real number strictly between 0 and 1.

    Args:
        value: the threshold (an int or float, Python or numpy; bools and strings refused).
        name: what the message calls it (a JSON field, "the threshold" for a CLI flag, ...).

    Returns:
        The threshold as a float.

    Raises:
        ValueError: not a number, NaN, or outside (0, 1); the message names `name`, the value
            and the range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) < 1.0:  # NaN fails the comparison too
        raise ValueError(f"{name} must be {THRESHOLD_RANGE}: {_WHY}; got {value!r:.40}")
    return float(value)


def check_iou_threshold(value: Any, name: str) -> float:
    """`value` as a mask-IoU threshold of SAM 3's video loop: a real number from 0 to 1.

    An IoU lies in [0, 1], so both ends mean something (0: any overlap, 1: identical masks);
    a number outside never or always passes, which is no setting.

    Args:
        value: the threshold (an int or float, Python or numpy; bools and strings refused).
        name: what the message calls it.

    Returns:
        The threshold as a float.

    Raises:
        ValueError: not a number, NaN, or outside [0, 1]; the message names `name`, the value
            and the range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) <= 1.0:  # NaN fails the comparison too
        raise ValueError(f"{name} must be {IOU_RANGE} (a mask IoU); got {value!r:.40}")
    return float(value)


def check_video_thresholds(settings: Any, owner: str = "Sam3VideoSettings") -> None:
    """Check the thresholds of SAM 3's video settings (`Sam3VideoSettings`, built by a Python
    user or from `samkit track` / the web app): the detection scores by the rule of every SAM 3
    threshold (`check_score_threshold`, strictly between 0 and 1), the mask IoUs from 0 to 1
    (`check_iou_threshold`).

    Args:
        settings: an object with the `VIDEO_SCORE_THRESHOLDS` and `VIDEO_IOU_THRESHOLDS`
            attributes.
        owner: the class the message names with the field (`Sam3VideoSettings.new_det_thresh`).

    Raises:
        ValueError: the first threshold out of its range, named with its class.
    """
    for name in VIDEO_SCORE_THRESHOLDS:
        check_score_threshold(getattr(settings, name), f"{owner}.{name}")
    for name in VIDEO_IOU_THRESHOLDS:
        check_iou_threshold(getattr(settings, name), f"{owner}.{name}")


def best_candidate_note(
    best: float | None, detection: float, new_object: float | None = None
) -> str:
    """How close the best candidate came, for a find that kept nothing: e.g. "the best candidate
    scored 0.31, under the threshold 0.5"; "" when there was no candidate (`best` None or NaN).

    Args:
        best: the best score of any query (a probability), kept or not.
        detection: the threshold a detection must be above.
        new_object: the score a detection needs to start a video track (None: images, or the
            same as `detection`).
    """
    if best is None or math.isnan(best):
        return ""
    score = f"the best candidate scored {best:.3g}"
    if new_object is None or new_object == detection:
        if best <= detection:
            return f"{score}, under the threshold {detection:g}"
        return f"{score}, above the threshold {detection:g}, but it was not kept"
    if best <= detection:
        return f"{score}, under the detection threshold {detection:g}"
    if best < new_object:
        return (
            f"{score}, above the detection threshold {detection:g} but under {new_object:g}, "
            "the score that starts a track"
        )
    return f"{score}, above the thresholds, but the tracker did not keep its track"


def suggested_threshold(best: float | None) -> float | None:
    """A threshold that would keep the best candidate of a find that kept nothing: `best`
    rounded down to 2 decimals, less 0.01 (0.207 -> 0.19), so strictly below `best`; None when
    there was no candidate or that would not be above 0 (best under 0.02).

    Args:
        best: the best score of any query (a probability), kept or not.
    """
    if best is None or math.isnan(best):
        return None
    value = round(math.floor(best * 100) / 100 - 0.01, 2)
    return value if 0.0 < value < best else None
