"""A training sample (an image and its instance masks) and the same sample in the model's input
frame (`prepare_sample`: the official SAM 1 resize / pad, so that the model and the losses see
the frame `SamPredictor` sees). The datasets that read samples from disk are
`samkit.train.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samkit.predict.transforms import get_preprocess_shape, resize_longest_side


@dataclass
class Sample:
    """One image with its instance masks.

    Attributes:
        name: identifier (the file stem, or the COCO file name).
        image: HxWx3 uint8 RGB.
        masks: NxHxW bool, N >= 1, none of them empty.
    """

    name: str
    image: np.ndarray
    masks: np.ndarray


@dataclass
class PreparedSample:
    """A sample in the model's input frame.

    Attributes:
        name: identifier.
        image: 3xhxw float32 0-255 image resized so its longest side is the encoder size (not yet
            normalised or padded: `Sam.preprocess` does that).
        gt: Nx(S)x(S) bool masks resized to the input frame and zero-padded to the encoder size S.
        original_size: (H, W) of the original image.
        input_size: (h, w) after resizing.
    """

    name: str
    image: torch.Tensor
    gt: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def prepare_sample(sample: Sample, img_size: int) -> PreparedSample:
    """Resize the image (official PIL bilinear, longest side = img_size) and its masks.

    Masks are resized with bilinear + antialias on 0/1 floats, thresholded at 0.5 and padded at
    the bottom / right to img_size x img_size, like the image after `Sam.preprocess`.
    """
    h, w = sample.image.shape[:2]
    new_h, new_w = get_preprocess_shape(h, w, img_size)
    image = resize_longest_side(sample.image, img_size)
    img_t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    m = torch.tensor(sample.masks).float()[:, None]  # a copy: masks may be read-only
    if (new_h, new_w) != (h, w):
        m = F.interpolate(m, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    gt = F.pad(m[:, 0], (0, img_size - new_w, 0, img_size - new_h)) >= 0.5
    return PreparedSample(sample.name, img_t, gt, (h, w), (new_h, new_w))
