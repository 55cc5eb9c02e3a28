"""`samkit track` and `samkit eval-video`: video tracking (SAM 2 objects, SAM 3 concepts) and
DAVIS-style evaluation.

Registered by `samkit.cli` through `add_parsers(subparsers)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samkit.build.loaded import official_checkpoint
from samkit.build.registry import get_family, is_config_path
from samkit.cli.common import (
    DTYPES,
    FAMILY_NAMES,
    RANDOM_WARNING,
    CliError,
    _add_model_args,
    _model_from_args,
    families_with,
    model_family,
    refuse_family,
)
from samkit.cli.model_errors import load_message
from samkit.cli.sam3opts import add_track_concept_args
from samkit.configs.sam3_thresholds import best_candidate_note, suggested_threshold
from samkit.io.provenance import with_article

# samkit.runtime / samkit.video (torch; video.eval also scipy) are imported inside the command
# functions: `samkit.cli.parser` imports this module to build the parser, and `--help` imports
# no torch.


def _sam2_model_help(p: Any) -> None:
    """Video commands need a video model: say so in `--model`'s help (no vit_b default)."""
    for action in p._actions:
        if "--model" in action.option_strings:
            action.help = (
                "a SAM 2 / 2.1 variant (e.g. sam2.1_hiera_t) or a SAM 2 config.json (then "
                "also --checkpoint), or sam3 (concepts: --text); optional with --checkpoint of "
                "an official size (inferred)"
            )


