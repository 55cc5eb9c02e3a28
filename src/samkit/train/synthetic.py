"""Synthetic segmentation data: textured shapes on cluttered backgrounds.

Used by the learning test and the training benchmark. Shapes are large, few (1-3), of high
contrast and of well separated hues within an image, so a small SAM can learn them from random weights in CPU minutes; the background is a
smooth colour field with low-contrast clutter (lines, blobs) and pixel noise, and every shape
carries a texture (stripes, checks or noise), so colour alone is not the whole story.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from samkit.train.datasets import Sample


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    coarse = rng.integers(70, 150, size=(4, 4, 3), dtype=np.uint8)
    gray = coarse.mean(axis=2, keepdims=True)
    coarse = (0.4 * coarse + 0.6 * gray).astype(np.uint8)  # muted colours
    bg = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(bg)
    for _ in range(int(rng.integers(12, 25))):
        c = tuple(int(v) for v in rng.integers(60, 170, size=3))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            a, length = rng.uniform(0, math.pi), rng.uniform(0.1, 0.4) * max(h, w)
            x2, y2 = x + length * math.cos(a), y + length * math.sin(a)
            draw.line([(x, y), (x2, y2)], fill=c, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(0.01, 0.04) * min(h, w)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=c)
    return bg.filter(ImageFilter.GaussianBlur(0.7))


def _shape_polygon(
    rng: np.random.Generator, cx: float, cy: float, r: float
) -> list[tuple[float, float]] | None:
    """Vertices of a random triangle / rectangle / pentagon / hexagon, or None for an ellipse."""
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return None
    n = {1: 3, 2: 4, 3: 5, 4: 6}[kind]
    rot = rng.uniform(0, 2 * math.pi)
    aspect = rng.uniform(0.7, 1.0) if n == 4 else 1.0
    pts = []
    for i in range(n):
        a = rot + 2 * math.pi * i / n
        pts.append((cx + r * math.cos(a), cy + aspect * r * math.sin(a)))
    return pts


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """HxW texture in [-1, 1]: stripes, checks or smooth noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(0, 3))
    period = rng.uniform(6, 14)
    if kind == 0:
        a = rng.uniform(0, math.pi)
        return np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
    if kind == 1:
        return np.sign(np.sin(2 * math.pi * xx / period) * np.sin(2 * math.pi * yy / period))
    small = rng.uniform(-1, 1, size=(max(2, h // 8), max(2, w // 8))).astype(np.float32)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def make_shapes_sample(
    rng: np.random.Generator,
    size: tuple[int, int] = (240, 320),
    max_shapes: int = 3,
    name: str = "shapes",
) -> Sample:
    """One synthetic image with 1..max_shapes textured shapes and their instance masks.

    Args:
        rng: random generator (the sample is a pure function of its state).
        size: (H, W) of the image.
        max_shapes: the most shapes per image.
        name: the sample name.

    Returns:
        A `Sample` whose masks are the visible parts of the shapes (later shapes occlude earlier
        ones); shapes mostly hidden by others are dropped.
    """
    h, w = size
    image = np.asarray(_background(rng, h, w), dtype=np.float32)
    n = int(rng.integers(1, max_shapes + 1))
    side = min(h, w)
    placed: list[tuple[float, float, float]] = []
    ids = np.zeros((h, w), dtype=np.int32)
    hue0 = rng.uniform(0, 1)  # hues of one image are spread around the colour wheel
    for k in range(n):
        for _attempt in range(30):
            r = rng.uniform(0.16, 0.3) * side
            cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
            if all(math.hypot(cx - x, cy - y) > 0.9 * (r + q) for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        canvas = Image.new("L", (w, h), 0)
        poly = _shape_polygon(rng, cx, cy, r)
        if poly is None:
            ry = r * rng.uniform(0.7, 1.0)
            ImageDraw.Draw(canvas).ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=1)
        else:
            ImageDraw.Draw(canvas).polygon(poly, fill=1)
        m = np.asarray(canvas, dtype=bool)
        # a saturated colour far from the muted background, with a texture of +-30 levels
        hue = hue0 + k / n + rng.uniform(-0.04, 0.04)
        rgb = np.array([math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)], dtype=np.float32)
        colour = 128 + 110 * rgb / np.abs(rgb).max()
        tex = _texture(rng, h, w)[..., None] * 30.0
        image[m] = np.clip(colour + tex[m], 0, 255)
        ids[m] = len(placed)
    noise = rng.normal(0, 6, size=image.shape).astype(np.float32)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    masks = []
    for k in range(1, len(placed) + 1):
        m = ids == k
        if m.sum() >= 0.02 * h * w:
            masks.append(m)
    if not masks:  # everything occluded: cannot happen with the placement rule, but stay valid
        return make_shapes_sample(rng, size, max_shapes, name)
    return Sample(name, image, np.stack(masks))


def make_shapes_dataset(
    n: int, seed: int = 0, size: tuple[int, int] = (240, 320), max_shapes: int = 3
) -> list[Sample]:
    """`n` samples named ``shapes_0000``...; sample i depends only on (seed, i)."""
    return [
        make_shapes_sample(
            np.random.default_rng([seed, i]), size, max_shapes, name=f"shapes_{i:04d}"
        )
        for i in range(n)
    ]


def write_folder_dataset(samples: list[Sample], root: str | Path) -> Path:
    """Write samples as ``root/images/NAME.png`` + ``root/masks/NAME.png`` (instance ids)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for s in samples:
        if s.masks.shape[0] > 255:
            raise ValueError(f"{s.name}: more than 255 instances do not fit an 8-bit id PNG")
        ids = np.zeros(s.masks.shape[1:], dtype=np.uint8)
        for k, m in enumerate(s.masks, start=1):
            ids[m] = k
        Image.fromarray(s.image).save(root / "images" / f"{s.name}.png")
        Image.fromarray(ids).save(root / "masks" / f"{s.name}.png")
    return root


def small_sam_config(img_size: int = 256, dim: int = 128) -> dict:
    """Official-format constructor arguments (a ``config.json``) of a small SAM 1 for training
    from scratch: ViT embed 64, depth 4, 2 heads, window 8, global blocks (1, 3), prompt /
    decoder width `dim`, decoder MLP 2 * dim; a 256 px input gives a 16x16 embedding and 64x64
    low-res masks. `samkit.build_sam(path_to_this_json)` builds it with random weights."""
    grid = img_size // 16
    return {
        "family": "sam1",
        "image_encoder": {
            "img_size": img_size,
            "patch_size": 16,
            "in_chans": 3,
            "embed_dim": 64,
            "depth": 4,
            "num_heads": 2,
            "mlp_ratio": 4.0,
            "out_chans": dim,
            "qkv_bias": True,
            "use_abs_pos": True,
            "use_rel_pos": True,
            "window_size": 8,
            "global_attn_indexes": [1, 3],
        },
        "prompt_encoder": {
            "embed_dim": dim,
            "image_embedding_size": [grid, grid],
            "input_image_size": [img_size, img_size],
            "mask_in_chans": 16,
        },
        "mask_decoder": {
            "transformer_dim": dim,
            "transformer": {
                "depth": 2,
                "embedding_dim": dim,
                "num_heads": 8,
                "mlp_dim": 2 * dim,
                "attention_downsample_rate": 2,
            },
            "num_multimask_outputs": 3,
            "iou_head_depth": 3,
            "iou_head_hidden_dim": dim,
        },
    }


def small_sam2_config(
    img_size: int = 256,
    dim: int = 64,
    embed_dim: int = 16,
    stages: tuple[int, ...] = (1, 2, 2, 1),
    window_spec: tuple[int, ...] = (8, 4, 8, 4),
) -> dict:
    """An official-format (hydra-resolved, ``{"model": {...}}``) ``config.json`` of a small SAM 2.1
    image model for training from scratch: Hiera `embed_dim` with `stages` (the last block of the
    third stage global), FPN / prompt / decoder width `dim`, the official decoder otherwise (high-
    res features, object scores, sigmoid IoU). A 256 px input gives a 16x16 embedding and 64x64
    low-res masks. `samkit.build_sam2(path_to_this_json)` builds it with random weights."""
    channels = [embed_dim * 2**i for i in range(len(stages))][::-1]
    return {
        "family": "sam2",
        "model": {
            "_target_": "sam2.modeling.sam2_base.SAM2Base",
            "image_size": img_size,
            "backbone_stride": 16,
            "image_encoder": {
                "_target_": "sam2.modeling.backbones.image_encoder.ImageEncoder",
                "scalp": 1,
                "trunk": {
                    "_target_": "sam2.modeling.backbones.hieradet.Hiera",
                    "embed_dim": embed_dim,
                    "num_heads": 1,
                    "stages": list(stages),
                    "global_att_blocks": [sum(stages[:3]) - 1],
                    "window_pos_embed_bkg_spatial_size": [4, 4],
                    "window_spec": list(window_spec),
                },
                "neck": {
                    "_target_": "sam2.modeling.backbones.image_encoder.FpnNeck",
                    "d_model": dim,
                    "backbone_channel_list": channels,
                    "fpn_top_down_levels": [2, 3],
                    "fpn_interp_model": "nearest",
                    "position_encoding": {
                        "_target_": "sam2.modeling.position_encoding.PositionEmbeddingSine",
                        "num_pos_feats": dim,
                        "normalize": True,
                        "scale": None,
                        "temperature": 10000,
                    },
                },
            },
            "use_high_res_features_in_sam": True,
            "pred_obj_scores": True,
            "pred_obj_scores_mlp": True,
            "use_multimask_token_for_obj_ptr": True,
            "iou_prediction_use_sigmoid": True,
            "directly_add_no_mem_embed": True,
            "no_obj_embed_spatial": True,
            "proj_tpos_enc_in_obj_ptrs": True,
            "use_signed_tpos_enc_to_obj_ptrs": True,
            "sam_mask_decoder_extra_args": {
                "dynamic_multimask_via_stability": True,
                "dynamic_multimask_stability_delta": 0.05,
                "dynamic_multimask_stability_thresh": 0.98,
            },
        },
    }
