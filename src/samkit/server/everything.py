""" "Segment everything" in the web app: its settings, their defaults and the page's names for them.

One vocabulary: the page builds its settings fields from `settings_for_page` (served in
`GET /api/info`), and the explanation of a run that kept no mask (`zero_masks_message`) names
those same fields. One set of defaults: the generator's own for the server's model family, which
are also `samkit auto`'s (points per side 32, min predicted IoU 0.88 for SAM 1 and 0.8 for SAM 2,
min stability 0.95, stability offset 1.0, as the official generators).
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from samkit.build.registry import get_family

# (API name, the page's label, min, max, step, what it does): the fields of the settings panel
PAGE_SETTINGS: tuple[tuple[str, str, float, float, float, str], ...] = (
    ("points_per_side", "points per side", 1, 64, 1,
     "a grid of N x N points, one prompt each; the time grows with N x N"),
    ("pred_iou_thresh", "min predicted IoU", 0, 1, 0.01,
     "keep masks whose predicted IoU (the model's own quality estimate) is above this; 0 keeps all"),
    ("stability_score_thresh", "min stability", 0, 1, 0.01,
     "keep masks whose stability score is at least this; 0 keeps all"),
    ("stability_score_offset", "stability offset", 0, 10, 0.1,
     "the logit offset of the stability score: a smaller offset gives higher stability scores"),
)  # fmt: skip


class EverythingIn(BaseModel):
    """The body of `POST /api/images/{id}/everything`; a setting left out (or None) takes the
    generator's default for the server's model family (`family_defaults`)."""

    model_config = ConfigDict(extra="forbid")
    points_per_side: int = Field(32, ge=1, le=64)
    points_per_batch: int = Field(64, ge=1, le=256)
    pred_iou_thresh: float | None = Field(None, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    stability_score_offset: float = Field(1.0, ge=0.0, le=10.0)
    box_nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    crop_n_layers: int = Field(0, ge=0, le=2)
    min_mask_region_area: int = Field(0, ge=0, le=10**7)


def family_defaults(family: str) -> dict[str, Any]:
    """The default of every `PAGE_SETTINGS` entry for a family with an automatic mask
    generator (its registry `amg_generator`: `SamAutomaticMaskGenerator`,
    `Sam2AutomaticMaskGenerator`): the generator's keyword defaults.

    Raises:
        ValueError: an unknown family, or one without an automatic mask generator.
    """
    gen = get_family(family).load("amg_generator")
    params = inspect.signature(gen.__init__).parameters
    return {name: params[name].default for name, *_ in PAGE_SETTINGS}


def settings_for_page(family: str) -> list[dict[str, Any]]:
    """The settings panel's fields: `{name, label, default, min, max, step, help}` each, in order."""
    defaults = family_defaults(family)
    return [
        {"name": n, "label": label, "default": defaults[n], "min": lo, "max": hi, "step": step,
         "help": text}
        for n, label, lo, hi, step, text in PAGE_SETTINGS
    ]  # fmt: skip


def page_label(option: str) -> str:
    """An option's name as the page shows it, in quotes (`"min predicted IoU"`); options without a
    field keep their API name."""
    labels = {n: label for n, label, *_ in PAGE_SETTINGS}
    return f'"{labels[option]}"' if option in labels else option


def zero_masks_messages(generator: Any) -> tuple[str | None, str | None]:
    """Why the generator's last run kept no mask, (in the page's words, with the API's names);
    (None, None) when it kept masks or decoded none."""
    page = generator.empty_reason(page_label) or None
    api = generator.empty_reason() or None
    return page, api
