"""The per-image work of the SAM 3 commands: every instance of text concepts (and exemplar boxes)
as COCO-ready records, and clicks through the interactive head.

`Sam3ConceptGenerator` is what `samkit segment --text` and `samkit auto --text` (single process
and the Ray actors, through `samkit.jobs.make_generator`) run on each image, so their outputs
are the same bytes. It has the interface `samkit.jobs.AutoJob` expects of a mask generator
(`generate(image) -> records`, `empty_reason`), and `categories`, one COCO category per concept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samkit.build.sam3_models import sam3_img_size
from samkit.configs.sam3_thresholds import (
    OFFICIAL_CONFIDENCE_THRESHOLD,
    check_score_threshold,
    suggested_threshold,
)
from samkit.io.embeddings import ImageEmbedding, load_embedding
from samkit.io.rle import area_from_rle, to_coco_rle
from samkit.modeling.sam3.sam3_image import GeometricPrompt, Sam3Image
from samkit.predict.inputs import as_rgb_uint8
from samkit.predict.sam3 import Sam3Processor, Sam3State

VISUAL_CATEGORY = "visual"  # the official text of a query made of exemplar boxes only
CONCEPT_OPTIONS = ("text_prompts", "confidence_threshold")  # make_generator's SAM 3 keywords


def check_text_prompts(prompts: Any) -> list[str]:
    """The concepts as a list of distinct non-empty strings.

    Raises:
        ValueError: not a list of strings, an empty / blank prompt, or a prompt given twice
            (each concept becomes one COCO category).
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(f"text prompts must be a list of strings, got {prompts!r:.80}")
    out: list[str] = []
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"a text prompt must be a non-empty phrase (e.g. 'dog'), got {p!r}")
        if p in out:
            raise ValueError(f"text prompt {p!r} is given twice (each one is a category)")
        out.append(p)
    return out


def check_confidence_threshold(threshold: Any) -> float:
    """A threshold strictly between 0 and 1 as a float (the one rule of every SAM 3 threshold a
    user gives, `samkit.configs.sam3_thresholds.check_score_threshold`: the web app's Find and
    `samkit track` take the same range).

    Raises:
        ValueError: not a number, NaN, or outside (0, 1).
    """
    return check_score_threshold(threshold, "confidence_threshold")


def check_exemplar_boxes(
    boxes: Sequence[Sequence[float]], height: int, width: int
) -> list[tuple[float, float, float, float, bool]]:
    """Exemplar boxes `(x0, y0, x1, y1[, label])` in pixels, checked against an HxW image.

    A box must lie inside the image (0 <= x0 < x1 <= W, 0 <= y0 < y1 <= H); label 1 (the
    default) is a positive exemplar, 0 a negative one.

    Raises:
        ValueError: a box that is not 4 finite numbers (+ a 0 / 1 label), has no area, or
            reaches outside the image (the message gives the image size).
    """
    out = []
    for i, b in enumerate(boxes):
        vals = list(b)
        if len(vals) not in (4, 5) or not all(
            isinstance(v, (int, float, np.number)) and math.isfinite(float(v)) for v in vals
        ):
            raise ValueError(f"box {i}: needs X0,Y0,X1,Y1[,LABEL] finite numbers, got {vals!r}")
        x0, y0, x1, y1 = (float(v) for v in vals[:4])
        label = 1 if len(vals) == 4 else vals[4]
        if label not in (0, 1):
            raise ValueError(f"box {i}: LABEL must be 1 (positive) or 0 (negative), got {label!r}")
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"box {i} {[x0, y0, x1, y1]}: needs X1 > X0 and Y1 > Y0")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(
                f"box {i} {[x0, y0, x1, y1]} reaches outside the {width}x{height} image "
                f"(pixels: 0 <= X0 < X1 <= {width}, 0 <= Y0 < Y1 <= {height})"
            )
        out.append((x0, y0, x1, y1, bool(label)))
    return out


