"""onnxruntime backend of the SAM 2 image predictor: numpy + PIL + onnxruntime only (no torch).

    from samkit.export.ort_sam2 import OnnxSam2Predictor
    p = OnnxSam2Predictor("out/encoder.onnx", "out/decoder.onnx")
    p.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, low_res = p.predict(np.array([[500, 375]]), np.array([1]))

The files come from `samkit.export.sam2.export_sam2_onnx` (interface in that module's
docstring). `predict` returns what `Sam2ImagePredictor.predict` returns: masks CxHxW float32 0/1
(or logits), IoU predictions C, low-res logits Cx256x256 clamped to [-32, 32]; several boxes give a
leading B axis. Not supported: `max_hole_area` / `max_sprinkle_area` clean-up and
`set_image_batch` / `predict_batch`.

Preprocessing reproduces `Sam2.preprocess` (a square resize with torch's bilinear + antialias on
the [0, 1] image, then mean / std): PIL's float ('F' mode) bilinear resize is the same separable
triangle filter, and on the fixture images and random 300x700 / 2000x900 images it differs from
torch by at most 2.4e-7 on the [0, 1] scale (float32 rounding, ~1e-6 after normalisation).

The single-mask choice for `multimask_output=False` with a 4-mask decoder is SAM 2's dynamic
multimask selection (`MaskDecoder._dynamic_multimask_via_stability`) computed in numpy on the
decoder's low-res logits: the single-mask token when its stability score (area above +delta /
area above -delta) reaches the threshold, else the multimask output with the best IoU. delta and
the threshold come from the file's metadata (official defaults 0.05 / 0.98 for files without them).
The low-res output is clamped to [-32, 32], which changes no comparison with +-delta for delta < 32.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from PIL import Image

from samkit.export.ort_sam import _array, _meta, _require_ort, files_provenance, served_family
from samkit.predict.inputs import Prompts, as_rgb_uint8, validate_prompts

ENCODER_OUTPUTS = ["image_embed", "high_res_feats_0", "high_res_feats_1"]
DECODER_INPUTS = [
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
# Defaults of the official SAM 2 / 2.1 image models, for files without samkit metadata.
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)
STABILITY_DELTA = 0.05
STABILITY_THRESH = 0.98


def preprocess_sam2(
    image: np.ndarray, img_size: int, pixel_mean: np.ndarray, pixel_std: np.ndarray
) -> np.ndarray:
    """HxWx3 uint8 RGB -> 1x3xSxS float32 encoder input (square resize of RGB / 255, normalise).

    Each channel is resized as a PIL float image with bilinear filtering, which antialiases when
    shrinking as torch's `F.interpolate(..., antialias=True)` does (see the module docstring).
    """
    h, w = image.shape[:2]
    chans = []
    for c in range(3):
        x = image[:, :, c].astype(np.float32) / np.float32(255.0)
        if (h, w) != (img_size, img_size):
            pil = Image.fromarray(x, mode="F").resize((img_size, img_size), Image.BILINEAR)
            x = np.asarray(pil, dtype=np.float32)
        chans.append(x)
    x = np.stack(chans)  # (3, S, S)
    x = (x - pixel_mean.reshape(3, 1, 1)) / pixel_std.reshape(3, 1, 1)
    return x[None].astype(np.float32)


def stability_scores(logits: np.ndarray, delta: float) -> np.ndarray:
    """...xhxw logits -> ... stability scores (IoU of the masks at +delta and -delta), float32."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    area_i = np.sum(flat > delta, axis=-1).astype(np.float32)
    area_u = np.sum(flat > -delta, axis=-1).astype(np.float32)
    return np.where(area_u > 0, area_i / np.maximum(area_u, 1), np.float32(1.0))


