"""THE mask overlay of samkit: masks blended over an image with outlines, names and prompts.

Every overlay samkit draws comes from `render_overlay` here: `samkit auto` / `segment` PNGs (through
`samkit.amg.render_overlay`, which reads generator records), SAM 3 instance overlays, the frames of
`samkit track`'s overlay.mp4 (through `samkit.video.overlay.render_overlay`, which reads an id map)
and the web app's video download. Pure numpy + PIL drawing; no model code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
FOREGROUND: Colour = (40, 200, 60)  # a positive click when no object colour is given
BACKGROUND: Colour = (230, 40, 40)  # a negative click when no object colour is given
BOX: Colour = (30, 144, 255)
WHITE: Colour = (255, 255, 255)


def distinct_colours(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 distinct-ish RGB colours: golden-ratio hues, shuffled saturation / value."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.random()) % 1.0
    sat = 0.65 + 0.3 * rng.random(n)
    val = 0.75 + 0.25 * rng.random(n)
    i = np.floor(hues * 6).astype(int) % 6
    f = hues * 6 - np.floor(hues * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    table = np.stack(
        [
            np.stack([val, t, p], -1),
            np.stack([q, val, p], -1),
            np.stack([p, val, t], -1),
            np.stack([p, q, val], -1),
            np.stack([t, p, val], -1),
            np.stack([val, p, q], -1),
        ]
    )
    return (table[i, np.arange(n)] * 255).round().astype(np.uint8)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels of `mask` with a 4-neighbour outside it (or on the image border)."""
    edge = mask.copy()
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    edge[1:-1, 1:-1] &= ~inner
    return edge


def blend_masks(
    rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    colours: Sequence[Any],
    alpha: float = 0.5,
    outline: bool = True,
) -> np.ndarray:
    """HxWx3 uint8: each mask blended in its colour over `rgb`, in order, outlined opaquely.

    Args:
        rgb: HxWx3 uint8 image.
        masks: HxW bool-like masks, drawn in this order (later ones on top).
        colours: one RGB colour (0-255) per mask.
        alpha: mask opacity in [0, 1].
        outline: draw each mask's boundary (`mask_outline`) in its colour, opaquely.

    Raises:
        ValueError: alpha outside [0, 1], or a mask whose size is not the image's.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = np.asarray(rgb).astype(np.float32)
    for i, (mask, colour) in enumerate(zip(masks, colours)):
        m = np.asarray(mask).astype(bool, copy=False)
        if m.shape != out.shape[:2]:
            raise ValueError(f"mask {i}: shape {m.shape} does not match the image {out.shape[:2]}")
        col = np.asarray(colour, dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * col
        if outline:
            out[mask_outline(m)] = col
    return out.round().clip(0, 255).astype(np.uint8)


def draw_prompts(
    image: Image.Image,
    points: Sequence[Sequence[Any]] = (),
    labels: Sequence[int] = (),
    boxes: Sequence[Sequence[Any]] = (),
) -> Image.Image:
    """Draw click and box prompts on a copy of an image (as RGB).

    Args:
        image: a PIL image.
        points: (x, y) or (x, y, colour) in pixels. Without a colour a positive click is a green
            dot and a negative one a red dot; with one, a positive click is a dot in that colour
            and a negative one a ring. Both have a rim so they show on any background.
        labels: one label per point: 1 positive, 0 negative.
        boxes: (x0, y0, x1, y1) or (x0, y0, x1, y1, colour) in pixels (default colour: blue).
    """
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    r = max(5, round(max(out.size) / 90))
    for x0, y0, x1, y1, *colour in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=WHITE, width=max(2, r // 2 + 1))
        draw.rectangle(
            [x0, y0, x1, y1], outline=tuple(colour[0]) if colour else BOX, width=max(1, r // 2)
        )
    for (x, y, *colour), lab in zip(points, labels):
        ring = [x - r, y - r, x + r, y + r]
        if not colour:
            fill = FOREGROUND if int(lab) == 1 else BACKGROUND
            draw.ellipse(ring, fill=fill, outline=WHITE, width=2)
        elif int(lab) == 1:
            draw.ellipse(ring, fill=tuple(colour[0]), outline=WHITE, width=2)
        else:
            draw.ellipse(ring, outline=(0, 0, 0), width=max(3, r // 2))
            draw.ellipse(
                [x - r + 1, y - r + 1, x + r - 1, y + r - 1], outline=tuple(colour[0]), width=2
            )
    return out


def draw_names(
    image: Image.Image, masks: Sequence[np.ndarray], names: Sequence[str]
) -> Image.Image:
    """Write each name (white, black rim) at its mask's centroid, in place; empty masks skipped."""
    draw = ImageDraw.Draw(image)
    size = max(image.size)
    for mask, name in zip(masks, names):
        ys, xs = np.nonzero(mask)
        if xs.size == 0:
            continue
        draw.text(
            (float(xs.mean()), float(ys.mean())),
            name,
            fill=WHITE,
            anchor="mm",
            stroke_width=2,
            stroke_fill=(0, 0, 0),
            font_size=max(10, round(size / 40)),
        )
    return image


def render_overlay(
    rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    colours: Sequence[Any],
    *,
    alpha: float = 0.5,
    outline: bool = True,
    names: Sequence[str] | None = None,
    points: Sequence[Sequence[Any]] = (),
    labels: Sequence[int] = (),
    boxes: Sequence[Sequence[Any]] = (),
) -> Image.Image:
    """An RGB PIL image: `blend_masks`, then the masks' `names` at their centroids, then prompts.

    Args:
        rgb: HxWx3 uint8 image.
        masks, colours, alpha, outline: as `blend_masks`.
        names: optional text per mask (the video overlay writes object ids).
        points, labels, boxes: prompts, as `draw_prompts`.

    Raises:
        ValueError: as `blend_masks`.
    """
    im = Image.fromarray(blend_masks(rgb, masks, colours, alpha, outline))
    if names is not None:
        draw_names(im, [np.asarray(m, dtype=bool) for m in masks], names)
    if len(points) or len(boxes):
        im = draw_prompts(im, points, labels, boxes)
    return im
