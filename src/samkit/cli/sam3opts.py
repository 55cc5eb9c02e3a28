"""The SAM 3 options of `samkit segment` and `samkit auto`: `--text`, `--threshold` and the
exemplar label of `--box`.

Standard library only: the parser is built from these without importing torch (usage errors
such as an empty `--text` or a threshold outside [0, 1] answer at once).
"""

from __future__ import annotations

import argparse
import math

from samkit.cli.common import _box

OFFICIAL_THRESHOLD = 0.5  # the official Sam3Processor's confidence_threshold


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
    """`--threshold T`: SAM 3's confidence threshold, a number in [0, 1]."""
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not 0.0 <= t <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"{text!r}: the confidence threshold is a number in [0, 1] (official "
            f"{OFFICIAL_THRESHOLD})"
        )
    return t


def detection_threshold(text: str) -> float:
    """`samkit track --threshold T`: the detection score a new instance needs, strictly between
    0 and 1 (what the SAM 3 video code and the web page's video find accept: 0 would start a
    track for every detector query, 1 for none; `samkit.video.track_concepts_checks`)."""
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not 0.0 < t < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"{text!r}: the detection score threshold is a number between 0 and 1, exclusive "
            "(e.g. 0.3; official 0.5 to detect, 0.7 to start an instance)"
        )
    return t


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
        help=f"SAM 3: keep instances whose score is above T, in [0, 1] (default "
        f"{OFFICIAL_THRESHOLD}, the official)",
    )