def select_single_mask(
    masks: np.ndarray, iou: np.ndarray, low_res: np.ndarray, delta: float, thresh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BxMxHxW, BxM, BxMxhxw (M = 4) -> the Bx1 outputs of SAM 2's dynamic multimask choice."""
    b = np.arange(iou.shape[0])
    best = 1 + np.argmax(iou[:, 1:], axis=-1)
    stable = stability_scores(low_res[:, 0], delta) >= np.float32(thresh)
    k = np.where(stable, 0, best)
    return masks[b, k][:, None], iou[b, k][:, None], low_res[b, k][:, None]


def _shape(value: Any) -> tuple[int, ...] | None:
    """A static ONNX / metadata shape as ints, None when any dimension is symbolic."""
    if value is None or not all(isinstance(d, int) for d in value):
        return None
    return tuple(int(d) for d in value)


class OnnxSam2Predictor:
    """`Sam2ImagePredictor`'s `set_image` / `predict` on onnxruntime sessions.

    Args:
        encoder_path: `encoder.onnx` (None: only `set_features` can set an image).
        decoder_path: `decoder.onnx` of `export_sam2_onnx` (4 masks or `return_single_mask`).
        mask_threshold: logit threshold for binary masks (default: the file's, else 0).
        providers: onnxruntime execution providers (default: CPU).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
    """

    family = "sam2"  # the family of the files it serves (`samkit.build.registry`)
    # the encoder's outputs = the decoder's image inputs (EfficientTAM's files: image_embed only)
    encoder_outputs: tuple[str, ...] = tuple(ENCODER_OUTPUTS)
    decoder_inputs: tuple[str, ...] = tuple(DECODER_INPUTS)

    def __init__(
        self,
        encoder_path: str | os.PathLike | None,
        decoder_path: str | os.PathLike,
        mask_threshold: float | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        ort = _require_ort()
        if mask_threshold is not None and (
            isinstance(mask_threshold, bool)
            or not isinstance(mask_threshold, (int, float))
            or not math.isfinite(mask_threshold)
        ):
            raise ValueError(f"mask_threshold must be a finite number, got {mask_threshold!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        for name, path in (("encoder", encoder_path), ("decoder", decoder_path)):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"{name} file not found: {path}")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.decoder = ort.InferenceSession(str(decoder_path), opts, providers=providers)
        self.family = served_family(_meta(self.decoder), type(self), self.family)
        self.provenance = files_provenance(_meta(self.decoder), decoder_path, self.family)
        dec_in = {i.name: i.shape for i in self.decoder.get_inputs()}
        if sorted(dec_in) != sorted(self.decoder_inputs):
            raise ValueError(
                f"{decoder_path}: decoder inputs {sorted(dec_in)}, expected the SAM 2 decoder's "
                f"{list(self.decoder_inputs)} (a SAM 1 decoder needs OnnxSamPredictor)"
            )
        meta = _meta(self.decoder)
        self.encoder = None
        if encoder_path is not None:
            self.encoder = ort.InferenceSession(str(encoder_path), opts, providers=providers)
            names = [o.name for o in self.encoder.get_outputs()]
            if names != list(self.encoder_outputs) or self.encoder.get_inputs()[0].name != "image":
                raise ValueError(
                    f"{encoder_path}: encoder outputs {names}, expected input 'image' and "
                    f"outputs {list(self.encoder_outputs)}"
                )
            files_provenance(meta, decoder_path, self.family, _meta(self.encoder), encoder_path)
            meta = {**_meta(self.encoder), **meta}
            meta.setdefault("img_size", int(self.encoder.get_inputs()[0].shape[-1]))
        if meta.get("family", self.family) != self.family:
            raise ValueError(
                f"{decoder_path} is a {meta['family']!r} file, expected {self.family!r}"
            )
        self.img_size = int(meta.get("img_size", 1024))
        self.pixel_mean = np.asarray(meta.get("pixel_mean", SAM2_PIXEL_MEAN), np.float32)
        self.pixel_std = np.asarray(meta.get("pixel_std", SAM2_PIXEL_STD), np.float32)
        if mask_threshold is None:
            mask_threshold = meta.get("mask_threshold", 0.0)
        self.mask_threshold = float(mask_threshold)
        self.feature_shapes = {  # None: not known statically, checked by onnxruntime
            name: _shape(dec_in[name]) for name in self.encoder_outputs
        }
        self.mask_input_size = tuple(meta.get("mask_input_size", dec_in["mask_input"][-2:]))
        self.dynamic_multimask = bool(meta.get("dynamic_multimask_via_stability", True))
        self.stability_delta = float(meta.get("dynamic_multimask_stability_delta", STABILITY_DELTA))
        self.stability_thresh = float(
            meta.get("dynamic_multimask_stability_thresh", STABILITY_THRESH)
        )
        if "return_single_mask" in meta:
            self.num_decoder_masks = 1 if meta["return_single_mask"] else 4
        else:
            m = self.decoder.get_outputs()[1].shape[-1]
            self.num_decoder_masks = m if isinstance(m, int) else 4
        self.reset_predictor()

    def reset_predictor(self) -> None:
        """Forget the current image and its features."""
        self._is_image_set = False
        self._features: dict[str, np.ndarray] | None = None
        self._orig_hw: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Run the encoder on an image.

        Args:
            image: HxWx3 uint8 array (HxW grey and HxWx4 RGBA are converted) or a PIL image.
            image_format: channel order of an array, 'RGB' or 'BGR'.
        """
        if self.encoder is None:
            raise ValueError("no encoder file was given: use set_features(...) instead")
        img = as_rgb_uint8(image, image_format)
        x = preprocess_sam2(img, self.img_size, self.pixel_mean, self.pixel_std)
        feats = self.encoder.run(list(self.encoder_outputs), {"image": x})
        self.set_features(*feats, original_size=img.shape[:2])

    def set_features(
        self,
        image_embed: np.ndarray,
        high_res_feats_0: np.ndarray,
        high_res_feats_1: np.ndarray,
        original_size: tuple[int, int],
    ) -> None:
        """Use precomputed encoder outputs for an image of `original_size` (H, W).

        Args:
            image_embed: 1xCxhxw (C = 256, h = w = 64 for the official models).
            high_res_feats_0: 1x(C/8)x4hx4w.
            high_res_feats_1: 1x(C/4)x2hx2w.
            original_size: (H, W) of the original image, positive ints.
        """
        feats = {}
        values = (image_embed, high_res_feats_0, high_res_feats_1)
        for name, value in zip(self.encoder_outputs, values):  # EfficientTAM: image_embed only
            try:
                arr = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{name} must be a numeric array, got {type(value).__name__}"
                ) from e
            want = self.feature_shapes[name]
            if (want is not None and arr.shape != want) or arr.ndim != 4 or arr.shape[0] != 1:
                raise ValueError(
                    f"{name} must have shape {want or '1xCxHxW'} (the encoder output), "
                    f"got {arr.shape}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            feats[name] = np.ascontiguousarray(arr)
        size = tuple(np.asarray(original_size).reshape(-1).tolist())
        if len(size) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size
        ):
            raise ValueError(f"original_size must be (H, W) positive ints, got {original_size!r}")
        self.reset_predictor()
        self._features = feats
        self._orig_hw = (int(size[0]), int(size[1]))
        self._is_image_set = True

    def get_image_embedding(self) -> np.ndarray:
        """The current image embedding, 1xCxhxw float32."""
        self._require_image()
        return self._features["image_embed"]

    def get_image_features(self) -> dict[str, np.ndarray]:
        """The encoder outputs as an embedding file names them (`image_embedding`,
        `high_res_feats_0`, `high_res_feats_1`)."""
        self._require_image()
        f = self._features
        return {"image_embedding": f["image_embed"], **{k: f[k] for k in self.encoder_outputs[1:]}}

    def set_image_features(
        self,
        features: dict[str, Any],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """`set_features` of stored features (tensors or arrays; `input_size` is unused)."""
        missing = {"image_embedding", *self.encoder_outputs[1:]} - set(features)
        if missing:
            raise ValueError(f"SAM 2 features need {sorted(missing)}")
        arrays = [_array(features[k]) for k in ("image_embedding", *self.encoder_outputs[1:])]
        self.set_features(*arrays, original_size=(int(original_size[0]), int(original_size[1])))

    def _require_image(self) -> None:
        if not self._is_image_set or self._features is None:
            raise ValueError("no image is set: call set_image(...) or set_features(...) first")

    def _to_model(self, xy: np.ndarray, normalize: bool) -> np.ndarray:
        """...x2 (x, y) -> model input frame in float32, as `Sam2ImagePredictor._prep_prompts`."""
        xy = xy.astype(np.float32)
        if normalize:
            h, w = self._orig_hw
            xy = xy / np.array([w, h], np.float32)
        return xy * np.float32(self.img_size)

    def _prompts(self, p: Prompts, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        """BxNx2 coords and BxN labels: box corners (labels 2, 3) first, then the points (the
        decoder appends SAM 2's padding point itself)."""
        coords = [np.zeros((p.batch, 0, 2), np.float32)]
        labels = [np.zeros((p.batch, 0), np.float32)]
        if p.boxes is not None:
            coords.append(self._to_model(p.boxes.reshape(-1, 2, 2), normalize))
            labels.append(np.tile(np.array([2.0, 3.0], np.float32), (p.batch, 1)))
        if p.coords is not None:
            coords.append(self._to_model(p.coords, normalize))
            labels.append(p.labels.astype(np.float32))
        return np.concatenate(coords, axis=1), np.concatenate(labels, axis=1)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Same arguments and results as `Sam2ImagePredictor.predict`.

        Args:
            point_coords: Nx2 (x, y) points in pixels (in [0, 1] with `normalize_coords=False`),
                or BxNx2 with B boxes.
            point_labels: N (or BxN) labels: 1 foreground, 0 background (-1 padding, 2/3 corners).
            box: (4,) box (x0, y0, x1, y1), or Bx4 boxes predicted in one batch.
            mask_input: 1x256x256 low-res logits from an earlier call (or Bx1x256x256).
            multimask_output: three candidate masks instead of one.
            return_logits: logits instead of 0/1 masks.
            normalize_coords: coordinates are pixels of the original image (True) or already
                normalised to [0, 1] (False).

        Returns:
            masks CxHxW, IoU predictions C, low-res logits Cx256x256 (float32; leading B axis
            for several boxes).
        """
        self._require_image()
        for name, flag in (
            ("multimask_output", multimask_output),
            ("return_logits", return_logits),
            ("normalize_coords", normalize_coords),
        ):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {flag!r}")
        if multimask_output and self.num_decoder_masks == 1:
            raise ValueError(
                "this decoder was exported with return_single_mask: call predict with "
                "multimask_output=False, or export without it for the 3 multimask outputs"
            )
        p = validate_prompts(point_coords, point_labels, box, mask_input, self.mask_input_size)
        coords, labels = self._prompts(p, bool(normalize_coords))
        if p.mask_input is not None:
            m, has_mask = p.mask_input, np.ones(1, np.float32)
        else:
            m, has_mask = (
                np.zeros((1, 1, *self.mask_input_size), np.float32),
                np.zeros(1, np.float32),
            )
        feeds = {
            **self._features,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": m,
            "has_mask_input": has_mask,
            "orig_im_size": np.asarray(self._orig_hw, np.float32),
        }
        masks, iou, low_res = self.decoder.run(DECODER_OUTPUTS, feeds)
        if iou.shape[1] != self.num_decoder_masks:
            raise ValueError(
                f"the decoder returned {iou.shape[1]} masks per prompt, its metadata says "
                f"{self.num_decoder_masks}: re-export it with export_sam2_onnx"
            )
        if self.num_decoder_masks > 1:
            if multimask_output:
                masks, iou, low_res = masks[:, 1:], iou[:, 1:], low_res[:, 1:]
            elif self.dynamic_multimask:
                masks, iou, low_res = select_single_mask(
                    masks, iou, low_res, self.stability_delta, self.stability_thresh
                )
            else:
                masks, iou, low_res = masks[:, :1], iou[:, :1], low_res[:, :1]
        if not return_logits:
            binary = np.empty(masks.shape, np.float32)
            np.greater(masks, self.mask_threshold, out=binary, casting="unsafe")
            masks = binary
        outs = [np.ascontiguousarray(o, dtype=np.float32) for o in (masks, iou, low_res)]
        if outs[0].shape[0] == 1:  # the official predictor's squeeze(0)
            outs = [o[0] for o in outs]
        return outs[0], outs[1], outs[2]
