"""Why "segment everything" kept no mask: per-filter counts of removed candidate masks.

The generator counts, per `generate` call, the candidate masks it decoded (points x masks per
point, over all crops) and how many each filter removed, in pipeline order:

* `pred_iou`: predicted IoU <= pred_iou_thresh;
* `stability`: stability score < stability_score_thresh;
* `crop_edge`: box within 20 px of a crop edge that is not an image edge (crop layers only);
* `box_nms`: duplicates within a crop (box IoU > box_nms_thresh);
* `crop_nms`: duplicates between crops (box IoU > crop_nms_thresh);
* `min_region`: duplicates after hole / island removal (SAM 1, min_mask_region_area > 0);
* `kept`: the masks returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FILTERS = ("pred_iou", "stability", "crop_edge", "box_nms", "crop_nms", "min_region")


def new_filter_counts() -> dict[str, int]:
    """All counters at zero."""
    return {"candidates": 0, **dict.fromkeys(FILTERS, 0), "kept": 0}


def _python_name(option: str) -> str:
    return option


def cli_flag(option: str) -> str:
    """`pred_iou_thresh` -> `--pred-iou-thresh` (the `samkit auto` spelling)."""
    return "--" + option.replace("_", "-")


def _describe(name: str, s: dict[str, Any], opt: Callable[[str], str]) -> tuple[str, str]:
    """(what the filter removed, the option that lets more through)."""
    if name == "pred_iou":
        return (
            f"predicted IoU <= {s['pred_iou_thresh']:g}",
            f"lower {opt('pred_iou_thresh')} (0 disables it)",
        )
    if name == "stability":
        return (
            f"stability score < {s['stability_score_thresh']:g}",
            f"lower {opt('stability_score_thresh')} (0 disables it) or "
            f"{opt('stability_score_offset')}",
        )
    if name == "crop_edge":
        return (
            "box touching the edge of an image crop",
            f"fewer crop layers ({opt('crop_n_layers')})",
        )
    if name == "box_nms":
        return (
            f"duplicate within a crop (box IoU > {s['box_nms_thresh']:g})",
            f"raise {opt('box_nms_thresh')}",
        )
    if name == "crop_nms":
        return (
            f"duplicate between crops (box IoU > {s['crop_nms_thresh']:g})",
            f"raise {opt('crop_nms_thresh')}",
        )
    return (
        f"duplicate after small-region removal (min area {s['min_mask_region_area']})",
        f"lower {opt('min_mask_region_area')}",
    )


def filter_summary(
    counts: dict[str, int], settings: dict[str, Any], option: Callable[[str], str] = _python_name
) -> list[str]:
    """One line per filter that removed candidates: 'N removed: <reason>; <advice>'."""
    lines = []
    for name in FILTERS:
        n = int(counts.get(name, 0))
        if n:
            what, advice = _describe(name, settings, option)
            lines.append(f"{n} removed: {what}; {advice}")
    return lines


def empty_reason(
    counts: dict[str, int], settings: dict[str, Any], option: Callable[[str], str] = _python_name
) -> str:
    """A message saying which filters removed the candidates of a run that kept no mask.

    Args:
        counts: the generator's `filter_counts` after `generate`.
        settings: the thresholds, by option name (`pred_iou_thresh`, ...).
        option: spells an option name for the reader (e.g. `cli_flag`).

    Returns:
        "" when masks were kept or no candidate was decoded; else a one-paragraph message
        naming the filter that removed the most candidates first.
    """
    total = int(counts.get("candidates", 0))
    if total == 0 or int(counts.get("kept", 0)) > 0:
        return ""
    order = sorted((n for n in FILTERS if counts.get(n, 0)), key=lambda n: -int(counts[n]))
    parts = []
    for name in order:
        what, advice = _describe(name, settings, option)
        parts.append(f"{int(counts[name])} by {what} ({advice})")
    return f"0 masks: all {total} candidate masks were removed: " + "; ".join(parts) + "."
