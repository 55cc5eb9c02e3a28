"""Video prompts from the command line or a JSON file, checked against the video.

Command-line forms (repeatable):
- `--point FRAME:OBJ:X,Y[,LABEL]`: a click in frame pixels, LABEL 1 (foreground, default) or 0;
- `--box FRAME:OBJ:X0,Y0,X1,Y1`: a box in frame pixels;
- `--mask FRAME:OBJ:PNG`: a mask image of the frame's size. A label PNG (indexed / palette,
  e.g. a DAVIS annotation or samkit's own output, whatever ids it holds) gives the pixels equal
  to OBJ, which must be one of its ids; any other image must be a binary mask (one channel, 0
  and one other value), the object's mask; other images (photos, many grey levels) are refused.
  `FRAME:*:PNG` takes every id of a label PNG as its own object.

`--prompts prompts.json` holds the same as a list of objects, each with "frame", "obj" and one of
"point" ([x, y] or [x, y, label]), "points" (a list of those), "box" ([x0, y0, x1, y1]) or
"mask" (a PNG path, relative to the JSON file); "obj" may be "*" with "mask".

All points and boxes for one (frame, object) go into one `add_new_points_or_box` call; a mask
goes to `add_new_mask` and cannot be combined with points or a box on the same frame and object.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np


@dataclass
class VideoPrompt:
    """Prompts of one object on one frame (pixels of the frame)."""

    frame: int
    obj_id: int
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None  # HxW bool
    sources: list[str] = field(default_factory=list)  # the arguments, for error messages


@dataclass(frozen=True)
class ConceptPrompt:
    """A concept to find on a frame (SAM 3): a noun phrase and / or one exemplar box (XYXY
    pixels, label 1 positive or 0 negative); every instance found starts a track."""

    frame: int
    text: str | None
    box: tuple[float, float, float, float] | None
    box_label: int = 1


@dataclass
class _Raw:
    kind: str  # point / box / mask
    frame: int
    obj: int | str
    value: Any
    source: str


def _num(text: str, what: str, source: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{source}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{source}: {what} must be finite, got {text}")
    return v


def _int(value: Any, what: str, source: str) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {what} must be an integer, got {value!r}") from None


def _split(text: str, kind: str, form: str) -> tuple[int, int | str, str]:
    source = f"--{kind} {text}"
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise ValueError(f"{source}: expected {form}")
    frame = _int(parts[0], "FRAME", source)
    obj: int | str = "*" if parts[1] == "*" and kind == "mask" else _int(parts[1], "OBJ", source)
    return frame, obj, parts[2]


def parse_point(text: str) -> _Raw:
    """`FRAME:OBJ:X,Y[,LABEL]`."""
    frame, obj, rest = _split(text, "point", "FRAME:OBJ:X,Y[,LABEL]")
    source = f"--point {text}"
    v = rest.split(",")
    if len(v) not in (2, 3):
        raise ValueError(f"{source}: expected FRAME:OBJ:X,Y[,LABEL]")
    label = _int(v[2], "LABEL", source) if len(v) == 3 else 1
    point = (_num(v[0], "X", source), _num(v[1], "Y", source), label)
    return _Raw("point", frame, obj, point, source)


def parse_box(text: str) -> _Raw:
    """`FRAME:OBJ:X0,Y0,X1,Y1`."""
    frame, obj, rest = _split(text, "box", "FRAME:OBJ:X0,Y0,X1,Y1")
    source = f"--box {text}"
    v = rest.split(",")
    if len(v) != 4:
        raise ValueError(f"{source}: expected FRAME:OBJ:X0,Y0,X1,Y1")
    box = tuple(_num(x, "a box coordinate", source) for x in v)
    return _Raw("box", frame, obj, box, source)


def parse_mask(text: str, base: Path | None = None) -> _Raw:
    """`FRAME:OBJ:PNG` (OBJ may be `*`)."""
    frame, obj, rest = _split(text, "mask", "FRAME:OBJ:PNG")
    path = Path(rest) if base is None or Path(rest).is_absolute() else base / rest
    return _Raw("mask", frame, obj, path, f"--mask {text}")


def load_prompts_json(path: str | Path) -> list[_Raw]:
    """Raw prompts of a prompts.json (see the module docstring)."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--prompts {path}: cannot read it as JSON ({e})") from None
    if not isinstance(items, list):
        raise ValueError(f"--prompts {path}: expected a JSON list of prompts")
    out: list[_Raw] = []
    for i, it in enumerate(items):
        src = f"--prompts {path} item {i}"
        if not isinstance(it, dict) or "frame" not in it or "obj" not in it:
            raise ValueError(f"{src}: each prompt needs 'frame' and 'obj'")
        kinds = [k for k in ("point", "points", "box", "mask") if k in it]
        if len(kinds) != 1:
            raise ValueError(f"{src}: give exactly one of point, points, box, mask")
        kind = kinds[0]
        frame = _int(it["frame"], "frame", src)
        obj = "*" if it["obj"] == "*" and kind == "mask" else _int(it["obj"], "obj", src)
        if kind in ("point", "points"):
            pts = [it["point"]] if kind == "point" else it["points"]
            if not isinstance(pts, list) or not pts:
                raise ValueError(f"{src}: 'points' must be a non-empty list of [x, y(, label)]")
            for p in pts:
                if not isinstance(p, list) or len(p) not in (2, 3):
                    raise ValueError(f"{src}: a point is [x, y] or [x, y, label], got {p!r}")
                label = _int(p[2], "label", src) if len(p) == 3 else 1
                xy = (_num(str(p[0]), "x", src), _num(str(p[1]), "y", src), label)
                out.append(_Raw("point", frame, obj, xy, src))
        elif kind == "box":
            b = it["box"]
            if not isinstance(b, list) or len(b) != 4:
                raise ValueError(f"{src}: a box is [x0, y0, x1, y1], got {b!r}")
            out.append(_Raw("box", frame, obj, tuple(_num(str(x), "box", src) for x in b), src))
        else:
            m = Path(str(it["mask"]))
            out.append(_Raw("mask", frame, obj, m if m.is_absolute() else path.parent / m, src))
    return out


