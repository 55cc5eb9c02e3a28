"""The SAM 3 options of `samkit segment` and `samkit auto` (`--text`, `--threshold` and the
exemplar label of `--box`) and the concept options of `samkit track` (`--text`, `--text-frame`,
`--exemplar`, `--threshold`).

Standard library only: the parser is built from these without importing torch (usage errors
such as an empty `--text` or a threshold outside (0, 1) answer at once).
"""

from __future__ import annotations

import argparse
from typing import Any

from samkit.cli.common import _box
from samkit.configs.sam3_thresholds import (
    OFFICIAL_CONFIDENCE_THRESHOLD,
    THRESHOLD_RANGE,
    check_score_threshold,
)

OFFICIAL_THRESHOLD = OFFICIAL_CONFIDENCE_THRESHOLD  # the official Sam3Processor's


def labelled_box(text: str) -> tuple[float, ...]:
    """`--box X0,Y0,X1,Y1[,LABEL]` of `samkit segment`: 4 numbers, or 5 with a SAM 3 exemplar's
    label (1 positive, 0 negative), which SAM 1 / SAM 2 boxes do not take."""
    parts = text.split(",")
    if len(parts) != 5:
        return _box(text)
    box = _box(",".join(parts[:4]))
    if parts[4].strip() not in ("0", "1"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: LABEL must be 1 (positive exemplar) or 0 (negative exemplar)"
        )
    return (*box, int(parts[4]))


def text_prompt(text: str) -> str:
    """`--text PHRASE`: a non-empty noun phrase (SAM 3)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a noun phrase to find, e.g. --text dog or --text 'yellow school bus'"
        )
    return text


def threshold(text: str) -> float:
    """`--threshold T` of `segment` / `auto` / `track` (SAM 3): a number strictly between 0 and
    1, checked by `samkit.configs.sam3_thresholds.check_score_threshold`, the rule (and words)
    of the web app's image and video Find."""
    try:
        value: Any = float(text)
    except ValueError:
        value = text  # named as typed
    try:
        return check_score_threshold(value, "the threshold")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


detection_threshold = threshold  # `samkit track --threshold`: the same rule


def add_sam3_args(p: argparse.ArgumentParser) -> None:
    """Add `--text` (repeatable) and `--threshold` (a SAM 3 model; `--text` alone means
    `--model sam3`)."""
    g = p.add_argument_group("SAM 3 concepts (--model sam3 or a sam3.pt --checkpoint)")
    g.add_argument(
        "--text",
        action="append",
        type=text_prompt,
        default=[],
        metavar="PHRASE",
        help="find every instance of this noun phrase (SAM 3); repeatable, one COCO category "
        "per phrase, all answered in one pass; without --model / --checkpoint it means "
        "--model sam3",
    )
    g.add_argument(
        "--threshold",
        type=threshold,
        default=None,
        metavar="T",
        help=f"SAM 3: keep instances whose score is above T, {THRESHOLD_RANGE} (default "
        f"{OFFICIAL_THRESHOLD}, the official)",
    )


def exemplar_arg(text: str) -> tuple[int, tuple[float, ...], int]:
    """`--exemplar FRAME:X0,Y0,X1,Y1[,LABEL]` -> (frame, box, label)."""
    frame, sep, rest = text.partition(":")
    parts = rest.split(",")
    try:
        if not sep or len(parts) not in (4, 5):
            raise ValueError
        f, box = int(frame), tuple(float(v) for v in parts[:4])
        label = int(parts[4]) if len(parts) == 5 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected FRAME:X0,Y0,X1,Y1[,LABEL] (pixels; LABEL 1 positive, 0 negative)"
        ) from None
    if label not in (0, 1) or f < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: FRAME must be >= 0 and LABEL 0 or 1")
    return f, box, label


def add_track_concept_args(p: Any) -> None:
    """The concept options of `samkit track` (a SAM 3 model): --text, --text-frame,
    --exemplar and --threshold."""
    g = p.add_argument_group(
        "concepts (a SAM 3 model: every instance of a phrase or exemplar starts a track)"
    )
    g.add_argument(
        "--text",
        action="append",
        type=text_prompt,
        default=[],
        metavar="PHRASE",
        help="track every instance of this noun phrase found on --text-frame; repeatable, one "
        "YouTube-VIS category per phrase",
    )
    g.add_argument(
        "--text-frame", type=int, default=0, metavar="FRAME", help="frame of --text (default 0)"
    )
    g.add_argument(
        "--exemplar",
        action="append",
        type=exemplar_arg,
        default=[],
        metavar="FRAME:X0,Y0,X1,Y1[,LABEL]",
        help="track every instance like the object in this box (a visual exemplar); repeatable",
    )
    g.add_argument(
        "--threshold",
        type=detection_threshold,
        default=None,
        metavar="T",
        help="detection score threshold in (0, 1), exclusive, for new instances (official "
        "score_threshold_detection 0.5 and new_det_thresh 0.7 by default)",
    )
