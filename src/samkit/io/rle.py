"""THE mask run-length codec of samkit: uncompressed RLE (column-major, zeros first) and COCO RLE.

Every RLE samkit writes or reads (the generators' output modes, `samkit auto` / `segment` JSON,
the web app, video annotations, training datasets) goes through this module; PNGs, boxes and
records of masks are in `samkit.io.masks`.

The uncompressed form is what the official generator emits for `output_mode="uncompressed_rle"`:
`{"size": [h, w], "counts": [n0, n1, ...]}`, alternating run lengths of 0s and 1s over the mask
flattened in column-major (Fortran) order, always starting with a (possibly empty) run of 0s.
COCO's compressed string form (`output_mode="coco_rle"`) is encoded here with numpy, with
pycocotools' algorithm, so pycocotools is not needed (but decodes our strings to the same mask).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from torch import Tensor


def mask_runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths (int64) of an HxW mask in column-major order, starting with a run of zeros.

    The one run-length encoder of samkit: every RLE it writes (uncompressed, COCO strings) is
    built from these runs. A mask starting with a 1 gets an empty first run; an empty (0-pixel)
    mask gives [0].
    """
    flat = np.asarray(mask).astype(bool, copy=False).ravel(order="F")
    return _flat_runs(flat)


def _flat_runs(flat: np.ndarray) -> np.ndarray:
    """Run lengths of a 1-D bool array (already in column-major order), zeros first."""
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    return np.concatenate(([0], counts)) if flat[0] else counts


def _as_bool_array(masks: Any, what: str = "masks") -> np.ndarray:
    """NxHxW masks (tensor on any device, or array-like) as a bool numpy array."""
    if isinstance(masks, Tensor):
        masks = masks.detach().cpu().numpy()
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"{what} must be NxHxW, got shape {m.shape}")
    return m.astype(bool, copy=False)


def mask_to_rle_pytorch(tensor: Tensor) -> list[dict[str, Any]]:
    """Encode BxHxW bool masks as uncompressed RLE dicts (column-major, zeros first).

    The official generator's name; the runs come from `mask_runs` (on the CPU).

    Args:
        tensor: BxHxW bool (or 0/1) tensor.

    Returns:
        B dicts {"size": [H, W], "counts": list[int]}.

    Raises:
        ValueError: not a BxHxW tensor.
    """
    if not isinstance(tensor, Tensor) or tensor.dim() != 3:
        raise ValueError(
            "masks must be a BxHxW tensor, got "
            f"{tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__}"
        )
    h, w = tensor.shape[1:]
    return [{"size": [h, w], "counts": mask_runs(m).tolist()} for m in _as_bool_array(tensor)]


def crop_mask_to_rle(mask: Tensor, box: Sequence[int], h: int, w: int) -> dict[str, Any]:
    """Uncompressed RLE of an HxW mask that is zero outside `box`, given only its box crop.

    Args:
        mask: (y1 - y0 + 1) x (x1 - x0 + 1) bool tensor, the mask inside its inclusive XYXY box.
        box: (x0, y0, x1, y1) inclusive pixel box in the full mask.
        h, w: the full mask size.

    Returns:
        The same RLE as `mask_to_rle_pytorch` on the full mask.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = mask.detach().cpu().numpy().astype(bool, copy=False)
    if crop.size == 0 or not crop.any():
        return {"size": [h, w], "counts": [h * w]}
    # Columns x0..x1 with full height, in column-major order.
    cols = np.zeros((x1 - x0 + 1, h), dtype=bool)
    cols[:, y0 : y1 + 1] = crop.T
    counts = _flat_runs(cols.ravel()).tolist()
    # The first run is zeros (the mask has a 1 somewhere); add the columns before and after.
    counts[0] += x0 * h
    if len(counts) % 2 == 1:
        counts[-1] += (w - 1 - x1) * h
    elif x1 < w - 1:
        counts.append((w - 1 - x1) * h)
    return {"size": [h, w], "counts": counts}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed (list counts) or COCO (string counts) RLE to an HxW bool array.

    Raises:
        ValueError: counts that are negative or do not sum to h * w, or a truncated string.
    """
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle_counts(rle), dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"RLE counts must be non-negative run lengths summing to h*w={h * w}")
    values = (np.arange(counts.size) % 2).astype(bool)
    mask = np.repeat(values, counts)
    return mask.reshape(w, h).T


def rle_counts(rle: dict[str, Any]) -> list[int]:
    """The run lengths of an uncompressed RLE (list counts) or a COCO RLE (string counts)."""
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return rle_string_to_counts(counts)
    return [int(c) for c in counts]


