"""SAM 1-style clicks and boxes on a SAM 3 image: the computation behind `predict_inst`.

SAM 3's image model answers point / box / mask prompts with its tracker's SAM 2 heads on the SAM
2 pyramid of its dual neck (official `Sam3Image.predict_inst`, which drives a
`SAM3InteractiveImagePredictor`). This predictor is samkit's `Sam2ImagePredictor` (same prompt
validation, coordinate mapping, decoder-side cache and official numpy outputs) fed with the
features of a `Sam3Processor` state instead of its own image encoder.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from samkit.modeling.sam3.interactive import Sam3TrackerHeads
from samkit.predict.sam2 import (
    ImageNotSetError,
    Sam2ImagePredictor,
    check_postprocess_settings,
)

# Official SAM3InteractiveImagePredictor default: holes of up to 256 low-res pixels are filled.
OFFICIAL_MAX_HOLE_AREA = 256.0


def _scipy_available() -> bool:
    try:
        import scipy.ndimage  # noqa: F401
    except ImportError:
        return False
    return True


class Sam3InteractivePredictor(Sam2ImagePredictor):
    """`predict_inst` / `predict_inst_batch` for a SAM 3 model.

    Args:
        heads: the model's `Sam3TrackerHeads`.
        mask_threshold: logit threshold of the binary masks (0).
        max_hole_area: fill background holes of up to this many low-res (288x288) pixels before
            upsampling; the official default is 256. Needs scipy (connected components): without
            it the step is skipped with a warning, as the official predictor skips it when its
            connected-components kernel is unavailable. 0 turns it off.
        max_sprinkle_area: remove foreground specks up to this many low-res pixels (0 = off,
            the official default; needs scipy when > 0).

    Outputs are the official ones: masks CxHxW float32 0/1 (logits with `return_logits`) at the
    original image size, IoU predictions C, low-res logits Cx288x288 clamped to [-32, 32]; a
    leading B axis for several boxes.
    """

    family = "sam3"  # the family it serves (its `model` is the SAM 3 tracker heads)

    def __init__(
        self,
        heads: Sam3TrackerHeads,
        mask_threshold: float = 0.0,
        max_hole_area: float = OFFICIAL_MAX_HOLE_AREA,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        if not isinstance(heads, Sam3TrackerHeads):
            raise ValueError(
                f"Sam3InteractivePredictor needs the SAM 3 tracker heads, got {type(heads).__name__}"
            )
        check_postprocess_settings(mask_threshold, max_hole_area, max_sprinkle_area)
        if max_sprinkle_area > 0 and not _scipy_available():
            raise ImportError("max_sprinkle_area > 0 needs scipy: pip install scipy")
        if max_hole_area > 0 and not _scipy_available():
            warnings.warn(
                "scipy is not installed, so SAM 3 click masks skip the official hole filling "
                f"(max_hole_area={max_hole_area}); pip install scipy to enable it",
                UserWarning,
                stacklevel=2,
            )
            max_hole_area = 0.0
        self.model = heads  # what Sam2ImagePredictor's methods read (prompt encoder, decoder)
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self._bb_feat_sizes = heads.bb_feat_sizes
        self._bound: tuple[Any, dict[str, Any]] | None = None
        self.reset_predictor()

    def set_image(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError("set the image through the SAM 3 processor, then call predict_inst(state)")

    set_image_batch = set_image

    def _bind(self, state: Any, batch: bool) -> None:
        """Point the predictor at the image(s) of a processor state."""
        if not isinstance(state, dict) or "backbone_out" not in state:
            raise ImageNotSetError(
                "no image is set: call processor.set_image(image) and pass its state"
            )
        sam2 = state["backbone_out"].get("sam2_backbone_out")
        if sam2 is None:
            raise ValueError("this SAM 3 model was built without the interactive (SAM 2) neck")
        key = sam2["backbone_fpn"][-1]
        if self._bound is None or self._bound[0] is not key:
            with torch.inference_mode():
                self._bound = (key, self.model.features(sam2))
        features = self._bound[1]
        if "original_heights" in state:
            hw = list(zip(state["original_heights"], state["original_widths"], strict=True))
        else:
            hw = [(state["original_height"], state["original_width"])]
        n = features["image_embed"].shape[0]
        if len(hw) != n:
            raise ValueError(f"the state has {n} images but {len(hw)} original sizes")
        if not batch and n != 1:
            raise ValueError(f"{n} images are set (set_image_batch): use predict_inst_batch")
        if self._features is not features:
            self._prompt_decoder.clear()
        self._features = features
        self._orig_hw = [(int(h), int(w)) for h, w in hw]
        self._is_image_set = True
        self._is_batch = batch

    def predict_inst(
        self,
        state: dict[str, Any],
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for points (Nx2 pixels (x, y), labels 1 / 0), a box (x0, y0, x1, y1 pixels; Bx4
        for several) and / or a 1x288x288 low-res logit mask on the image of `state`.

        Raises:
            ImageNotSetError: `state` has no image (a ValueError).
            ValueError: bad prompts (see `samkit.predict.inputs.validate_prompts`), or a batch state.
        """
        self._bind(state, batch=False)
        return self.predict(
            point_coords,
            point_labels,
            box,
            mask_input,
            multimask_output,
            return_logits,
            normalize_coords,
        )

    def predict_inst_batch(
        self,
        state: dict[str, Any],
        point_coords_batch: list[Any] | None = None,
        point_labels_batch: list[Any] | None = None,
        box_batch: list[Any] | None = None,
        mask_input_batch: list[Any] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """`predict_inst` for every image of a `set_image_batch` state; each prompt argument is
        a list with one entry per image (None for none)."""
        self._bind(state, batch=True)
        return self.predict_batch(
            point_coords_batch,
            point_labels_batch,
            box_batch,
            mask_input_batch,
            multimask_output,
            return_logits,
            normalize_coords,
        )


class InstanceClicks:
    """`predict_inst` / `predict_inst_batch` / `inst_interactive_predictor`, the official
    `Sam3Image` methods, on the processor that made the state (`Sam3Processor` mixes this in; the
    model holds nn.Modules only). One `Sam3InteractivePredictor` per processor, made on first use.
    """

    model: Any
    _clicks: Sam3InteractivePredictor | None = None

    @property
    def inst_interactive_predictor(self) -> Sam3InteractivePredictor | None:
        """The predictor behind `predict_inst` (official attribute name; e.g. set its
        `max_hole_area`), or None for a model without interactive heads."""
        return None if getattr(self.model, "tracker", None) is None else self._clicks_predictor()

    def _clicks_predictor(self) -> Sam3InteractivePredictor:
        tracker = getattr(self.model, "tracker", None)
        if tracker is None:
            raise ValueError(
                "this model has no interactive heads: build it with enable_inst_interactivity=True "
                "from a checkpoint with tracker.* weights"
            )
        if self._clicks is None:
            self._clicks = Sam3InteractivePredictor(tracker)
        return self._clicks

    def predict_inst(self, state: dict[str, Any], **kwargs: Any) -> Any:
        """SAM-1-style clicks / box on the image set in `state` (official arguments:
        `point_coords`, `point_labels`, `box`, `mask_input`, `multimask_output`,
        `return_logits`, `normalize_coords`); returns `(masks, iou_predictions, low_res_masks)`
        as numpy arrays (`Sam3InteractivePredictor.predict_inst`).

        Raises:
            ValueError: no interactive heads, no image in `state`, or bad prompts.
        """
        return self._clicks_predictor().predict_inst(state, **kwargs)

    def predict_inst_batch(self, state: dict[str, Any], **kwargs: Any) -> Any:
        """`predict_inst` for every image of a `set_image_batch` state (official name)."""
        return self._clicks_predictor().predict_inst_batch(state, **kwargs)
