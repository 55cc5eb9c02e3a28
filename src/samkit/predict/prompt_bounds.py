"""Warnings for prompts outside the image (shared by the command line and the web app).

SAM accepts any coordinate, so a point or box outside the image is valid input and is used as
given; but it is usually a typo, swapped x / y or the wrong image, so the user is told.
"""

from __future__ import annotations

from collections.abc import Sequence


def prompt_warnings(
    points: Sequence[Sequence[float]] | None,
    boxes: Sequence[Sequence[float]] | None,
    height: int,
    width: int,
) -> list[str]:
    """One sentence per point or box that lies (partly) outside a `width` x `height` image.

    Such prompts are valid input for the model (SAM accepts any coordinate), so they are not
    refused; the caller shows these warnings so that a typo or a wrong image is noticed.
    Coordinates are pixels, x in [0, width], y in [0, height].
    """
    out = []
    for i, p in enumerate(points if points is not None else ()):
        x, y = float(p[0]), float(p[1])
        if not (0 <= x <= width and 0 <= y <= height):
            out.append(
                f"point {i} ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(x in [0, {width}], y in [0, {height}]); it is used as given"
            )
    for i, b in enumerate(boxes if boxes is not None else ()):
        x0, y0, x1, y1 = (float(v) for v in b[:4])
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            out.append(
                f"box {i} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the {width}x{height} "
                "image; it is used as given"
            )
    return out