def add_parsers(sub: Any) -> None:
    """Add the `track` and `eval-video` commands to the `samkit` subparsers."""
    p = sub.add_parser(
        "track",
        help="track objects (SAM 2) or every instance of a concept (SAM 3) through a video: "
        "palette PNGs, JSON, overlay MP4",
        description="Prompt objects on some frames and track them through the video. Writes "
        "OUT/masks/<frame>.png (palette PNGs, pixel = object id), OUT/annotations.json "
        "(YouTube-VIS style, COCO RLE) and OUT/overlay.mp4, each atomically.",
    )
    p.add_argument("video", help="a video file (MP4, MOV, WebM, AVI, MKV) or a folder of frames")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("prompts (repeatable; frame indices from 0, pixel coordinates)")
    g.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="FRAME:OBJ:X,Y[,LABEL]",
        help="a click; LABEL 1 foreground (default) or 0 background",
    )
    g.add_argument("--box", action="append", default=[], metavar="FRAME:OBJ:X0,Y0,X1,Y1")
    g.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="FRAME:OBJ:PNG",
        help="a mask of the frame's size: a label PNG (palette; pixels == OBJ, one of its ids; "
        "'*' takes every id) or a binary mask (one channel: 0 and one other value)",
    )
    g.add_argument("--prompts", metavar="JSON", help="a JSON list of prompts (see the README)")
    t = p.add_argument_group("tracking")
    t.add_argument(
        "--start-frame",
        type=int,
        default=None,
        help="first frame to track from "
        "(default: the first prompted frame; the last one with --reverse)",
    )
    t.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="track at most N frames per direction, the start frame included: N mask PNGs "
        "(2N-1 with --both-directions, which share the start frame), fewer where the video "
        "ends first (default: to the end)",
    )
    d = t.add_mutually_exclusive_group()
    d.add_argument("--reverse", action="store_true", help="track backwards from the start frame")
    d.add_argument("--both-directions", action="store_true", help="track forwards, then backwards")
    p.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="overlay frame rate (default: the video's, 24 for frame folders)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_track_concept_args(p)
    _add_model_args(p)
    _sam2_model_help(p)
    p.set_defaults(func=cmd_track)

    p = sub.add_parser(
        "eval-video",
        help="semi-supervised VOS evaluation (J, F, J&F) on a DAVIS-layout folder",
        description="Prompts each video of DATA with its first frame's ground-truth masks, "
        "tracks the rest and scores J, F and J&F as the DAVIS 2017 evaluation does. Writes "
        "OUT/<video>/<frame>.png, OUT/metrics.json and OUT/metrics.png.",
    )
    p.add_argument("--data", required=True, help="folder with JPEGImages/ and Annotations/")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--videos", default=None, help="comma-separated video names (default: all)")
    p.add_argument(
        "--resolution",
        default=None,
        help="resolution subfolder, e.g. 480p (default: 480p when present)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_model_args(p)
    _sam2_model_help(p)
    p.set_defaults(func=cmd_eval_video)


def load_video_predictor(args: argparse.Namespace, **settings: Any) -> Any:
    """The video predictor of the model's family (registry slot `video_predictor`: SAM 2's
    `samkit.build_sam2_video_predictor`, SAM 3's `samkit.video.track_concepts.ConceptTracker`)
    from the common model arguments; `settings` go to the builder (SAM 3's thresholds)."""
    from samkit.runtime.accel import tune_malloc

    tune_malloc()
    model, checkpoint, random_weights = args.model, args.checkpoint, args.random_weights
    if checkpoint is not None and random_weights:
        raise CliError("--checkpoint and --random-weights exclude each other")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CliError(f"--checkpoint {checkpoint}: no such file")
    if model is None and checkpoint is None:
        raise CliError(
            f"{args.command} needs --model: a SAM 2 variant (e.g. sam2.1_hiera_t) or "
            "a SAM 2 config.json (or only --checkpoint of an official SAM 2 / 2.1 size)"
        )
    video = families_with("video_predictor")
    fam = get_family(model_family(model, checkpoint))
    if not fam.has("video_predictor"):
        if fam.has("concepts"):  # named, with where it works
            refuse_family(fam.name, video, args.command)
        what = "checkpoint" if model is None else "model config" if is_config_path(model) else ""
        given = f"--checkpoint {checkpoint}" if model is None else f"--model {model}"
        example = " or ".join(m for m in (get_family(f).default_model for f in video) if m)
        raise CliError(
            f"{given}: video tracking needs {with_article(' or '.join(FAMILY_NAMES[f] for f in video))} "
            f"{what or 'variant'} (e.g. --model {example}), not {with_article(fam.display)} one"
        )
    config = model is not None and is_config_path(model)
    if config and checkpoint is None and not random_weights:
        raise CliError(f"--model {model} is a config file: also pass --checkpoint PATH")
    if random_weights and fam.has("concepts"):  # its tracker is read off the checkpoint only
        raise CliError(
            f"{fam.display} video tracking needs a checkpoint with the tracker's weights "
            "(sam3.pt): --random-weights builds only the image model, for `samkit segment` / "
            "`samkit auto --text` smoke tests; pass --checkpoint PATH instead"
        )
    checkpoint = official_checkpoint(model, checkpoint, random_weights)
    if random_weights:
        print(RANDOM_WARNING, file=sys.stderr, flush=True)
    import torch

    build = fam.load("video_predictor")
    dtype = None if args.dtype is None else getattr(torch, DTYPES[args.dtype])
    try:
        return build(model, checkpoint=checkpoint, device=args.device, dtype=dtype, **settings)
    except ValueError as e:  # worded as `samkit segment` words it (key reports summarised)
        raise CliError(load_message(fam.name, model, checkpoint, e)) from None


def serve_models(args: argparse.Namespace, families: tuple[str, ...]) -> tuple[Any, Any]:
    """The model `samkit serve` serves (a `LoadedModel`) and the video predictor it gives the
    web app when its family's is not built on the served model alone: a family with concepts
    and a video predictor (SAM 3) gets a `ConceptTracker` on the served model plus the
    checkpoint's tracker, both built from one read of the checkpoint (`--checkpoint`, or the
    cached file of `--model sam3`); None otherwise (SAM 2's is made from the model by the app)
    and for random weights (no tracker to load).

    Raises:
        CliError: as `samkit.cli.common.load_model`.
    """
    path, state = _served_checkpoint(args)
    loaded = _model_from_args(args, families, checkpoint_state=state)
    if not _tracks_concepts(loaded.family) or loaded.random_weights:
        return loaded, None
    from samkit.video.track_concepts import concept_tracker_on

    return loaded, concept_tracker_on(loaded.model, path, state=state)


def _tracks_concepts(family: str | None) -> bool:
    fam = None if family is None else get_family(family)
    return fam is not None and fam.has("concepts") and fam.has("video_predictor")


def _served_checkpoint(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any] | None]:
    """(the checkpoint file, its tensors read once) when `samkit serve` builds a video tracker
    from it too, or a checkpoint alone (read for its family, as `model_family` would;
    `.safetensors`: its key names first); no tensors otherwise or when the file cannot be
    read (`load_model` then says why)."""
    from samkit.build.family import checkpoint_family
    from samkit.checkpoint import default_cache_dir, read_state_dict
    from samkit.cli.info import family_checkpoint

    if args.random_weights:
        return None, None
    path = None if args.checkpoint is None else Path(args.checkpoint)
    if args.model is not None:
        if not _tracks_concepts(model_family(args.model)):
            return path, None
        named = family_checkpoint(args.model)  # `sam3`: its file in the cache
        if path is None and named is not None:
            path = default_cache_dir() / named[0]
    if path is None or not path.is_file():
        return path, None
    if path.suffix.lower() == ".safetensors" and not _tracks_concepts(checkpoint_family(path)):
        return path, None
    try:
        return path, read_state_dict(path)
    except ValueError:
        return path, None


