"""The model side of the web app: encode an image once, decode prompts against cached embeddings.

`Engine` is thread-safe. Prompt decoding (`submit_predict`) runs on one long-lived decoding
thread with a predictor per clicked image (kept while clicks stay on that image); the (slow)
encoder and the automatic mask generator run one job at a time on another long-lived thread, a
`JobThread` (`samkit.server.threads` explains why). Clicks on an encoded image never wait for
another image's encoder, and parallel clicks queue instead of oversubscribing the cores. `predict`
also runs in the caller's thread.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samkit.amg.select import mask_generator_for
from samkit.build.registry import family_of, get_family
from samkit.io.embeddings import features_of, restore_features
from samkit.io.images import DEFAULT_MAX_PIXELS, decode_image
from samkit.io.masks import mask_png_bytes, mask_records
from samkit.server.cache import ByteLRUCache
from samkit.server.everything import zero_masks_messages
from samkit.server.threads import JobThread


@dataclass(frozen=True)
class Entry:
    """A cached image: its embedding, sizes, and the uploaded bytes (for "segment everything")."""

    image_id: str
    features: dict[str, torch.Tensor]  # `samkit.io.embeddings.features_of` layout
    original_size: tuple[int, int]
    input_size: tuple[int, int] | None
    data: bytes
    encode_ms: float

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features.values()) + len(self.data)


def _cached_predictor(family: str, model: Any, entry: Entry) -> Any:
    """The family's image predictor (`samkit.build.registry`), reusing the cached features
    when asked to encode the full image (crops, `crop_n_layers > 0`, are encoded)."""
    base = get_family(family).load("predictor")

    class _Cached(base):  # type: ignore[misc, valid-type]
        def set_image(self, image: Any, *args: Any, **kwargs: Any) -> None:
            if tuple(np.shape(image)[:2]) == entry.original_size:
                self.set_image_features(entry.features, entry.original_size, entry.input_size)
            else:
                super().set_image(image, *args, **kwargs)

    return _Cached(model)


class Engine:
    """Encodes uploads into a byte-bounded LRU cache and answers prompts from it.

    Args:
        model: a samkit model of any registered family with an image predictor (SAM 3: clicks
            through its interactive head).
        cache_bytes: the cache bound; must hold at least one largest entry.
        max_pixels: largest accepted image.
        max_upload_bytes: largest accepted upload (counted in an entry's size).
        family: the model's family (default: what the model says, `model.family`).
        threads: torch intra-op threads for decoding and encoding (default: the caller's setting).
        stretch: the percentile stretch of every upload (`samkit.io.images.decode_image`), or None.
    """

    def __init__(
        self,
        model: Any,
        cache_bytes: int,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_upload_bytes: int = 32 * 2**20,
        family: str | None = None,
        threads: int | None = None,
        stretch: Any = None,
    ) -> None:
        self.model = model
        self.family = family_of(model).name if family is None else get_family(family).name
        self._encoder = self._new_predictor()
        emb_bytes = int(self._encoder.image_feature_bytes())
        if cache_bytes < emb_bytes + max_upload_bytes:
            raise ValueError(
                f"the embedding cache ({cache_bytes:,} bytes) must hold at least one image: "
                f"{emb_bytes:,} bytes of features + up to {max_upload_bytes:,} bytes of upload"
            )
        self.cache = ByteLRUCache(cache_bytes)
        self.max_pixels = int(max_pixels)
        self.stretch = stretch
        self.threads = torch.get_num_threads() if threads is None else int(threads)
        self._worker = JobThread("samkit-jobs", self.threads)  # encoding, segment everything
        self._decoder = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="samkit-decoder",
            initializer=torch.set_num_threads,
            initargs=(self.threads,),
        )
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()
        # The last clicked image's predictor: it keeps the decoder's image-side work between
        # clicks. Clicks take turns on it.
        self._click_lock = threading.Lock()
        self._click_predictor: tuple[str, Any] | None = None

    def _new_predictor(self) -> Any:
        """A fresh image predictor of the model's family (`samkit.build.registry`)."""
        return get_family(self.family).load("predictor")(self.model)

    def close(self) -> None:
        self._worker.shutdown()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ images

    def submit_image(self, data: bytes) -> tuple[str, Future]:
        """Start (or join) encoding an upload; returns (image_id, future of (Entry, cached))."""
        image_id = hashlib.sha256(data).hexdigest()
        with self._lock:
            entry = self.cache.get(image_id)
            if entry is not None:
                fut: Future = Future()
                fut.set_result((entry, True))
                return image_id, fut
            fut = self._inflight.get(image_id)
            if fut is None:
                fut = self._worker.submit(self._encode, image_id, data)
                self._inflight[image_id] = fut
            return image_id, fut

    def _encode(self, image_id: str, data: bytes) -> tuple[Entry, bool]:
        try:
            image = decode_image(data, self.max_pixels, self.stretch)
            t = time.perf_counter()
            enc = self._encoder
            enc.set_image(image)
            features = {k: v.detach().clone() for k, v in features_of(enc, self.family).items()}
            entry = Entry(
                image_id,
                features,
                (int(image.shape[0]), int(image.shape[1])),
                getattr(enc, "input_size", None),
                data,
                (time.perf_counter() - t) * 1e3,
            )
            self.cache.put(image_id, entry, entry.nbytes)
            return entry, False
        finally:
            with self._lock:
                self._inflight.pop(image_id, None)

    def get(self, image_id: str) -> Entry | None:
        return self.cache.get(image_id)

    # ------------------------------------------------------------------ prompts

    def submit_predict(self, entry: Entry, *args: Any, **kwargs: Any) -> Future:
        """`predict` on the decoding thread; a future of its result."""
        return self._decoder.submit(self.predict, entry, *args, **kwargs)

    def submit_decoding(self, fn: Any, *args: Any) -> Future:
        """`fn(*args)` on the decoding thread (SAM 3 phrases, `samkit.server.sam3_find`)."""
        return self._decoder.submit(fn, *args)

    def predict(
        self,
        entry: Entry,
        points: list[tuple[float, float]],
        labels: list[int],
        box: tuple[float, float, float, float] | None,
        multimask: bool,
        png: bool = False,
    ) -> dict[str, Any]:
        """Masks for one prompt: records with score, area, bbox, COCO RLE (and PNG if asked)."""
        t = time.perf_counter()
        with self._click_lock:
            if self._click_predictor is None or self._click_predictor[0] != entry.image_id:
                predictor = self._new_predictor()
                restore_features(
                    predictor, self.family, entry.features, entry.original_size, entry.input_size
                )
                self._click_predictor = (entry.image_id, predictor)
            masks, scores, _ = self._click_predictor[1].predict(
                point_coords=np.asarray(points, dtype=np.float64) if points else None,
                point_labels=np.asarray(labels, dtype=np.int64) if points else None,
                box=None if box is None else np.asarray(box, dtype=np.float64),
                multimask_output=multimask,
            )
        masks = np.asarray(masks).astype(bool, copy=False)  # SAM 2 returns float 0/1
        decode_ms = (time.perf_counter() - t) * 1e3
        records = mask_records(masks, scores.tolist())
        if png:
            for rec, m in zip(records, masks):
                rec["png"] = base64.b64encode(mask_png_bytes(m, compress_level=1)).decode()
        return {
            "masks": records,
            "best": int(np.argmax(scores)),
            "decode_ms": decode_ms,
            "total_ms": (time.perf_counter() - t) * 1e3,
        }

    def everything(self, entry: Entry, params: dict[str, Any]) -> Future:
        """Run the automatic mask generator on the job thread; future of COCO annotations."""
        return self._worker.submit(self._everything, entry, dict(params))

    def _everything(self, entry: Entry, params: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        image = decode_image(entry.data, self.max_pixels, self.stretch)
        predictor = _cached_predictor(self.family, self.model, entry)
        # the family's automatic mask generator; a setting left at None = that one's default
        gen = mask_generator_for(predictor, output_mode="coco_rle", **params)
        records = gen.generate(image)
        message, message_api = zero_masks_messages(gen)  # in the page's words, in the API's
        annotations = [
            {
                "id": i,
                "segmentation": r["segmentation"],
                "area": int(r["area"]),
                "bbox": [float(v) for v in r["bbox"]],
                "predicted_iou": float(r["predicted_iou"]),
                "stability_score": float(r["stability_score"]),
                "point_coords": r["point_coords"],
                "crop_box": [float(v) for v in r["crop_box"]],
            }
            for i, r in enumerate(records)
        ]
        return {
            "annotations": annotations,
            "elapsed_ms": (time.perf_counter() - t) * 1e3,
            # how many candidates each filter removed, and why nothing was kept (else None)
            "filter_counts": dict(gen.filter_counts),
            "message": message,
            "message_api": message_api,
        }


def _feature_bytes(model: Any, family: str) -> int:
    """Bytes of one image's cached features (the family predictor's `image_feature_bytes`)."""
    return int(get_family(family).load("predictor")(model).image_feature_bytes())