def area_from_rle(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an uncompressed or COCO RLE (pycocotools' `area`)."""
    return int(sum(rle_counts(rle)[1::2]))


def bbox_from_rle(rle: dict[str, Any]) -> list[float]:
    """The XYWH box of an uncompressed or COCO RLE, as `pycocotools.mask.toBbox` gives it.

    The box covers the mask's pixels: w = x_max - x_min + 1 (a mask filling a 640x477 image
    has [0, 0, 640, 477]), the COCO convention. The official SAM generator's records (and
    `--format sa1b`) use w = x_max - x_min instead ([0, 0, 639, 476]). An empty mask gives
    [0, 0, 0, 0]. Computed from the runs (pycocotools' `rleToBbox`), without decoding the mask.

    Raises:
        ValueError: a size that is not two non-negative integers.
    """
    h, w = (int(v) for v in rle["size"])
    if h < 0 or w < 0:
        raise ValueError(f"RLE size must be [h, w] >= 0, got {rle['size']}")
    counts = np.asarray(rle_counts(rle), dtype=np.int64)
    m = counts.size // 2 * 2  # complete (zeros, ones) pairs; a trailing zero run adds nothing
    if m == 0 or h == 0:
        return [0.0, 0.0, 0.0, 0.0]
    ends = np.cumsum(counts[:m])
    # Even j: the first pixel of a run of ones; odd j: its last pixel (column-major index).
    t = ends - (np.arange(m) % 2)
    y, x = t % h, t // h
    x0, x1, y0, y1 = int(x.min()), int(x.max()), int(y.min()), int(y.max())
    if (x[1::2] > x[0::2]).any():  # a run that wraps into the next column spans every row
        y0, y1 = 0, h - 1
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


def rle_counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """COCO compressed counts string (pycocotools' `rleToString`) of uncompressed counts.

    Vectorised with numpy: each count (from the third on, minus the count two before it) is
    written as little-endian 5-bit groups in the fewest characters that hold it as a signed number,
    bit 5 marking "more follows", each group offset by 48 (~3 ms for 120k runs).
    """
    c = np.asarray(counts, dtype=np.int64).ravel()
    if c.size == 0:
        return ""
    x = c.copy()
    x[3:] -= c[1:-2]
    # Characters per value: the smallest k with -16 * 32**(k-1) <= x < 16 * 32**(k-1).
    n = np.ones(x.size, dtype=np.uint8)
    for bits in range(4, 64, 5):  # 13 characters hold any int64
        big = (x >= (1 << bits)) | (x < -(1 << bits))
        if not big.any():
            break
        n += big
    # Row i holds value i's characters; the unused tail of each row is dropped at the end.
    width = int(n.max())
    chars = np.empty((x.size, width), dtype=np.uint8)
    for k in range(width):
        chars[:, k] = ((x >> (5 * k)) & 0x1F) + np.where(n > k + 1, 48 + 0x20, 48)
    return chars[np.arange(width, dtype=np.uint8) < n[:, None]].tobytes().decode("ascii")


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Inverse of `rle_counts_to_string` (pycocotools' `rleFrString`)."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated COCO RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO RLE {"size": [h, w], "counts": str} (JSON-serialisable)."""
    h, w = (int(v) for v in uncompressed_rle["size"])
    counts = list(uncompressed_rle["counts"])
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected h*w={h * w}")
    return {"size": [h, w], "counts": rle_counts_to_string(counts)}


def coco_decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (string counts) -> HxW bool array (`rle_to_mask`, pycocotools' `decode`)."""
    return rle_to_mask(rle)


def segmentation_to_mask(seg: Any) -> np.ndarray:
    """Any generator segmentation (HxW array or tensor, uncompressed or COCO RLE) -> HxW bool.

    Raises:
        ValueError: another type.
    """
    if isinstance(seg, np.ndarray):
        return seg.astype(bool)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return rle_to_mask(seg)
    if isinstance(seg, Tensor):
        return seg.detach().cpu().numpy().astype(bool)
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def to_coco_rle(seg: Any) -> dict[str, Any]:
    """Any generator segmentation -> COCO RLE `{"size": [h, w], "counts": str}` (JSON-ready).

    The one COCO RLE encoder of samkit's annotation files (pycocotools decodes it to the same
    mask). A COCO RLE passes through (bytes counts become str).

    Raises:
        ValueError: an unsupported type, or RLE counts that do not sum to h * w.
    """
    if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
        counts = seg["counts"]
        return {
            "size": [int(v) for v in seg["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
    if isinstance(seg, dict):
        return coco_encode_rle(seg)
    mask = segmentation_to_mask(seg)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {tuple(mask.shape)}")
    return {"size": list(mask.shape), "counts": rle_counts_to_string(mask_runs(mask))}


def masks_to_coco_rle(masks: np.ndarray | Tensor) -> list[dict[str, Any]]:
    """COCO RLEs (`{"size": [H, W], "counts": str}`, pycocotools-compatible) of NxHxW masks.

    Large masks (a megapixel or more) are encoded on two threads (numpy releases the GIL).

    Raises:
        ValueError: not NxHxW.
    """
    m = _as_bool_array(masks)
    h, w = m.shape[1:]

    def encode(x: np.ndarray) -> dict[str, Any]:
        return {"size": [h, w], "counts": rle_counts_to_string(mask_runs(x))}

    if len(m) > 1 and h * w >= 1 << 20:
        return list(_rle_pool().map(encode, m))
    return [encode(x) for x in m]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _rle_pool() -> ThreadPoolExecutor:
    """Two threads for RLE-encoding masks in parallel (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="samkit-rle")
        return _POOL