def _prompts_from_args(args: argparse.Namespace, n: int, h: int, w: int) -> list:
    from samkit.video.track_prompts import (
        load_prompts_json,
        parse_box,
        parse_mask,
        parse_point,
        resolve_prompts,
    )

    raws = [parse_point(s) for s in args.point] + [parse_box(s) for s in args.box]
    raws += [parse_mask(s) for s in args.mask]
    if args.prompts:
        raws += load_prompts_json(args.prompts)
    if not raws and (args.text or args.exemplar):
        return []  # concepts only
    return resolve_prompts(raws, n, h, w)


def _concept_prompts(args: argparse.Namespace, n: int, prompts: list) -> list:
    """The `--text` / `--exemplar` finds, checked against the model family (before it loads):
    a family with text concepts in its registry entry takes them and refuses `--box` (its boxes
    are exemplars) and `--mask`; other families refuse them. `--text` alone means that family's
    default model."""
    from samkit.video.track_prompts import ConceptPrompt

    concepts = families_with("concepts", "video_predictor")
    wants = bool(args.text or args.exemplar or args.threshold is not None)
    if wants and args.model is None and args.checkpoint is None and concepts:
        args.model = get_family(concepts[0]).default_model
    if args.model is None and args.checkpoint is None:
        return []  # load_video_predictor says what --model needs
    fam = get_family(model_family(args.model, args.checkpoint))
    if not fam.has("concepts"):
        if wants:
            flag = "--text" if args.text else "--exemplar" if args.exemplar else "--threshold"
            names = " / ".join(FAMILY_NAMES[f] for f in concepts) or "a concept model"
            raise CliError(
                f"{flag} needs a model that finds concepts ({names}, e.g. --model "
                f"{get_family(concepts[0]).default_model if concepts else 'sam3'}); "
                f"{with_article(fam.display)} model tracks the objects you click (--point / --box "
                "/ --mask)"
            )
        return []
    if any(p.box is not None for p in prompts):
        raise CliError(
            f"--box: {with_article(fam.display)} video model reads a box as an exemplar of a "
            "concept, not as one object: use --exemplar FRAME:X0,Y0,X1,Y1 (every instance like "
            "it is tracked)"
        )
    if any(p.mask is not None for p in prompts):
        raise CliError(
            f"--mask: {with_article(fam.display)} video model takes no "
            "mask prompts (official add_prompt: text, exemplar boxes, clicks); use --text, "
            "--exemplar or --point"
        )
    finds = [ConceptPrompt(args.text_frame, t, None) for t in args.text]
    finds += [ConceptPrompt(f, None, box, label) for f, box, label in args.exemplar]
    for c in finds:
        if not 0 <= c.frame < n:
            flag = "--text-frame" if c.text is not None else "--exemplar"
            raise CliError(f"{flag} {c.frame} is outside the video (frames 0..{n - 1})")
    return finds