def _mask_pixels(raw: _Raw, height: int, width: int) -> dict[int, np.ndarray]:
    path = Path(raw.value)
    if not path.is_file():
        raise ValueError(f"{raw.source}: no such file {path}")
    lab, labels = _read_mask(path, raw.source)
    if lab.shape != (height, width):
        raise ValueError(
            f"{raw.source}: the mask is {lab.shape[1]}x{lab.shape[0]}, the video {width}x{height}"
        )
    ids = [int(i) for i in np.unique(lab) if i != 0]
    if not ids:
        raise ValueError(f"{raw.source}: the mask is empty (all pixels are 0)")
    if raw.obj == "*":
        objects = {i: lab == i for i in ids if i != 255}
        if not labels or not objects:
            raise ValueError(
                f"{raw.source}: OBJ '*' takes every object id of a label PNG (palette, pixel = "
                f"object id), and {path.name} has none (no id in 1..254): give the object's id"
            )
        return objects
    if not labels:  # binary: any nonzero value is the object
        return {int(raw.obj): lab > 0}
    if int(raw.obj) not in ids:
        raise ValueError(
            f"{raw.source}: object {raw.obj} is not in {path.name} (its ids: "
            f"{', '.join(map(str, ids))}); use one of them or {raw.frame}:*:{path.name}"
        )
    return {int(raw.obj): lab == int(raw.obj)}


