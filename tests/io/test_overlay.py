"""The one overlay (samkit.io.overlay): blending, outlines, names and prompts, shared by the image
overlays (samkit.amg.render_overlay) and the video frames (samkit.video.overlay.render_overlay)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samkit.amg import render_overlay as amg_overlay
from samkit.io.masks import davis_palette
from samkit.io.overlay import (
    BACKGROUND,
    FOREGROUND,
    blend_masks,
    distinct_colours,
    draw_prompts,
    mask_outline,
    render_overlay,
)
from samkit.video.overlay import render_overlay as video_overlay


def _square() -> np.ndarray:
    m = np.zeros((12, 16), bool)
    m[2:8, 3:11] = True
    return m


def test_outline_is_the_pixels_with_a_neighbour_outside() -> None:
    m = _square()
    edge = mask_outline(m)
    inner = np.zeros_like(m)
    inner[3:7, 4:10] = True
    np.testing.assert_array_equal(edge, m & ~inner)
    full = np.ones((4, 5), bool)  # the image border counts as outside
    assert mask_outline(full)[0].all() and not mask_outline(full)[1:-1, 1:-1].any()


def test_blend_in_order_with_opaque_outlines() -> None:
    rgb = np.full((12, 16, 3), 100, np.uint8)
    a, b = _square(), np.zeros((12, 16), bool)
    b[4:12, 8:16] = True
    out = blend_masks(rgb, [a, b], [(200, 0, 0), (0, 0, 200)], alpha=0.5)
    assert out.dtype == np.uint8 and (out[0, 0] == 100).all()
    assert (out[4, 5] == (150, 50, 50)).all()  # inside a only
    assert (out[2, 3] == (200, 0, 0)).all()  # a's outline
    assert (out[6, 9] == (75, 25, 125)).all()  # inside both: b blended over a
    assert (out[4, 8] == (0, 0, 200)).all()  # b's outline on top
    with pytest.raises(ValueError, match=r"mask 0: shape \(3, 3\) does not match"):
        blend_masks(rgb, [np.ones((3, 3), bool)], [(1, 2, 3)])
    with pytest.raises(ValueError, match="alpha"):
        blend_masks(rgb, [a], [(1, 2, 3)], alpha=1.5)


def test_prompts_without_and_with_object_colours() -> None:
    base = Image.new("RGB", (90, 90), (0, 0, 0))
    plain = np.asarray(draw_prompts(base, [(20, 20), (60, 60)], [1, 0]))
    assert tuple(plain[20, 20]) == FOREGROUND and tuple(plain[60, 60]) == BACKGROUND
    col = (10, 120, 250)
    coloured = np.asarray(draw_prompts(base, [(20, 20, col), (60, 60, col)], [1, 0]))
    assert tuple(coloured[20, 20]) == col  # a positive click: a dot in the object's colour
    assert tuple(coloured[60, 60]) == (0, 0, 0)  # a negative click: a ring, hollow
    boxed = np.asarray(draw_prompts(base, boxes=[(10, 10, 80, 80, col)]))
    assert tuple(boxed[45, 10]) in (col, (255, 255, 255)) and tuple(boxed[45, 45]) == (0, 0, 0)


def test_image_and_video_overlays_draw_through_the_one_renderer() -> None:
    rgb = np.full((12, 16, 3), 100, np.uint8)
    m = _square()
    via_amg = np.asarray(amg_overlay(rgb, [{"segmentation": m, "area": int(m.sum())}]))
    direct = np.asarray(render_overlay(rgb, [m], distinct_colours(1, 0)))
    np.testing.assert_array_equal(via_amg, direct)
    labels = m.astype(np.uint8) * 3
    frame = video_overlay(rgb, labels)
    by_hand = np.asarray(
        render_overlay(rgb, [m], [davis_palette()[3]], names=["3"])  # the id at the centroid
    )
    np.testing.assert_array_equal(frame, by_hand)
    assert not np.array_equal(frame, np.asarray(render_overlay(rgb, [m], [davis_palette()[3]])))