def cmd_track(args: argparse.Namespace) -> int:
    from samkit.cli.track_notes import warn_hidden_prompts
    from samkit.video.frames.sources import open_video
    from samkit.video.track import frames_after_start, frames_to_track, track_video

    try:  # propagate_in_video's max_frame_num_to_track counts the frames after the start frame
        after_start = frames_after_start(args.max_frames, "--max-frames")
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.fps is not None and not args.fps > 0:
        raise CliError(f"--fps must be positive, got {args.fps}")
    path = Path(args.video)
    if not path.exists():
        raise CliError(f"VIDEO {args.video}: no such file or folder")
    try:
        src = open_video(path)  # checks the video before the model is loaded
    except (ValueError, ImportError) as e:
        raise CliError(f"VIDEO {str(e).removeprefix('video: ')}") from None
    n, h, w = len(src), src.video_height, src.video_width
    prompts = _prompts_from_args(args, n, h, w)
    finds = _concept_prompts(args, n, prompts)
    if args.start_frame is not None and not 0 <= args.start_frame < n:
        raise CliError(f"--start-frame {args.start_frame} is outside the video (frames 0..{n - 1})")
    reverse = args.reverse
    settings = {}
    if args.threshold is not None:  # official names of the SAM 3 video settings
        settings = {"score_threshold_detection": args.threshold, "new_det_thresh": args.threshold}
    predictor = load_video_predictor(args, **settings)
    src = open_video(path, int(getattr(predictor, "image_size", 1024)))
    direction = "both" if args.both_directions else "reverse" if reverse else "forward"
    if not args.quiet:
        pframes = [p.frame for p in prompts] + [f.frame for f in finds]
        total = frames_to_track(n, pframes, args.start_frame, after_start, reverse)
        n_obj = len({p.obj_id for p in prompts})
        what = f"{n_obj} object{'s' * (n_obj != 1)}" + (
            f", {len(finds)} concept{'s' * (len(finds) != 1)}" if finds else ""
        )
        print(
            f"{path.name}: {n} frames {w}x{h}, {what}, tracking {direction} "
            f"({total} frame{'s' * (total != 1)} per pass)",
            file=sys.stderr,
        )
    result = track_video(
        predictor,
        src,
        prompts,
        args.out,
        start_frame=args.start_frame,
        max_frames=after_start,
        direction=direction,
        overlay=not args.no_overlay,
        fps=args.fps,
        video_name=path.stem if path.is_file() else path.name,
        progress=not args.quiet,
        finds=finds,
    )
    if finds and not result["objects"]:
        hint = _nothing_found_hint(finds, args.threshold, result["masks"], result.get("best_score"))
        print(hint, file=sys.stderr)
    warn_hidden_prompts(result["annotations"], prompts, predictor)
    print(json.dumps(result, indent=1))
    return 0


def _nothing_found_hint(finds: list, threshold: float | None, masks: str, best: Any) -> str:
    """What to try when the concepts of `samkit track --text / --exemplar` matched no object on
    any frame (the outputs are still written, empty); `best`: the best detection score seen."""
    texts = [repr(c.text) for c in finds if c.text is not None]
    what = " or ".join(texts) if texts else "the exemplar"
    if len(texts) < len(finds) and texts:
        what += " or the exemplar"
    guess = suggested_threshold(best)  # below the best score: it would keep that candidate
    example = f" (e.g. {guess:g})" if guess is not None else ""
    if threshold is None:
        used = "default thresholds: detection score 0.5, 0.7 to start an instance"
        lower = f"a lower --threshold{example}"
    else:
        used, lower = f"--threshold {threshold:g}", f"a --threshold below {threshold:g}{example}"
    note = best_candidate_note(best, *((0.5, 0.7) if threshold is None else (threshold,)))
    used += f"; {note}" if note else ""
    return (
        f"samkit track: found no instance of {what} on any frame ({used}); the outputs "
        f"({masks}, annotations.json) are written but empty. Try {lower}, another phrase (a "
        "short noun phrase such as 'person' or 'red car'), or --text-frame "
        "on a frame where it is visible"
    )


def cmd_eval_video(args: argparse.Namespace) -> int:
    from samkit.video.eval.davis import read_davis
    from samkit.video.eval.evaluate import evaluate_davis, format_table

    videos = [v for v in args.videos.split(",") if v] if args.videos else None
    read_davis(args.data, videos, args.resolution)  # clear errors before the model loads
    predictor = load_video_predictor(args)
    doc = evaluate_davis(
        predictor, args.data, args.out, videos, args.resolution, progress=not args.quiet
    )
    print(format_table(doc))
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'metrics.png'}")
    return 0
