"""Image and coordinate transforms and mask post-processing (pure functions).

SAM 1 resizes the longest side to the encoder size with PIL's (antialiased) bilinear filter,
normalises, and pads bottom/right; coordinates scale by the same factors. Post-processing undoes
this on low-res mask logits.
"""

from __future__ import annotations

import platform
from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from samkit.predict.inputs import as_rgb_uint8, get_preprocess_shape


def resize_longest_side(image: np.ndarray, long_side_length: int) -> np.ndarray:
    """Resize an HxWx3 uint8 image with PIL bilinear so its longest side is `long_side_length`."""
    h, w = image.shape[:2]
    new_h, new_w = get_preprocess_shape(h, w, long_side_length)
    if (new_h, new_w) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def apply_coords(coords: np.ndarray, original_size: tuple[int, int], target: int) -> np.ndarray:
    """Map ...x2 (x, y) pixel coordinates of the original image to the resized frame (float64)."""
    old_h, old_w = original_size
    new_h, new_w = get_preprocess_shape(old_h, old_w, target)
    coords = deepcopy(coords).astype(float)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


def apply_coords_torch(coords: Tensor, original_size: tuple[int, int], target: int) -> Tensor:
    """Torch version of `apply_coords` (float32 result)."""
    old_h, old_w = original_size
    new_h, new_w = get_preprocess_shape(old_h, old_w, target)
    coords = coords.clone().to(torch.float)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


class ResizeLongestSide:
    """Object form of the transforms, with the official `ResizeLongestSide` method names."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return resize_longest_side(image, self.target_length)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return apply_coords(coords, tuple(original_size[:2]), self.target_length)

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: Tensor, original_size: tuple[int, ...]) -> Tensor:
        return apply_coords_torch(coords, tuple(original_size[:2]), self.target_length)

    def apply_boxes_torch(self, boxes: Tensor, original_size: tuple[int, ...]) -> Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    @staticmethod
    def get_preprocess_shape(old_h: int, old_w: int, long_side_length: int) -> tuple[int, int]:
        return get_preprocess_shape(old_h, old_w, long_side_length)


def sam2_input_coords(
    coords: Tensor, original_size: tuple[int, int], image_size: int, normalize: bool = True
) -> Tensor:
    """...x2 (x, y) pixel coordinates of an HxW image -> the SAM 2 model input frame: divided by
    (W, H) when `normalize` (else already in [0, 1]), times the input side `image_size` (the
    official `SAM2Transforms.transform_coords`; float32 in, float32 out)."""
    if normalize:
        h, w = original_size
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / w
        coords[..., 1] = coords[..., 1] / h
    return coords * image_size


def threshold_masks(
    logits: Tensor, threshold: float, out: Tensor | None = None, dtype: torch.dtype = torch.bool
) -> Tensor:
    """`logits > threshold` written as `dtype` (bool, or float 0/1) into `out` (new if None).

    On CPU this is one numpy pass, about twice torch's speed there (and a single pass for float
    0/1 where torch compares, then casts).
    """
    if out is None:
        out = torch.empty(tuple(logits.shape), dtype=dtype, device=logits.device)
    if logits.device.type == "cpu":
        np.greater(logits.detach().numpy(), threshold, out=out.numpy(), casting="unsafe")
    else:
        out.copy_(logits > threshold)
    return out


def _native_uint8_bilinear() -> bool:
    """Whether torchvision resizes uint8 CPU images natively (torch's uint8 antialiased bilinear
    kernel) rather than through float32 and rounding: on AVX2 / AVX-512 and ARM64 CPUs."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def sam3_image_to_tensor(
    image: np.ndarray | Image.Image | Tensor, resolution: int = 1008
) -> Tensor:
    """SAM 3's image transform: 3xRxR float32 model input (R = `resolution`), on the CPU.

    The official `Sam3Processor` transform on CPU: the uint8 image is resized to RxR without
    keeping the aspect ratio (torchvision v2 `Resize`: bilinear, antialiased, half-pixel
    centres; on AVX2 / AVX-512 / ARM64 CPUs torch's native uint8 kernel, elsewhere float32
    then rounded back to uint8, as torchvision does), then `* (1 / 255)`, then
    `Normalize(0.5, 0.5)`. Values lie in [-1, 1]. Stack the results for a batch.

    Args:
        image: HxWx3 RGB array or PIL image (any mode `samkit.predict.inputs.as_rgb_uint8` reads), or a
            3xHxW tensor: uint8, or float in [0, 1] (converted to uint8 by the official first
            step, `v2.ToDtype(torch.uint8, scale=True)`: `x * 255.999`, truncated).
        resolution: output side (1008 for SAM 3).

    Raises:
        ValueError: not an image, a wrong shape or dtype, or a bad resolution.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be 3xHxW, got {tuple(image.shape)}")
        x = image.detach().cpu()
        if x.is_floating_point():
            # the official first step, v2.ToDtype(uint8, scale=True): x * (256 - 1e-3), truncated
            if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
                raise ValueError("a float image tensor must hold finite values in [0, 1]")
            x = x.mul(255.0 + 1.0 - 1e-3).to(torch.uint8)
        elif x.dtype != torch.uint8:
            raise ValueError(f"an image tensor must be uint8 or float in [0, 1], got {x.dtype}")
    else:
        arr = as_rgb_uint8(image)
        if not arr.flags.writeable:
            arr = arr.copy()
        x = torch.from_numpy(arr).permute(2, 0, 1)
    if min(x.shape[-2:]) < 1:
        raise ValueError(f"the image is empty ({tuple(x.shape[-2:])})")
    x = x.contiguous()[None]
    if tuple(x.shape[-2:]) != (resolution, resolution):
        size = (resolution, resolution)
        if _native_uint8_bilinear():
            x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)
        else:
            x = F.interpolate(x.float(), size, mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().to(torch.uint8)
    x = x.to(torch.float32).mul_(1.0 / 255)
    return x.sub_(0.5).div_(0.5)[0]
