"""`save_embedding` / `load_embedding` on the image predictors: the current image's encoder output
to and from an embedding file (`samkit.io.embeddings`, the files `samkit embed` writes and
`samkit segment --embedding` reads).

A predictor class mixes `EmbeddingFiles` in and says, through `_embedding_sizes`, which image its
features belong to; the family surface (`family`, `get_image_features`, `set_image_features`)
does the rest, so one implementation serves SAM 1 (`SamPredictor`, MobileSAM, HQ-SAM) and SAM 2
(`Sam2ImagePredictor`, EfficientTAM).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from samkit.io.embeddings import load_embedding, rgb_sha256, save_embedding
from samkit.io.provenance import of_model


class EmbeddingFiles:
    """Embedding-file methods for a predictor with the family surface and a `model`."""

    def _embedding_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((H, W) of the image, (H, W) of its resized copy in the model input frame) of the
        image whose features are set; ValueError when none (or several) is."""
        raise NotImplementedError

    def save_embedding(
        self,
        path: str | os.PathLike[str],
        image: np.ndarray | None = None,
        *,
        variant: str | None = None,
    ) -> Path:
        """Write the current image's features to an embedding file, atomically.

        `predictor.load_embedding(path)` (or `samkit.io.embeddings.load_embedding(path).apply(
        predictor)`, or `samkit segment --embedding path`) gives a predictor of the same model
        the same features again, skipping the image encoder.

        Args:
            path: the `.safetensors` file to write (its folder is made if missing).
            image: the HxWx3 uint8 RGB image given to `set_image`; when given, its pixels'
                sha256 is recorded, so `samkit segment --embedding` can refuse another image.
            variant: the model's name to record (`samkit embed` records the `--model` value);
                default: the model's own `variant` (e.g. "vit_b"), else its class name.

        Returns:
            The path written.

        Raises:
            ValueError: no image is set, several are (SAM 2's `set_image_batch`), or `image`
                is not the HxW image whose features are set.
        """
        original_size, input_size = self._embedding_sizes()
        sha = ""
        if image is not None:
            arr = np.asarray(image)
            if arr.dtype != np.uint8 or arr.ndim != 3 or tuple(arr.shape[:2]) != original_size:
                raise ValueError(
                    f"image must be the HxWx3 uint8 image given to set_image ({original_size[0]}"
                    f"x{original_size[1]}), got {arr.dtype} {tuple(arr.shape)}"
                )
            sha = rgb_sha256(arr)
        model = self.model  # type: ignore[attr-defined]
        name = variant or getattr(model, "variant", None) or type(model).__name__
        return save_embedding(
            path,
            self.get_image_features(),  # type: ignore[attr-defined]
            variant=str(name),
            family=self.family,  # type: ignore[attr-defined]
            original_size=original_size,
            input_size=input_size,
            img_size=int(model.image_size),
            image_sha256=sha,
            provenance=of_model(model),
        )

    def load_embedding(self, path: str | os.PathLike[str]) -> None:
        """Set the features of an embedding file (`save_embedding`, `samkit embed`) as if
        `set_image` had run on its image.

        Raises:
            FileNotFoundError: no file at `path`.
            ValueError: not an embedding file, or one made by a model of another family,
                architecture or embedding size (the message names both).
        """
        load_embedding(path).apply(self)
