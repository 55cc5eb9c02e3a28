"""Pick the automatic mask generator that fits a model: its family's registry `amg_generator`."""

from __future__ import annotations

import inspect
from typing import Any

from samkit.amg.pipeline import MaskGeneratorBase
from samkit.build.registry import family_names, family_of, get_family

# Settings only some generators have (SAM 2's), with the value that means "as SAM 1 does": a
# generator without the setting takes it at that value and refuses any other.
SAM2_ONLY = {"use_m2m": False, "multimask_output": True, "mask_threshold": 0.0}


def mask_generator_for(model: Any, **kwargs: Any) -> MaskGeneratorBase:
    """The automatic mask generator of the family of `model` (a model or its image predictor;
    `samkit.build.registry`): `SamAutomaticMaskGenerator` for SAM 1, `Sam2AutomaticMaskGenerator`
    for SAM 2. Keyword arguments go to the generator, and a setting left at None takes that
    generator's default (e.g. pred_iou_thresh 0.88 for SAM 1, 0.8 for SAM 2).

    Raises:
        ValueError: a model of a family without an automatic mask generator; a setting of
            another family's generator (use_m2m, multimask_output, mask_threshold) given a
            non-neutral value; or any invalid setting.
    """
    family = family_of(model)
    generator = family.load("amg_generator")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    accepted = inspect.signature(generator).parameters
    for name, neutral in SAM2_ONLY.items():
        if name in kwargs and name not in accepted and kwargs.pop(name) != neutral:
            owners = [
                get_family(f).display
                for f in family_names("amg_generator")
                if name in inspect.signature(get_family(f).load("amg_generator")).parameters
            ]
            raise ValueError(
                f"{name} is a {' / '.join(owners) or 'other'} setting; this is a "
                f"{family.display} model"
            )
    return generator(model, **kwargs)
