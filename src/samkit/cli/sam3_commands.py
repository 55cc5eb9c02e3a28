"""SAM 3 in `samkit segment` and `samkit auto`: which family the arguments name, the checks of
the SAM 3 options, and `samkit segment --text` / exemplar boxes.

`samkit segment IMAGE --text dog [--text cat] [--box X0,Y0,X1,Y1[,LABEL]] [--threshold T]`
writes, in `--out`:

- `<stem>_mask_<i>.png`: one 1-bit mask per instance (`samkit.io.masks.mask_png_bytes`), in the
  order of the COCO annotations (concept by concept, by descending score);
- `<stem>_instances.png`: the instance label image, 0 background, i + 1 for `<stem>_mask_<i>`
  (8-bit, 16-bit above 255 instances; where masks overlap the higher score wins);
- `<stem>_overlay.png`: the instances over the image, with the exemplar boxes;
- `<stem>.json`: COCO (`samkit.amg.io.write_coco_json`): one category per `--text` (the prompt
  as its name; "visual" for boxes alone), per instance its `score`, RLE `segmentation`, toBbox
  `bbox`, `area` and the detector's `box_xyxy`; the settings under `images[0].samkit`.

Every file is written atomically, the JSON last. Clicks (`--point`) on a SAM 3 model go through
its interactive head in `samkit.cli.commands.cmd_segment`, as SAM 1 / SAM 2 clicks do.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samkit.amg.io import render_overlay, write_coco_json
from samkit.amg.sam3 import Sam3ConceptGenerator, check_exemplar_boxes, sam3_state_from_embedding
from samkit.cli.amgopts import AMG_OPTIONS
from samkit.cli.common import (
    FAMILY_NAMES,
    CliError,
    _model_from_args,
    families_with,
    model_family,
)
from samkit.cli.embedding_args import checked_embedding
from samkit.cli.imageopts import image_max_pixels, image_stretch
from samkit.cli.sam3opts import OFFICIAL_THRESHOLD
from samkit.io.atomic import atomic_write_bytes
from samkit.io.images import decode_image
from samkit.io.masks import mask_png_bytes, png_bytes
from samkit.io.overlay import draw_prompts
from samkit.io.rle import segmentation_to_mask

_USE_SAM3 = "--model sam3 with --checkpoint sam3.pt (or only a sam3.pt --checkpoint)"


def _name_family(args: argparse.Namespace) -> str:
    """The model family of the arguments; `--text` without `--model` / `--checkpoint` means
    `--model sam3` (set on `args`)."""
    if args.text and args.model is None and args.checkpoint is None:
        args.model = "sam3"
    return model_family(args.model, args.checkpoint)


def _check_prompts(texts: list[str]) -> None:
    seen: set[str] = set()
    for t in texts:
        if t in seen:
            raise CliError(f"--text {t!r} is given twice (each --text is one category)")
        seen.add(t)


def segment_family(args: argparse.Namespace) -> str:
    """Check `samkit segment`'s prompts against the model family (CliError naming what to use
    instead) and return the family."""
    family = _name_family(args)
    labelled = [b for b in args.box if len(b) == 5]
    if family not in families_with("concepts"):
        name = FAMILY_NAMES.get(family, family)
        if args.text:
            raise CliError(
                f"--text needs a SAM 3 model ({_USE_SAM3}); this is a {name} model, which "
                "segments what --point / --box prompts point at"
            )
        if args.threshold is not None:
            raise CliError(
                f"--threshold is SAM 3's confidence threshold (with --text or exemplar boxes; "
                f"{_USE_SAM3}); {name} models take none"
            )
        if labelled:
            raise CliError(
                "--box X0,Y0,X1,Y1,LABEL: a LABEL marks a SAM 3 exemplar box; a "
                f"{name} box is X0,Y0,X1,Y1"
            )
        return family
    if args.point:
        if args.text:
            raise CliError(
                "--point and --text: clicks go through SAM 3's interactive head (one object per "
                "prompt), --text through its detector (every instance); run them separately"
            )
        if args.threshold is not None or labelled:
            raise CliError(
                "with --point, SAM 3 answers clicks (and unlabelled --box X0,Y0,X1,Y1) as SAM 1 "
                "/ SAM 2 do: --threshold and box LABELs apply to --text / exemplar boxes only"
            )
        return family
    if not args.text and not args.box:
        raise CliError(
            "give --text PHRASE (repeatable) and / or --box X0,Y0,X1,Y1[,LABEL] exemplars, or "
            "--point X,Y[,LABEL] for clicks"
        )
    if args.multimask:
        raise CliError(
            "--multimask applies to clicks (--point); --text / exemplar boxes give one mask per "
            "instance"
        )
    _check_prompts(args.text)
    return family


def auto_concept_kwargs(args: argparse.Namespace) -> dict[str, Any] | None:
    """`samkit auto`'s SAM 3 settings (`samkit.jobs.make_generator`'s `text_prompts`,
    `confidence_threshold`), or None for a SAM 1 / SAM 2 run; CliError for options that do not
    fit the model."""
    family = _name_family(args)
    if family not in families_with("concepts"):
        flags = (("--text", bool(args.text)), ("--threshold", args.threshold is not None))
        given = [flag for flag, on in flags if on]
        if given:  # name only what was given: --threshold alone is not "drop --text"
            what = f"{given[0]} needs" if len(given) == 1 else f"{' / '.join(given)} need"
            why = " (SAM 3's text-prompt score threshold)" if given == ["--threshold"] else ""
            raise CliError(
                f"{what} a SAM 3 model{why} ({_USE_SAM3}); "
                f"{FAMILY_NAMES.get(family, family)} models label everything without a prompt: "
                f"drop {' and '.join(given)}"
            )
        return None
    if not args.text:
        raise CliError(
            "a SAM 3 model labels concepts: give --text PHRASE (repeatable, one category each)"
        )
    _check_prompts(args.text)
    changed = [f"--{n.replace('_', '-')}" for n, _, d, _ in AMG_OPTIONS if getattr(args, n) != d]
    if getattr(args, "use_m2m", False):
        changed.append("--use-m2m")
    if changed:
        raise CliError(
            f"{', '.join(changed)}: SAM 1 / SAM 2 automatic-mask options; SAM 3 --text takes "
            "--threshold only"
        )
    if args.format != "coco":
        raise CliError(
            f"--format {args.format}: SAM 3 concepts need categories, which only the coco "
            "layout has"
        )
    t = OFFICIAL_THRESHOLD if args.threshold is None else args.threshold
    return {"text_prompts": list(args.text), "confidence_threshold": t}


def segment_concepts(args: argparse.Namespace) -> int:
    """`samkit segment --text ... / --box exemplars` on a SAM 3 model (outputs: module doc)."""
    image = decode_image(args.image, max_pixels=image_max_pixels(args), stretch=image_stretch(args))
    h, w = image.shape[:2]
    try:
        boxes = check_exemplar_boxes(args.box, h, w)
    except ValueError as e:
        raise CliError(f"--box: {e}") from None
    lm = _model_from_args(args, families=families_with("concepts"))
    threshold = OFFICIAL_THRESHOLD if args.threshold is None else args.threshold
    generator = Sam3ConceptGenerator(lm.model, args.text, threshold, boxes)
    state = _embedding_state(args, lm, image) if args.embedding else None
    records = generator.generate(image, state)
    masks = [segmentation_to_mask(r["segmentation"]) for r in records]

    out = Path(args.out)
    name = Path(args.image).name
    stem = Path(args.image).stem
    files = [f"{stem}_mask_{i}.png" for i in range(len(records))]
    for f, m in zip(files, masks):
        atomic_write_bytes(out / f, mask_png_bytes(m))
    _remove_stale_masks(out, stem, len(records))
    atomic_write_bytes(out / f"{stem}_instances.png", _label_png(masks, records, h, w))
    overlay = draw_prompts(render_overlay(image, records), boxes=[b[:4] for b in boxes])
    atomic_write_bytes(out / f"{stem}_overlay.png", png_bytes(overlay))
    settings = {
        "model": lm.name,
        "random_weights": lm.random_weights,
        "text": list(args.text),
        "boxes": [[*b[:4], int(b[4])] for b in boxes],
        "confidence_threshold": threshold,
        "masks": files,
        "instances": f"{stem}_instances.png",
        "overlay": f"{stem}_overlay.png",
    }
    info = {"image_id": 1, "file_name": name, "height": h, "width": w, "samkit": settings}
    write_coco_json(out / f"{stem}.json", info, records, categories=generator.categories)

    names = {c["id"]: c["name"] for c in generator.categories}
    for f, r in zip(files, records):
        print(f"{out / f}  {names[r['category_id']]}  score {r['score']:.3f}  area {r['area']}")
    if not records:
        print(f"samkit segment: {generator.empty_reason(True)}", file=sys.stderr)
    for f in (f"{stem}_instances.png", f"{stem}.json", f"{stem}_overlay.png"):
        print(out / f)
    return 0


def _embedding_state(args: argparse.Namespace, lm: Any, image: np.ndarray) -> dict[str, Any]:
    """The processor state of a `samkit embed` file of this image and model (CliError when it
    is another family's, image's or architecture's)."""
    emb = checked_embedding(args, lm, image)
    return sam3_state_from_embedding(emb, lm.model)  # provenance checked (ValueError)


def _label_png(masks: list[np.ndarray], records: list[dict[str, Any]], h: int, w: int) -> bytes:
    """The instance label image as PNG bytes: 0 background, i + 1 for instance i; overlapping
    pixels take the higher-scoring instance (8-bit up to 255 instances, else 16-bit)."""
    dtype = np.uint8 if len(masks) <= 255 else np.uint16
    label = np.zeros((h, w), dtype=dtype)
    for i in np.argsort([r["score"] for r in records], kind="stable"):
        label[masks[i]] = i + 1  # ascending score: the highest is painted last
    return png_bytes(Image.fromarray(label))  # mode L or I;16


def _remove_stale_masks(out: Path, stem: str, n: int) -> None:
    """Delete `<stem>_mask_<j>.png` with j >= n, left by an earlier run that found more."""
    pattern = re.compile(rf"{re.escape(stem)}_mask_(\d+)\.png")
    if not out.is_dir():
        return
    for f in out.iterdir():
        m = pattern.fullmatch(f.name)
        if m and int(m.group(1)) >= n:
            f.unlink(missing_ok=True)
