"""Pick the automatic mask generator that fits a model (SAM 1 or SAM 2 / 2.1)."""

from __future__ import annotations

from typing import Any

from samkit.amg.pipeline import MaskGeneratorBase

# Settings only the SAM 2 generator has, with the value that means "as SAM 1 does".
SAM2_ONLY = {"use_m2m": False, "multimask_output": True, "mask_threshold": 0.0}


def is_sam2(model: Any) -> bool:
    """Whether `model` is a SAM 2 model or a `Sam2ImagePredictor`."""
    from samkit.modeling.sam2 import Sam2
    from samkit.predict.sam2 import Sam2ImagePredictor

    return isinstance(model, (Sam2, Sam2ImagePredictor))


def mask_generator_for(model: Any, **kwargs: Any) -> MaskGeneratorBase:
    """`Sam2AutomaticMaskGenerator` for a SAM 2 model or predictor, else
    `SamAutomaticMaskGenerator`; keyword arguments go to the generator, and a setting left at
    None takes that generator's default (e.g. pred_iou_thresh 0.88 for SAM 1, 0.8 for SAM 2).

    Raises:
        ValueError: a SAM 2-only setting (use_m2m, multimask_output, mask_threshold) given a
            non-default value for a SAM 1 model, or any invalid setting.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if is_sam2(model):
        from samkit.amg.sam2 import Sam2AutomaticMaskGenerator

        return Sam2AutomaticMaskGenerator(model, **kwargs)
    from samkit.amg.sam import SamAutomaticMaskGenerator

    for name, neutral in SAM2_ONLY.items():
        if name in kwargs and kwargs.pop(name) != neutral:
            raise ValueError(f"{name} is a SAM 2 setting; this is a SAM 1 model")
    return SamAutomaticMaskGenerator(model, **kwargs)
