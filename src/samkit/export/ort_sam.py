"""onnxruntime backend of the SAM 1 predictor: numpy + PIL + onnxruntime only (no torch import).

    from samkit.export.ort_sam import OnnxSamPredictor
    p = OnnxSamPredictor("out/encoder.onnx", "out/decoder.onnx")
    p.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, low_res = p.predict(np.array([[500, 375]]), np.array([1]))

The files come from `samkit export onnx` (or `samkit.export.sam.export_sam_onnx`). An official
`segment_anything` ONNX decoder works too (it has the same interface); without samkit metadata the
standard SAM pixel mean / std and a 1024 px input are assumed.

`predict` answers as `SamPredictor.predict` does, or raises a ValueError: a decoder exported with
`--return-single-mask` has no multimask outputs, and for one point or a box alone it returns the
official exporter's choice (the best multimask output), not the single-mask output, so those
calls are refused (see `check_single_mask_call`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from PIL import Image

from samkit.build.registry import get_family, resolve
from samkit.io.provenance import Provenance, check, from_json
from samkit.predict.inputs import Prompts, as_rgb_uint8, get_preprocess_shape, validate_prompts

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def _require_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("OnnxSamPredictor needs onnxruntime: pip install 'samkit[onnx]'") from e
    return onnxruntime


def _meta(session: Any) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map
    return {k[len("samkit_") :]: json.loads(v) for k, v in raw.items() if k.startswith("samkit_")}


def files_provenance(
    decoder_meta: dict[str, Any],
    decoder_path: str | os.PathLike,
    family: str,
    encoder_meta: dict[str, Any] | None = None,
    encoder_path: str | os.PathLike | None = None,
) -> Provenance | None:
    """The model an exported decoder (and encoder) came from, checked for one predictor.

    Args:
        decoder_meta, encoder_meta: `_meta` of the sessions (encoder None: no encoder file).
        family: what the predictor serves, "sam1" or "sam2".

    Returns:
        The decoder's provenance (None for files without samkit metadata, e.g. official ones).

    Raises:
        ValueError: a file of the other family, or an encoder and a decoder of different models.
    """
    dec = None
    if "provenance" in decoder_meta:
        dec = from_json(decoder_meta["provenance"], str(decoder_path))
    found = dec.family if dec is not None else decoder_meta.get("family", family)
    if found != family:
        made = dec.describe() if dec is not None else f"a {found} model"
        other = _onnx_predictor_name(found)
        raise ValueError(
            f"{decoder_path} was exported from {made} but this predictor serves {family} "
            f"files: use {other}"
        )
    if encoder_meta is not None and "provenance" in encoder_meta:
        enc = from_json(encoder_meta["provenance"], str(encoder_path))
        expected = dec or Provenance(family, "", "", enc.embedding_shape, enc.img_size)
        check(enc, expected, f"encoder {encoder_path}", f"decoder {decoder_path}")
    return dec


def served_family(meta: dict[str, Any], predictor: type, default: str) -> str:
    """The family of an exported file when `predictor` serves it (its registry `onnx_predictor`
    is that class), else `default` (`files_provenance` then names the right predictor).

    Args:
        meta: `_meta` of the file's session.
        predictor: the onnxruntime predictor class asking.
        default: the family a file without samkit metadata is taken for.
    """
    prov = meta.get("provenance")
    found = prov.get("family") if isinstance(prov, dict) else meta.get("family")
    if not isinstance(found, str):
        return default
    try:
        ref = get_family(found).onnx_predictor
    except ValueError:  # a family this samkit does not know
        return default
    return found if ref is not None and resolve(ref) is predictor else default


def _onnx_predictor_name(family: str) -> str:
    """The onnxruntime predictor class of a family (`samkit.build.registry`), for messages."""
    try:
        ref = get_family(family).onnx_predictor
    except ValueError:  # a family this samkit does not know
        ref = None
    return ref.rpartition(":")[2] if ref else f"a {family} predictor"


def check_single_mask_call(num_decoder_points: int) -> None:
    """Refuse a `multimask_output=False` call that a single-mask SAM 1 decoder answers unlike
    `SamPredictor`.

    A decoder exported with `--return-single-mask` (samkit's or the official exporter) picks, per
    prompt, the single-mask token when it gets more than 2 points (padding point and box corners
    counted), else the best of the 3 multimask outputs by predicted IoU. `SamPredictor.predict(
    multimask_output=False)` always returns the single-mask token, so the two agree only for
    prompts of more than 2 decoder points: a point set of 2 or more points, or a box with points.

    Raises:
        ValueError: for 2 or fewer decoder points (one point, a box alone, several boxes).
    """
    if num_decoder_points <= 2:
        raise ValueError(
            "predict(multimask_output=False) with one point or a box alone (2 decoder points) "
            "cannot be served by a decoder exported with --return-single-mask: for such prompts "
            "it returns the best of the 3 multimask outputs by predicted IoU (the official "
            "exporter's rule), not the single-mask output SamPredictor returns. Export the "
            "decoder without --return-single-mask (it serves every call), or add points"
        )


def _array(value: Any) -> np.ndarray:
    """A float32 numpy array of a tensor (any dtype or device) or array."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


class OnnxSamPredictor:
    """`SamPredictor`'s `set_image` / `predict` on onnxruntime sessions.

    Serves the files of every family whose registry `onnx_predictor` is this class (SAM 1,
    MobileSAM): `family` is the decoder file's family ("sam1" for files without samkit metadata).

    Args:
        encoder_path: `encoder.onnx` (None: only `set_embedding` can set an image).
        decoder_path: `decoder.onnx` with the official SAM ONNX decoder interface.
        providers: onnxruntime execution providers (default: CPU).
        intra_op_num_threads: onnxruntime threads (default: onnxruntime's choice).

    Raises:
        ValueError: files of a family another predictor serves (the message names it), files
            of two different models, or a decoder without the official inputs.
    """

    family = "sam1"  # what an official file (no samkit metadata) is
    decoder_inputs: tuple[str, ...] = (
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    )

    def __init__(
        self,
        encoder_path: str | os.PathLike | None,
        decoder_path: str | os.PathLike,
        providers: list[str] | None = None,
        intra_op_num_threads: int | None = None,
    ) -> None:
        ort = _require_ort()
        opts = ort.SessionOptions()
        if intra_op_num_threads is not None:
            opts.intra_op_num_threads = int(intra_op_num_threads)
        providers = providers or ["CPUExecutionProvider"]
        for name, path in (("encoder", encoder_path), ("decoder", decoder_path)):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"{name} file not found: {path}")
        self.decoder = ort.InferenceSession(str(decoder_path), opts, providers=providers)
        self.family = served_family(_meta(self.decoder), type(self), self.family)
        self.provenance = files_provenance(_meta(self.decoder), decoder_path, self.family)
        names = {i.name for i in self.decoder.get_inputs()}
        expected = set(self.decoder_inputs)
        if names != expected:
            raise ValueError(
                f"{decoder_path}: decoder inputs {sorted(names)}, expected {sorted(expected)}"
            )
        self.encoder = None
        meta = _meta(self.decoder)
        if encoder_path is not None:
            self.encoder = ort.InferenceSession(str(encoder_path), opts, providers=providers)
            enc_in = self.encoder.get_inputs()[0]
            files_provenance(meta, decoder_path, self.family, _meta(self.encoder), encoder_path)
            meta = {**_meta(self.encoder), **meta}
            meta.setdefault("img_size", int(enc_in.shape[-1]))
        self.img_size = int(meta.get("img_size", 1024))
        self.pixel_mean = np.asarray(meta.get("pixel_mean", SAM_PIXEL_MEAN), np.float32)
        self.pixel_std = np.asarray(meta.get("pixel_std", SAM_PIXEL_STD), np.float32)
        self.mask_threshold = float(meta.get("mask_threshold", 0.0))
        emb = self.decoder.get_inputs()[0].shape
        self.embedding_shape = tuple(int(d) for d in emb)
        mask_shape = next(i.shape for i in self.decoder.get_inputs() if i.name == "mask_input")
        self.mask_input_size = (int(mask_shape[-2]), int(mask_shape[-1]))
        out = next(o for o in self.decoder.get_outputs() if o.name == "iou_predictions")
        self.num_decoder_masks = out.shape[-1] if isinstance(out.shape[-1], int) else 4
        if "return_single_mask" in meta:
            self.num_decoder_masks = 1 if meta["return_single_mask"] else 4
        coords = next(i for i in self.decoder.get_inputs() if i.name == "point_coords")
        self.batched_decoder = not isinstance(coords.shape[0], int)
        self.reset_image()

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: np.ndarray | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 1x3xSxS float32 encoder input (resize, normalise, pad)."""
        h, w = image.shape[:2]
        new_h, new_w = get_preprocess_shape(h, w, self.img_size)
        if (new_h, new_w) != (h, w):
            image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        x = (image.astype(np.float32) - self.pixel_mean) / self.pixel_std
        out = np.zeros((1, 3, self.img_size, self.img_size), np.float32)
        out[0, :, :new_h, :new_w] = x.transpose(2, 0, 1)
        return out

    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Run the encoder on an HxWx3 uint8 image (or PIL image)."""
        if self.encoder is None:
            raise ValueError("no encoder file was given: use set_embedding(...) instead")
        image = as_rgb_uint8(image, image_format)
        self._encode(self.preprocess(image), (image.shape[0], image.shape[1]))

    def _encode(self, x: np.ndarray, original_size: tuple[int, int]) -> None:
        """Run the encoder on a preprocessed image and keep its outputs."""
        (emb,) = self.encoder.run(["image_embeddings"], {"image": x})
        self.set_embedding(emb, original_size)

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        """Use a precomputed 1xCxhxw embedding for an image of `original_size` (H, W)."""
        embedding = np.asarray(embedding, dtype=np.float32)
        if embedding.shape != self.embedding_shape:
            raise ValueError(
                f"embedding must have shape {self.embedding_shape}, got {embedding.shape}"
            )
        self.reset_image()
        self.features = embedding
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = get_preprocess_shape(*self.original_size, self.img_size)
        self.is_image_set = True

    def get_image_embedding(self) -> np.ndarray:
        self._require_image()
        return self.features

    def get_image_features(self) -> dict[str, np.ndarray]:
        """{"image_embedding": 1xCxhxw float32}: the features as an embedding file names them."""
        return {"image_embedding": self.get_image_embedding()}

    def set_image_features(
        self,
        features: dict[str, Any],
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """`set_embedding` of stored features (tensors or arrays; `input_size` follows from
        `original_size` by the resize rule)."""
        self.set_embedding(_array(features["image_embedding"]), original_size)

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise ValueError("no image is set: call set_image(...) before predicting")

    def _to_model(self, xy: np.ndarray) -> np.ndarray:
        (oh, ow), (nh, nw) = self.original_size, self.input_size
        xy = xy.astype(np.float64).copy()
        xy[..., 0] *= nw / ow
        xy[..., 1] *= nh / oh
        return xy

    def _prompts(self, p: Prompts) -> tuple[np.ndarray, np.ndarray]:
        """BxNx2 coords and BxN labels in the model frame (box corners labelled 2 / 3)."""
        nb = p.batch
        coords, labels = np.zeros((nb, 0, 2)), np.zeros((nb, 0))
        if p.coords is not None:
            coords, labels = self._to_model(p.coords), p.labels.astype(np.float64)
        if p.boxes is not None:
            corners = self._to_model(p.boxes.reshape(nb, 2, 2))
            coords = np.concatenate([coords, corners], axis=1)
            labels = np.concatenate([labels, np.tile([2.0, 3.0], (nb, 1))], axis=1)
        elif p.coords is not None:
            # As SamPredictor (and the official ONNX example): a padding point when there is no box.
            coords = np.concatenate([coords, np.zeros((nb, 1, 2))], axis=1)
            labels = np.concatenate([labels, -np.ones((nb, 1))], axis=1)
        return coords.astype(np.float32), labels.astype(np.float32)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Same arguments and results as `SamPredictor.predict` (original-image pixels).

        Returns:
            masks CxHxW, scores C, low-res logits Cxhxw; with B > 1 boxes a leading B axis.
        """
        self._require_image()
        if multimask_output and self.num_decoder_masks == 1:
            raise ValueError(
                "this decoder was exported with --return-single-mask: call predict with "
                "multimask_output=False, or export without it for the 3 multimask outputs"
            )
        p = validate_prompts(point_coords, point_labels, box, mask_input, self.mask_input_size)
        coords, labels = self._prompts(p)
        if self.num_decoder_masks == 1:
            check_single_mask_call(coords.shape[1])
        nb, batched = p.batch, p.batched
        if p.mask_input is not None:
            m, has_mask = p.mask_input, np.ones(1, np.float32)
        else:
            h, w = self.mask_input_size
            m, has_mask = np.zeros((nb, 1, h, w), np.float32), np.zeros(1, np.float32)
        if self.batched_decoder:
            masks, iou, low_res = self._run(coords, labels, m, has_mask)
        else:  # a decoder with a fixed batch of 1 (e.g. an official file): one call per box
            outs = [
                self._run(coords[i : i + 1], labels[i : i + 1], m[i : i + 1], has_mask)
                for i in range(nb)
            ]
            masks, iou, low_res = (np.concatenate(o) for o in zip(*outs))
        if self.num_decoder_masks > 1:
            sel = self._output_slice(multimask_output)
            masks, iou, low_res = masks[:, sel], iou[:, sel], low_res[:, sel]
        if not return_logits:
            masks = masks > self.mask_threshold
        if not batched:
            masks, iou, low_res = masks[0], iou[0], low_res[0]
        return masks, iou, low_res

    def _output_slice(self, multimask_output: bool) -> slice:
        """The decoder outputs a call returns (4-mask file: the single-mask token first)."""
        return slice(1, None) if multimask_output else slice(0, 1)

    def _image_feeds(self) -> dict[str, np.ndarray]:
        """The decoder inputs that come from the image (its encoder outputs)."""
        return {"image_embeddings": self.features}

    def _run(
        self, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray, has_mask: np.ndarray
    ) -> list[np.ndarray]:
        feeds = {
            **self._image_feeds(),
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask,
            "has_mask_input": has_mask,
            "orig_im_size": np.asarray(self.original_size, np.float32),
        }
        return self.decoder.run(["masks", "iou_predictions", "low_res_masks"], feeds)