def _read_mask(path: Path, source: str) -> tuple[np.ndarray, bool]:
    """(HxW pixels, whether they are object ids). A palette ("P") PNG is always a label map,
    whatever ids it holds; any other image must be a binary mask: one channel (or grey colour
    channels), 0 for the background and at most one other value. Anything else (a photo, a
    grey image with more levels) is refused rather than read as a wrong mask."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                return np.array(im, dtype=np.uint8), True
            a = np.array(im)
            mode = im.mode
    except (OSError, SyntaxError) as e:  # PIL.UnidentifiedImageError included: not an image
        raise ValueError(f"{source}: cannot read {path} as a mask image ({e})") from None
    if a.ndim == 3:  # drop alpha; colour channels must be equal (a grey picture)
        a = a[..., : 1 if mode in ("LA", "La") else min(3, a.shape[-1])]
        if (a != a[..., :1]).any():
            _not_a_mask(path, source, f"a colour ({mode}) image")
        a = a[..., 0]
    levels = np.unique(a)
    if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
        _not_a_mask(path, source, f"a grey image with levels {_levels(levels)}")
    return (a > 0).astype(np.uint8), False


def _levels(levels: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in levels[:5])
    return f"{shown}, ... ({len(levels)} levels)" if len(levels) > 5 else shown


def _not_a_mask(path: Path, source: str, what: str) -> NoReturn:
    raise ValueError(
        f"{source}: {path.name} is {what}, not a mask: a mask file is a label PNG (indexed / "
        "palette, pixel = object id, as samkit track writes) or a binary mask (one channel, 0 "
        "for the background and one other value, e.g. 0/255 or 0/1)"
    )


def resolve_prompts(
    raws: list[_Raw], num_frames: int, height: int, width: int
) -> list[VideoPrompt]:
    """Group raw prompts by (frame, object), checking them against the video's size.

    Raises:
        ValueError: naming the argument: a frame outside the video, an object id outside 1..255,
            a label other than 0 / 1, a point or box outside the frame, an inverted box, two boxes
            or a mask with points for one frame and object, a mask file that is missing, empty, of
            another size, without the requested object id (a label PNG) or neither a label PNG
            nor a binary mask.
    """
    if not raws:
        raise ValueError("no prompts: give --point, --box, --mask or --prompts")
    groups: dict[tuple[int, int], VideoPrompt] = {}
    for raw in raws:
        if not 0 <= raw.frame < num_frames:
            raise ValueError(
                f"{raw.source}: frame {raw.frame} is outside the video (frames 0..{num_frames - 1})"
            )
        if raw.obj != "*" and not 1 <= int(raw.obj) <= 255:
            raise ValueError(f"{raw.source}: object ids must be in 1..255, got {raw.obj}")
        if raw.kind == "mask":
            per_obj = _mask_pixels(raw, height, width)
        else:
            per_obj = {int(raw.obj): None}
        for oid, m in per_obj.items():
            g = groups.setdefault((raw.frame, oid), VideoPrompt(raw.frame, oid))
            g.sources.append(raw.source)
            if raw.kind == "point":
                x, y, label = raw.value
                if label not in (0, 1):
                    raise ValueError(
                        f"{raw.source}: LABEL must be 1 (foreground) or 0, got {label}"
                    )
                if not (0 <= x <= width and 0 <= y <= height):
                    raise ValueError(
                        f"{raw.source}: point ({x:g}, {y:g}) is outside the {width}x{height} frame"
                    )
                g.points.append((x, y, label))
            elif raw.kind == "box":
                x0, y0, x1, y1 = raw.value
                if x1 < x0 or y1 < y0:
                    raise ValueError(f"{raw.source}: a box needs X1 >= X0 and Y1 >= Y0")
                if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                    raise ValueError(f"{raw.source}: the box is outside the {width}x{height} frame")
                if g.box is not None:
                    raise ValueError(
                        f"{raw.source}: a second box for object {oid} on frame {raw.frame}"
                    )
                g.box = raw.value
            else:
                if g.mask is not None:
                    raise ValueError(
                        f"{raw.source}: a second mask for object {oid} on frame {raw.frame}"
                    )
                g.mask = m
            if g.mask is not None and (g.points or g.box is not None):
                raise ValueError(
                    f"{raw.source}: object {oid} on frame {raw.frame} has both a mask and "
                    f"points/box ({'; '.join(g.sources)}); give one kind per frame and object"
                )
    return [groups[k] for k in sorted(groups)]
