"""The automatic mask generation pipeline shared by SAM 1 and SAM 2 ("segment everything").

Same filters, order and outputs as the official generators, with the post-processing
restructured for speed without changing any result:

* the predicted-IoU filter runs on the low-res logits, before any upsampling;
* each surviving mask is upsampled alone into reused buffers with the exact official arithmetic,
  its stability score, binary mask and box computed while it is in cache;
* masks are stored cropped to their box, as torch bool tensors, through NMS and crop merging;
* RLE / binary outputs are produced only for the final masks, from the box crops
  (`samkit.amg.records`).

The model-specific steps (encode a crop, decode prompts, upsample) are behind
`samkit.amg.adapters`; `SamAutomaticMaskGenerator` and `Sam2AutomaticMaskGenerator` only choose the
adapter and the defaults.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from samkit.amg.adapters import ModelAdapter, Upsampler
from samkit.amg.candidates import Candidates, LowResMask
from samkit.amg.crops import generate_crop_boxes, is_box_near_crop_edge
from samkit.amg.grid import build_all_layer_point_grids
from samkit.amg.masks import batched_mask_to_box, remove_small_regions, stability_and_mask
from samkit.amg.nms import batched_nms, box_area
from samkit.amg.records import OUTPUT_MODES as OUTPUT_MODES
from samkit.amg.records import mask_records, mask_tensors
from samkit.amg.report import empty_reason, new_filter_counts
from samkit.amg.runtime import ProgressFn, make_progress
from samkit.predict.inputs import as_rgb_uint8


class MaskGeneratorBase:
    """The pipeline; subclasses set the attributes in `_setup` (see `SamAutomaticMaskGenerator`).

    After `generate`, `timings` holds encoder / decoder / post-processing seconds and
    `filter_counts` how many candidate masks each filter removed (`samkit.amg.report`).
    """

    adapter: ModelAdapter
    predictor: Any
    # Whether min_mask_region_area runs the hole / island pass on the final masks (SAM 1); the
    # SAM 2 generator instead cleans the low-res logits in its adapter, as the official one does.
    small_region_pass: bool = True

    def _setup(
        self,
        adapter: ModelAdapter,
        *,
        points_per_side: int | None,
        points_per_batch: int,
        pred_iou_thresh: float,
        stability_score_thresh: float,
        stability_score_offset: float,
        box_nms_thresh: float,
        crop_n_layers: int,
        crop_nms_thresh: float,
        crop_overlap_ratio: float,
        crop_n_points_downscale_factor: int,
        point_grids: list[np.ndarray] | None,
        min_mask_region_area: int,
        output_mode: str,
        progress: ProgressFn | bool | None,
    ) -> None:
        """Validate and store the settings common to both generators (arguments already checked
        by `check_params`)."""
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids or []]
        self.progress = make_progress(progress)
        self.adapter = adapter
        self.predictor = adapter.predictor
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = int(crop_n_points_downscale_factor)
        self.min_mask_region_area = int(min_mask_region_area)
        self.output_mode = output_mode
        self.timings: dict[str, float] = {}
        self.filter_counts: dict[str, int] = new_filter_counts()

    def empty_reason(self, option: Callable[[str], str] | None = None) -> str:
        """Why the last `generate` kept no mask: which filter removed how many candidates and
        which setting lets more through ("" when masks were kept or nothing ran yet).

        Args:
            option: spells a setting's name for the reader (`samkit.amg.report.cli_flag` gives
                `--pred-iou-thresh`); default the Python name.
        """
        if option is None:
            return empty_reason(self.filter_counts, self._settings())
        return empty_reason(self.filter_counts, self._settings(), option)

    def _settings(self) -> dict[str, Any]:
        return {
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "stability_score_offset": self.stability_score_offset,
            "box_nms_thresh": self.box_nms_thresh,
            "crop_nms_thresh": self.crop_nms_thresh,
            "min_mask_region_area": self.min_mask_region_area,
            "crop_n_layers": self.crop_n_layers,
        }

    # ----------------------------------------------------------------------------- public API

    @torch.inference_mode()
    def generate(self, image: Any) -> list[dict[str, Any]]:
        """Masks for an image: a PIL image or an HxW, HxWx1, HxWx3 or HxWx4 array.

        Images are read by `samkit.predict.inputs.as_rgb_uint8`, the rule of `SamPredictor.set_image`
        and `Sam2ImagePredictor.set_image` (greyscale repeated into R, G, B; alpha dropped;
        uint16 `>> 8`; float in [0, 1] `* 255`).

        Returns:
            One record per mask, in the official order, with keys `segmentation` (per
            `output_mode`), `area` (int), `bbox` (XYWH list, the official generator's
            convention w = x_max - x_min; COCO files use `pycocotools.mask.toBbox`'s, one
            pixel more: `samkit.amg.coco`), `predicted_iou`, `point_coords` ([[x, y]]),
            `stability_score` and `crop_box` (XYWH list).

        Raises:
            ValueError: an image the rule refuses (a wrong shape or dtype, NaN, an empty array).
        """
        t0 = time.perf_counter()
        data, size = self._generate(image)
        records = mask_records(data, size, self.output_mode)
        self._finish_timings(t0, len(records))
        self.filter_counts["kept"] = len(records)
        return records

    @torch.inference_mode()
    def generate_torch(self, image: Any) -> dict[str, Tensor]:
        """Like `generate`, but batched torch tensors on the model's device.

        Returns:
            `masks` NxHxW bool, `boxes` Nx4 int64 XYXY (inclusive), `area` N int64,
            `predicted_iou` N, `stability_score` N (float32), `point_coords` Nx2 float64 and
            `crop_boxes` Nx4 int64 XYXY.
        """
        t0 = time.perf_counter()
        data, size = self._generate(image)
        out = mask_tensors(data, size, self.adapter.device)
        self._finish_timings(t0, len(data))
        self.filter_counts["kept"] = len(data)
        return out

    # ----------------------------------------------------------------------------- pipeline

    def _generate(self, image: Any) -> tuple[Candidates, tuple[int, int]]:
        image = as_rgb_uint8(image)  # the one image rule of set_image (samkit.predict.inputs)
        self.timings = {"encoder_s": 0.0, "decoder_s": 0.0}
        self.filter_counts = new_filter_counts()
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        if max(layer_idxs) >= len(self.point_grids):
            raise ValueError(
                f"point_grids has {len(self.point_grids)} grids, crop_n_layers="
                f"{self.crop_n_layers} needs {max(layer_idxs) + 1}"
            )
        self._batches_done = 0
        self._batches_total = sum(
            math.ceil(len(self.point_grids[i]) / self.points_per_batch) for i in layer_idxs
        )
        data = Candidates()
        for k, (crop_box, layer_idx) in enumerate(zip(crop_boxes, layer_idxs)):
            stage = f"crop {k + 1}/{len(crop_boxes)}"
            data.extend(self._process_crop(image, crop_box, layer_idx, orig_size, stage))

        if len(crop_boxes) > 1 and len(data):
            # Prefer masks from smaller crops.
            areas = box_area(torch.tensor(data.crop_boxes, dtype=torch.int64))
            scores = 1 / areas
            boxes = data.box_tensor().float()
            keep = batched_nms(
                boxes, scores, torch.zeros(len(data), dtype=torch.int64), self.crop_nms_thresh
            )
            self.filter_counts["crop_nms"] += len(data) - len(keep)
            data.filter(keep.tolist())

        if self.small_region_pass and self.min_mask_region_area > 0 and len(data):
            self._postprocess_small_regions(data, orig_size)
        self._report(self._batches_total, "done")
        return data, (int(orig_size[0]), int(orig_size[1]))

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer_idx: int,
        orig_size: tuple[int, ...],
        stage: str,
    ) -> Candidates:
        x0, y0, x1, y1 = crop_box
        cropped = np.ascontiguousarray(image[y0:y1, x0:x1, :])
        crop_h, crop_w = cropped.shape[:2]
        t = self._now()
        self.adapter.set_image(cropped)
        self.timings["encoder_s"] += self._now() - t

        upsampler: Upsampler | None = None
        points_for_image = self.point_grids[layer_idx] * np.array([[crop_w, crop_h]])
        data = Candidates()
        shared: dict = {}  # the decoder's image-side work for this crop, reused by every batch
        for start in range(0, len(points_for_image), self.points_per_batch):
            points = points_for_image[start : start + self.points_per_batch]
            low_res, iou = self._decode(points, (crop_h, crop_w), shared)
            if upsampler is None:
                upsampler = self.adapter.upsampler(tuple(low_res.shape[-2:]), (crop_h, crop_w))
            self._filter_batch(data, low_res, iou, points, upsampler, crop_box, orig_size)
            self._batches_done += 1
            self._report(self._batches_done, stage)
        self.adapter.reset_image()

        if len(data):
            keep = batched_nms(
                data.box_tensor().float(),
                torch.stack(data.iou),
                torch.zeros(len(data), dtype=torch.int64),
                self.box_nms_thresh,
            )
            self.filter_counts["box_nms"] += len(data) - len(keep)
            data.filter(keep.tolist())
        # Back to the image frame (the box crops of the masks do not move).
        data.boxes = [b + torch.tensor([x0, y0, x0, y0]) for b in data.boxes]
        data.points = [p + np.array([x0, y0]) for p in data.points]
        return data

    def _decode(
        self, points: np.ndarray, im_size: tuple[int, int], shared: dict | None = None
    ) -> tuple[Tensor, Tensor]:
        """Decoder forward for one batch of single-point prompts -> (B*C)xhxw logits, B*C IoU."""
        t = self._now()
        out = self.adapter.decode(points, im_size, {} if shared is None else shared)
        self.timings["decoder_s"] += self._now() - t
        return out

    def _filter_batch(
        self,
        data: Candidates,
        low_res: Tensor,
        iou: Tensor,
        points: np.ndarray,
        upsampler: Upsampler,
        crop_box: list[int],
        orig_size: tuple[int, ...],
    ) -> None:
        n_out = low_res.shape[0] // len(points)
        points = self.adapter.prompt_points(points).repeat(n_out, axis=0)
        idx = torch.arange(low_res.shape[0])
        self.filter_counts["candidates"] += len(idx)
        if self.pred_iou_thresh > 0.0:
            idx = idx[(iou > self.pred_iou_thresh).cpu()]
            self.filter_counts["pred_iou"] += low_res.shape[0] - len(idx)
        orig_box = [0, 0, int(orig_size[1]), int(orig_size[0])]
        self._filter_masks(data, low_res, iou, points, idx.tolist(), upsampler, crop_box, orig_box)

    def _filter_masks(
        self,
        data: Candidates,
        low_res: Tensor,
        iou: Tensor,
        points: np.ndarray,
        idx: list[int],
        upsampler: Upsampler,
        crop_box: list[int],
        orig_box: list[int],
    ) -> None:
        """Upsample, score, threshold, box and edge-filter the masks `idx`, one at a time."""
        threshold = self.adapter.mask_threshold
        hi, lo = threshold + self.stability_score_offset, threshold - self.stability_score_offset
        for i in idx:
            logits = upsampler(low_res[i])
            stability, mask = stability_and_mask(logits, threshold, hi, lo)
            if self.stability_score_thresh > 0.0 and not bool(
                stability >= self.stability_score_thresh
            ):
                self.filter_counts["stability"] += 1
                continue
            box = batched_mask_to_box(mask)
            if bool(is_box_near_crop_edge(box[None], crop_box, orig_box)[0]):
                self.filter_counts["crop_edge"] += 1
                continue
            b = box.tolist()
            if (b[3] - b[1] + 1) * (b[2] - b[0] + 1) <= 4 * low_res[i].numel():
                data.crops.append(mask[b[1] : b[3] + 1, b[0] : b[2] + 1].clone())
            else:  # bigger than its low-res logits (4 bytes per low-res pixel): keep those
                data.crops.append(LowResMask(low_res[i].clone(), upsampler, b, threshold))
            data.boxes.append(box.cpu())
            data.iou.append(iou[i].cpu())
            data.stability.append(stability.cpu())
            data.points.append(points[i])
            data.crop_boxes.append(list(crop_box))

    def _postprocess_small_regions(self, data: Candidates, orig_size: tuple[int, ...]) -> None:
        """Fill small holes / remove small islands, then NMS preferring unchanged masks."""
        h, w = int(orig_size[0]), int(orig_size[1])
        new_masks, new_boxes, scores = [], [], []
        for i, box in enumerate(data.boxes):
            crop = data.crop(i)
            b = box.tolist()
            mask = np.zeros((h, w), dtype=bool)
            mask[b[1] : b[3] + 1, b[0] : b[2] + 1] = crop.cpu().numpy()
            mask, changed = remove_small_regions(mask, self.min_mask_region_area, "holes")
            unchanged = not changed
            mask, changed = remove_small_regions(mask, self.min_mask_region_area, "islands")
            unchanged = unchanged and not changed
            mask_t = torch.from_numpy(mask)
            new_box = batched_mask_to_box(mask_t)
            new_masks.append(mask_t)
            new_boxes.append(new_box)
            scores.append(float(unchanged))
        keep = batched_nms(
            torch.stack(new_boxes).float(),
            torch.as_tensor(scores),
            torch.zeros(len(new_boxes)),
            max(self.box_nms_thresh, self.crop_nms_thresh),
        ).tolist()
        device = data.crop(0).device
        for i in keep:
            if scores[i] == 0.0:
                b = new_boxes[i].tolist()
                data.crops[i] = new_masks[i][b[1] : b[3] + 1, b[0] : b[2] + 1].to(device)
                data.boxes[i] = new_boxes[i]
        self.filter_counts["min_region"] += len(data) - len(keep)
        data.filter(keep)

    # ----------------------------------------------------------------------------- helpers

    def _finish_timings(self, t0: float, n_masks: int) -> None:
        t = self.timings
        t["total_s"] = self._now() - t0
        t["postprocess_s"] = t["total_s"] - t["encoder_s"] - t["decoder_s"]
        t["num_masks"] = n_masks

    def _now(self) -> float:
        device = self.adapter.device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def _report(self, done: int, stage: str) -> None:
        if self.progress is not None:
            self.progress(done, self._batches_total, stage)