def concept_categories(text_prompts: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories of a SAM 3 run: one per concept (id 1, 2, ... in the given order, the
    prompt as the name); boxes alone give the one category "visual"."""
    names = list(text_prompts) or [VISUAL_CATEGORY]
    return [{"id": i + 1, "name": n, "supercategory": "concept"} for i, n in enumerate(names)]


class Sam3ConceptGenerator:
    """Every instance of each concept in an image, as COCO-ready records.

    Args:
        model: a `Sam3Image` (`build_sam3_image_model`).
        text_prompts: the concepts (noun phrases), answered in one batched pass
            (`Sam3Processor.set_text_prompts`); may be empty when `boxes` are given.
        confidence_threshold: keep instances scoring above this (official default 0.5).
        boxes: exemplar boxes `(x0, y0, x1, y1[, label])` in pixels of every image
            (`check_exemplar_boxes`); they apply to every concept, in the same pass.

    Raises:
        ValueError: a model that is not SAM 3, bad prompts / threshold, or neither text nor boxes.
    """

    def __init__(
        self,
        model: Sam3Image,
        text_prompts: Sequence[str] = (),
        confidence_threshold: float = OFFICIAL_CONFIDENCE_THRESHOLD,
        boxes: Sequence[Sequence[float]] = (),
    ) -> None:
        if not isinstance(model, Sam3Image):
            raise ValueError(
                f"text prompts need a SAM 3 model (build_sam3_image_model), got "
                f"{type(model).__name__}"
            )
        self.text_prompts = check_text_prompts(list(text_prompts))
        self.confidence_threshold = check_confidence_threshold(confidence_threshold)
        self.boxes = [tuple(b) for b in boxes]
        if not self.text_prompts and not self.boxes:
            raise ValueError("give at least one text prompt or exemplar box")
        self.processor = Sam3Processor(
            model, resolution=sam3_img_size(model), confidence_threshold=self.confidence_threshold
        )
        self.categories = concept_categories(self.text_prompts)
        self._best_score: float | None = None

    def generate(self, image: Any, state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The instances found in `image` (HxWx3 uint8 or anything `set_image` reads).

        `state`: the image's features already computed (`sam3_state_from_features` of a
        `samkit embed` file): the backbone does not run again; its prompts are replaced.

        Returns:
            Records, concept by concept (category order) and by descending score within one:
            `segmentation` (COCO RLE of the HxW mask), `area` (pixels), `score`
            (sigmoid(logit) * sigmoid(presence), official), `category_id`, `box_xyxy` (the
            detector's box, pixels x0, y0, x1, y1, official `state["boxes"]`; may reach outside
            the image).

        Raises:
            ValueError: an image the rule refuses, or an exemplar box outside it.
        """
        rgb = as_rgb_uint8(image)
        h, w = rgb.shape[:2]
        boxes = check_exemplar_boxes(self.boxes, h, w)
        proc = self.processor
        if state is None:
            state = proc.set_image(rgb)
        else:
            proc.reset_all_prompts(state)
            if (state["original_height"], state["original_width"]) != (h, w):
                raise ValueError(
                    f"the features are of a {state['original_height']}x"
                    f"{state['original_width']} image, this one is {h}x{w}"
                )
        if boxes:
            # all exemplars in the state's prompt at once (the conversion of
            # add_geometric_prompt(box_format="xyxy")), so that one pass answers every concept
            cxcywh = [[(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
                      for x0, y0, x1, y1, _ in boxes]  # fmt: skip
            dev = proc.device
            state["geometric_prompt"] = GeometricPrompt.empty(1, device=dev).with_boxes(
                torch.tensor(cxcywh, dtype=torch.float32, device=dev)[None],
                torch.tensor([[b[4] for b in boxes]], device=dev),
            )
        prompts = self.text_prompts or [VISUAL_CATEGORY]
        results = proc.set_text_prompts(prompts, state)
        scores = state["_last_output"].scores
        self._best_score = float(scores.max()) if scores.numel() else None
        records: list[dict[str, Any]] = []
        for category, r in zip(self.categories, results):
            masks = r["masks"][:, 0].cpu().numpy()
            score = r["scores"].cpu().numpy().astype(np.float64)
            xyxy = r["boxes"].cpu().numpy().astype(np.float64)
            for i in np.argsort(-score, kind="stable"):
                seg = to_coco_rle(masks[i])
                records.append(
                    {
                        "segmentation": seg,
                        "area": area_from_rle(seg),
                        "score": float(score[i]),
                        "category_id": category["id"],
                        "box_xyxy": [float(v) for v in xyxy[i]],
                    }
                )
        return records

    def empty_reason(self, cli_flag: Any = None) -> str:
        """Why the last `generate` found nothing, for a message ("" before any run). With
        `cli_flag` (a command line's option speller) the setting is named `--threshold`."""
        if self._best_score is None:
            return ""
        flag = "--threshold" if cli_flag else "confidence_threshold"
        guess = suggested_threshold(self._best_score)  # below the best score: keeps it
        example = (
            f" (e.g. {guess:g})" if guess is not None and guess < self.confidence_threshold else ""
        )
        return (
            f"0 instances: no query scored above the confidence threshold "
            f"{self.confidence_threshold:g} (best {self._best_score:.3f}); lower {flag}{example} "
            "to see more"
        )


def sam3_image_features(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The image features of a `Sam3Processor.set_image` state as flat named tensors (what
    `samkit embed` stores): `image_embedding` (1xCx72x72, the detector's last level),
    `backbone_fpn_0` / `_1` (1xCx288x288, 1xCx144x144) and, with the interactive head,
    `sam2_backbone_fpn_0/1/2` (after its conv_s0 / conv_s1). Position encodings are not stored:
    they depend only on the level's size (`sam3_state_from_features` recomputes them)."""
    bo = state["backbone_out"]
    fpn = bo["backbone_fpn"]
    out = {"image_embedding": fpn[-1], "backbone_fpn_0": fpn[0], "backbone_fpn_1": fpn[1]}
    sam2 = bo.get("sam2_backbone_out")
    if sam2 is not None:
        out.update({f"sam2_backbone_fpn_{i}": t for i, t in enumerate(sam2["backbone_fpn"])})
    return out


def sam3_state_from_features(
    model: Sam3Image, tensors: dict[str, torch.Tensor], original_size: tuple[int, int]
) -> dict[str, Any]:
    """A `Sam3Processor` state for stored features (`sam3_image_features`), as if `set_image`
    had run on an image of `original_size` (H, W): prompts and `predict_inst` work on it.

    Raises:
        ValueError: a level is missing.
    """
    names = ["backbone_fpn_0", "backbone_fpn_1", "image_embedding"]
    missing = [k for k in names if k not in tensors]
    if missing:
        raise ValueError(f"SAM 3 image features need {missing}")
    neck = model.backbone.vision_backbone
    dev, dtype = model.device, model.dtype

    def branch(keys: list[str]) -> dict[str, Any]:
        # in the layout the neck's convolutions produce (channels-last): the heads' results
        # then equal those of set_image bit for bit (another layout changes the float sums)
        cl = torch.channels_last
        fpn = [tensors[k].to(dev, dtype).contiguous(memory_format=cl) for k in keys]
        pos = [neck.position_encoding(f) for f in fpn]
        return {"vision_features": fpn[-1], "vision_pos_enc": pos, "backbone_fpn": fpn}

    bo: dict[str, Any] = {**branch(names), "sam2_backbone_out": None}
    sam2 = [f"sam2_backbone_fpn_{i}" for i in range(3)]
    if all(k in tensors for k in sam2) and model.tracker is not None:
        bo["sam2_backbone_out"] = branch(sam2)
    state = Sam3State()
    state["original_height"], state["original_width"] = (int(v) for v in original_size)
    state["backbone_out"] = bo
    return state


def sam3_state_from_embedding(embedding: Any, model: Sam3Image) -> dict[str, Any]:
    """A `Sam3Processor` state from a `samkit embed` file of a SAM 3 image, as if
    `processor.set_image` had run: text prompts, exemplar boxes and `processor.predict_inst` work on
    it without the backbone.

    Args:
        embedding: the file's path or its `samkit.io.embeddings.ImageEmbedding`.
        model: the `Sam3Image` to use it with.

    Raises:
        ValueError: not a samkit embedding, or one made by another family / architecture (the
            provenance check of `ImageEmbedding.apply`, naming both models).
        FileNotFoundError: no such file.
    """
    emb = embedding if isinstance(embedding, ImageEmbedding) else load_embedding(embedding)
    holder = Sam3ClickPredictor(model)
    emb.apply(holder)
    return holder.state or {}


def sam3_feature_bytes(model: Sam3Image) -> int:
    """Bytes of one image's features (`sam3_image_features`): the detector's three levels
    (C x 4s x 4s, C x 2s x 2s, C x s x s with s = image side / 14) and, with the interactive
    head, its three levels (after conv_s0 / conv_s1)."""
    elt = torch.empty((), dtype=model.dtype).element_size()
    s = model.image_size // 14
    d = int(model.backbone.vision_backbone.convs[-1].conv_3x3.out_channels)  # the neck's d_model
    n = d * (16 + 4 + 1) * s * s
    tracker = getattr(model, "tracker", None)
    if tracker is not None:
        dec = tracker.sam_mask_decoder
        n += (dec.conv_s0.out_channels * 16 + dec.conv_s1.out_channels * 4 + d) * s * s
    return elt * n


class Sam3ClickPredictor:
    """`SamPredictor`-like clicks on a SAM 3 model: `set_image` runs the processor's backbone,
    `predict` is `processor.predict_inst` on that state (the interactive head; official outputs:
    masks CxHxW, IoU predictions C, low-res logits Cx288x288, a leading B axis for B boxes);
    `get_image_features` / `set_image_features` are what `samkit embed` and
    `ImageEmbedding.apply` use.

    Args:
        model: a `Sam3Image` (clicks need its interactive heads, the `tracker.*` tensors).
    """

    def __init__(self, model: Sam3Image) -> None:
        self.model = model
        self.processor = Sam3Processor(model, resolution=sam3_img_size(model))
        self.state: dict[str, Any] | None = None

    def set_image(self, image: Any) -> None:
        self.state = self.processor.set_image(as_rgb_uint8(image))

    @property
    def family(self) -> str:
        """The model's family ("sam3"; `samkit.build.registry`)."""
        return self.model.family

    def get_image_features(self) -> dict[str, torch.Tensor]:
        """The image's backbone levels by name (`sam3_image_features`), what `samkit embed`
        stores.

        Raises:
            ValueError: no image is set.
        """
        if self.state is None:
            raise ValueError("call set_image(image) first")
        return sam3_image_features(self.state)

    image_features = get_image_features  # the earlier name

    def set_image_features(
        self,
        tensors: dict[str, torch.Tensor],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Take stored `get_image_features` output as if `set_image` had run (`input_size` is
        unused: SAM 3 resizes every image to its square input)."""
        self.state = sam3_state_from_features(self.model, tensors, original_size)

    def image_feature_bytes(self) -> int:
        """Bytes of one image's `get_image_features` (`sam3_feature_bytes`)."""
        return sam3_feature_bytes(self.model)

    def predict(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.state is None:
            raise ValueError("call set_image(image) before predict")
        if getattr(self.model, "tracker", None) is None:
            raise ValueError(
                "this SAM 3 model has no interactive head (its checkpoint has no tracker.* "
                "tensors), so it cannot answer clicks; use text prompts or exemplar boxes"
            )
        return self.processor.predict_inst(self.state, **kwargs)
