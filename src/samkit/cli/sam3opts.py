"""The SAM 3 options of `samkit segment` and `samkit auto`: `--text`, `--threshold` and the
exemplar label of `--box`.

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
