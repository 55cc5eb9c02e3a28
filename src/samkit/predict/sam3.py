"""`Sam3Processor`: SAM 3 "find every X" on images, with the official API and results.

Official (`sam3.model.sam3_image_processor.Sam3Processor`, `sam3` 0.1.4) names, arguments and
state keys: `set_image` / `set_image_batch` fill `state["backbone_out"]` and
`state["original_height"/"original_width"]`; `set_text_prompt(prompt, state)` and
`add_geometric_prompt(box, label, state)` run one grounding pass and put the kept instances in
`state["masks"]` (N, 1, H, W) bool, `state["masks_logits"]` (N, 1, H, W) probabilities (the
official name), `state["boxes"]` (N, 4) pixels x0, y0, x1, y1 and `state["scores"]` (N,). An
instance is kept when sigmoid(logit) * sigmoid(presence) > `confidence_threshold`, in query order.

What it adds: the image-side work is done once per image (a new prompt reuses it); text features
are cached per prompt string; `set_text_prompts([...], state)` answers several concepts in one
batched pass (equal to one `set_text_prompt` per concept); `set_confidence_threshold` re-filters
the last pass without running the model again; prompts on a `set_image_batch` state run on every
image (results are then lists, one entry per image; the official raises a KeyError there); boxes
may be given in pixels (`box_format="xyxy"`); bad input raises a ValueError saying what is wrong.
Every public method runs under `torch.inference_mode()`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.sam3.sam3_image import GeometricPrompt, GroundingOutput, Sam3Image
from samkit.predict.sam3_interactive import InstanceClicks
from samkit.predict.sam3_state import RESULT_KEYS as _RESULT_KEYS
from samkit.predict.sam3_state import Sam3State as Sam3State
from samkit.predict.sam3_state import as_state as _as_state
from samkit.predict.sam3_state import check_threshold as _check_threshold
from samkit.predict.sam3_state import normalise_box as _normalise_box

_TEXT_CACHE_SIZE = 256
_VISUAL_PROMPT = "visual"  # the official text of a geometry-only query


class Sam3Processor(InstanceClicks):
    """Text / exemplar-box prompting of a `Sam3Image` (see the module doc); clicks and boxes
    through its interactive heads with `predict_inst(state, ...)` (`InstanceClicks`).

    Args:
        model: a `Sam3Image` with a backbone (`build_sam3_image_model`).
        resolution: the square input size; must be the model's (1008 for the official model).
        device: where inputs go (default: the model's device).
        confidence_threshold: keep instances scoring above this, strictly between 0 and 1.

    Raises:
        ValueError: a model without a backbone, a resolution the model was not built for, or a
            threshold not strictly between 0 and 1.
    """

    def __init__(
        self,
        model: Sam3Image,
        resolution: int = 1008,
        device: str | torch.device | None = None,
        confidence_threshold: float = 0.5,
    ) -> None:
        if not isinstance(model, Sam3Image) or model.backbone is None:
            raise ValueError(
                "Sam3Processor needs a Sam3Image with a backbone (build_sam3_image_model)"
            )
        img_size = getattr(model.backbone.vision_backbone.trunk, "img_size", resolution)
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or resolution != img_size
        ):
            raise ValueError(
                f"resolution must be {img_size} (the model's input size), got {resolution!r}"
            )
        self.model = model
        self.resolution = resolution
        self.device = torch.device(device) if device is not None else model.device
        self.confidence_threshold = _check_threshold(confidence_threshold)
        self._text_cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    # ------------------------------------------------------------------------------ images
    def _to_tensor(self, image: Any) -> tuple[Tensor, int, int]:
        from samkit.predict.transforms import sam3_image_to_tensor

        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3:
            h, w = image.shape[:2]
        elif isinstance(image, Tensor) and image.dim() == 3:
            h, w = image.shape[-2:]
        elif hasattr(image, "size") and hasattr(image, "convert"):  # PIL
            w, h = image.size
        else:
            raise ValueError(
                "image must be a PIL image, an HxWx3 uint8 numpy array or a 3xHxW uint8 tensor, "
                f"got {type(image).__name__}"
            )
        x = sam3_image_to_tensor(image, resolution=self.resolution)
        return x, int(h), int(w)

    def _forward_image(self, batch: Tensor, state: Sam3State) -> Sam3State:
        m = self.model
        out = m.backbone.forward_image(batch.to(self.device, m.dtype))
        if m.tracker is not None and out.get("sam2_backbone_out") is not None:
            out["sam2_backbone_out"] = m.tracker.project_sam2_levels(out["sam2_backbone_out"])
        state["backbone_out"] = out
        # image-side work of the segmentation head, reused by every prompt on these images
        state["pixel_terms"] = m.image_side_terms(out["backbone_fpn"])
        return state

    @torch.inference_mode()
    def set_image(self, image: Any, state: dict | None = None) -> Sam3State:
        """Run the backbone on one image (PIL, HxWx3 uint8 array or 3xHxW uint8 tensor).

        A given `state` is cleared first (earlier prompts and results belonged to another image).
        """
        x, h, w = self._to_tensor(image)
        state = Sam3State() if state is None else _as_state(state)
        state.clear()
        state["original_height"], state["original_width"] = h, w
        return self._forward_image(x[None], state)

    @torch.inference_mode()
    def set_image_batch(self, images: Sequence[Any], state: dict | None = None) -> Sam3State:
        """Run the backbone on a list of images; prompts then answer for every image."""
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty list of images")
        converted = [self._to_tensor(im) for im in images]
        state = Sam3State() if state is None else _as_state(state)
        state.clear()
        state["original_heights"] = [h for _, h, _ in converted]
        state["original_widths"] = [w for _, _, w in converted]
        return self._forward_image(torch.stack([x for x, _, _ in converted]), state)

    # ------------------------------------------------------------------------------ prompts
    def _text(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Batch-first text features (B, P, C) and padding mask (B, P), cached per string."""
        from samkit.text.tokenizer import tokenize

        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            ids = tokenize(
                list(missing), context_length=self.model.backbone.language_backbone.context_length
            )
            out = self.model.backbone.forward_tokens(ids.to(self.device))
            feats = out["language_features"].transpose(0, 1)
            for i, p in enumerate(missing):
                self._text_cache[p] = (
                    feats[i : i + 1].clone(),
                    out["language_mask"][i : i + 1].clone(),
                )
                while len(self._text_cache) > _TEXT_CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        for p in prompts:
            self._text_cache.move_to_end(p)
        feats = torch.cat([self._text_cache[p][0] for p in prompts])
        masks = torch.cat([self._text_cache[p][1] for p in prompts])
        return feats, masks

    def _check_image_set(self, state: dict, call: str) -> None:
        if not isinstance(state, dict):
            raise ValueError(
                f"state must be the dict set_image returned, got {type(state).__name__}"
            )
        if "backbone_out" not in state:
            raise ValueError(f"call set_image (or set_image_batch) before {call}")

    @torch.inference_mode()
    def set_text_prompt(self, prompt: str | Sequence[str], state: dict) -> Sam3State:
        """Find every instance of `prompt` (a noun phrase) in the set image(s).

        A list of prompts is `set_text_prompts` (several concepts in one pass); the state's
        result keys then hold one entry per concept.

        Raises:
            ValueError: no image set, or an empty / non-string prompt (a prompt longer than the
                32-token context is truncated with a `PromptTruncatedWarning`, as the official).
        """
        self._check_image_set(state, "set_text_prompt")
        if isinstance(prompt, (list, tuple)):
            self.set_text_prompts(prompt, state)
            return state
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError(
                f"the text prompt is blank ({prompt!r}); give a noun phrase such as 'dog'"
            )
        state = _as_state(state)
        self._text([prompt])  # validates (tokenizer) before the state changes
        state.pop("_concepts", None)
        state["text_prompt"] = prompt
        return self._run(state)

    @torch.inference_mode()
    def set_text_prompts(self, prompts: Sequence[str], state: dict) -> list[dict[str, Any]]:
        """Several concepts in one batched pass over the set image (one backbone run, shared).

        Each concept gets the same results as `set_text_prompt(p, state)` alone (with the
        state's box prompts, if any; a box added later applies to every concept). Returns one
        dict per prompt (`prompt`, `masks`, `masks_logits`, `boxes`, `scores`), also stored as
        `state["results_per_prompt"]`; `state["masks"]` etc. become lists, one per concept.

        Raises:
            ValueError: no image set, a batch state, an empty list or a bad prompt.
        """
        self._check_image_set(state, "set_text_prompts")
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of strings")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(f"every prompt must be a string, got {type(p).__name__}")
            if not p.strip():
                raise ValueError(
                    f"text prompt {i} is blank ({p!r}); give a noun phrase such as 'dog'"
                )
        state = _as_state(state)
        if "original_heights" in state:
            raise ValueError("set_text_prompts works on one image (set_image); call it per image")
        self._text(list(prompts))  # validates (tokenizer) before the state changes
        state.pop("text_prompt", None)
        state["_concepts"] = list(prompts)
        self._run(state)
        return state["results_per_prompt"]

    @torch.inference_mode()
    def add_geometric_prompt(
        self, box: Sequence[float], label: bool, state: dict, *, box_format: str = "cxcywh"
    ) -> Sam3State:
        """Add an exemplar box (positive or negative) and run the inference.

        Args:
            box: `box_format="cxcywh"` (official): [center_x, center_y, width, height] normalised
                by the image width / height, in [0, 1]; `box_format="xyxy"`: [x0, y0, x1, y1] in
                pixels of the original image.
            label: True = positive (find things like this), False = negative.
            state: from `set_image`. Boxes accumulate until `reset_all_prompts`. Without a text
                prompt the official text "visual" is used.

        Raises:
            ValueError: no image set, a batch state, a box that is not 4 finite numbers, has no
                area or lies entirely outside the image, a label that is not a bool.
        """
        self._check_image_set(state, "add_geometric_prompt")
        state = _as_state(state)
        if "original_heights" in state:
            raise ValueError("add_geometric_prompt works on one image (set_image), not a batch")
        if not isinstance(label, (bool, np.bool_)):
            raise ValueError(f"label must be True (positive) or False (negative), got {label!r}")
        cxcywh = _normalise_box(box, box_format, state["original_width"], state["original_height"])
        gp = state.get("geometric_prompt") or GeometricPrompt.empty(1, device=self.device)
        boxes = torch.tensor(cxcywh, dtype=torch.float32, device=self.device).view(1, 1, 4)
        labels = torch.tensor([[bool(label)]], device=self.device)
        state["geometric_prompt"] = gp.with_boxes(boxes, labels)
        return self._run(state)

    def reset_all_prompts(self, state: dict) -> None:
        """Remove the text and box prompts and the results (the image stays set)."""
        for key in (
            "geometric_prompt",
            "text_prompt",
            "_concepts",
            "_last_output",
            "results_per_prompt",
            *_RESULT_KEYS,
        ):
            state.pop(key, None)

    @torch.inference_mode()
    def set_confidence_threshold(self, threshold: float, state: dict | None = None) -> dict | None:
        """Set the threshold; with a state that has results, re-filter its last pass.

        Raises:
            ValueError: a threshold that is not a number strictly between 0 and 1 (the rule the
                CLI and the web app apply: `samkit.configs.sam3_thresholds`).
        """
        self.confidence_threshold = _check_threshold(threshold)
        if state is not None and "_last_output" in state:
            self._store(_as_state(state), state["_last_output"])
        return state

    # ------------------------------------------------------------------------------ passes
    def _ground(self, state: dict, feats: Tensor, mask: Tensor, img_ids: Tensor) -> GroundingOutput:
        bo = state["backbone_out"]
        gp = state.get("geometric_prompt")
        return self.model.forward_grounding(
            bo["backbone_fpn"],
            bo["vision_pos_enc"][-1],
            feats,
            mask,
            gp,
            img_ids=img_ids,
            pixel_terms=state.get("pixel_terms"),
        )

    def _run(self, state: Sam3State) -> Sam3State:
        concepts = state.get("_concepts")
        if concepts is not None:  # several concepts on one image: one batched pass
            feats, mask = self._text(concepts)
            out = self._ground(state, feats, mask, torch.zeros(len(concepts), dtype=torch.long))
        else:
            text = state.get("text_prompt", _VISUAL_PROMPT)
            n_img = state["backbone_out"]["backbone_fpn"][0].shape[0]
            feats, mask = self._text([text])
            out = self._ground(
                state, feats.expand(n_img, -1, -1), mask.expand(n_img, -1), torch.arange(n_img)
            )
        state["_last_output"] = out
        return self._store(state, out)

    def _store(self, state: Sam3State, out: GroundingOutput) -> Sam3State:
        concepts = state.get("_concepts")
        if concepts is not None:
            h, w = state["original_height"], state["original_width"]
            per = [self._postprocess(out, i, h, w) for i in range(len(concepts))]
            for r, p in zip(per, concepts):
                r["prompt"] = p
            state["results_per_prompt"] = per
            for k in _RESULT_KEYS:
                state[k] = [r[k] for r in per]
        elif "original_heights" in state:
            per = [
                self._postprocess(out, i, h, w)
                for i, (h, w) in enumerate(zip(state["original_heights"], state["original_widths"]))
            ]
            for k in _RESULT_KEYS:
                state[k] = [r[k] for r in per]
        else:
            r = self._postprocess(out, 0, state["original_height"], state["original_width"])
            state.update({k: r[k] for k in _RESULT_KEYS})
        return state

    def _postprocess(self, out: GroundingOutput, i: int, h: int, w: int) -> dict[str, Tensor]:
        """The official post-processing of row i: keep, pixel boxes, upsampled masks."""
        scores = out.scores[i].float()
        keep = scores > self.confidence_threshold
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=scores.device)
        boxes = out.pred_boxes_xyxy[i][keep].float() * scale
        if out.pred_masks is None:
            raise ValueError("this model has no segmentation head (enable_segmentation=False)")
        low = out.pred_masks[i][keep].float()[:, None]  # (N, 1, 288, 288)
        if low.shape[0]:
            probs = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).sigmoid()
        else:
            probs = low.new_zeros(0, 1, h, w)
        return {"masks": probs > 0.5, "masks_logits": probs, "boxes": boxes, "scores": scores[keep]}
