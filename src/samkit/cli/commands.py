"""The built-in `samkit` commands: segment, auto, embed, download, serve (info: `cli.info`)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from samkit.amg.io import render_overlay
from samkit.amg.report import cli_flag
from samkit.checkpoint import CheckpointUnavailableError, default_cache_dir, fetch_checkpoint
from samkit.checkpoint.download import download_advice
from samkit.cli.amgopts import AMG_OPTIONS as _AMG_OPTIONS
from samkit.cli.amgopts import crop_layers_warnings
from samkit.cli.argparsing import print_warnings, prompt_warnings
from samkit.cli.common import (
    FAMILY_NAMES,
    CliError,
    _image_files,
    _model_from_args,
    _write_json,
    families_taking,
    families_with,
    out_folder,
    refuse_video,
    takes_setting,
)
from samkit.cli.distributed import run_on_ray
from samkit.cli.embedding_args import checked_embedding, model_from_embedding
from samkit.cli.imageopts import image_max_pixels, image_stretch
from samkit.cli.info import family_checkpoint
from samkit.cli.sam3_commands import auto_concept_kwargs, segment_concepts, segment_family
from samkit.cli.video import serve_models
from samkit.io.images import decode_image
from samkit.io.masks import atomic_write_bytes, mask_png_bytes, mask_records, png_bytes
from samkit.io.overlay import draw_prompts
from samkit.io.progress import Progress
from samkit.jobs import (
    AutoJob,
    EmbedJob,
    image_ids,
    make_generator,
    make_predictor,
    remove_stale_temporaries,
    settled_amg_kwargs,
)
from samkit.server.listen import listen_socket
from samkit.server.threads import run_in_fresh_thread
from samkit.server.video_session import VideoLimits


def cmd_segment(args: argparse.Namespace) -> int:
    refuse_video(args.image)  # before a model loads: `samkit track` segments videos
    model_from_embedding(args)  # no --model: the one the --embedding file names
    family = segment_family(args)  # SAM 3 options checked against the model family
    if family in families_with("concepts") and not args.point:
        return segment_concepts(args)  # --text / exemplar boxes: every instance
    if not args.point and not args.box:
        raise CliError(
            "give at least one --point X,Y[,LABEL] or --box X0,Y0,X1,Y1, or --text PHRASE to "
            "find every instance of a noun phrase (SAM 3)"
        )
    image = decode_image(args.image, max_pixels=image_max_pixels(args), stretch=image_stretch(args))
    out = out_folder(args.out, make=False)  # an existing file is refused before the model loads
    print_warnings("segment", prompt_warnings(args.point, args.box, *image.shape[:2]))
    lm = _model_from_args(args, families=families_with("predictor"))  # SAM 3: clicks
    predictor = make_predictor(lm.model, lm.family)
    if args.embedding:
        emb = checked_embedding(args, lm, image)
        emb.apply(predictor)
    else:
        predictor.set_image(image)

    points = np.array([p[:2] for p in args.point], dtype=np.float64) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    boxes = np.array(args.box, dtype=np.float64) if args.box else None
    masks, scores, _ = predictor.predict(
        point_coords=points,
        point_labels=labels,
        box=boxes,
        multimask_output=args.multimask,
    )
    masks, scores = np.asarray(masks).astype(bool), np.asarray(scores, dtype=np.float64)
    if masks.ndim == 3:  # one prompt set -> a box axis of 1
        masks, scores = masks[None], scores[None]

    stem = Path(args.image).stem
    records = []
    flat_masks = masks.reshape(-1, *masks.shape[-2:])
    flat_records = mask_records(flat_masks, scores.reshape(-1).tolist())
    for i, rec in enumerate(flat_records):
        b, c = divmod(i, masks.shape[1])
        name = f"{stem}_mask_{i}.png"
        atomic_write_bytes(out / name, mask_png_bytes(flat_masks[i]))
        records.append({"id": i, "file": name, "box_index": b, "candidate": c, **rec})

    best = [b * masks.shape[1] + int(np.argmax(scores[b])) for b in range(masks.shape[0])]
    overlay = render_overlay(image, [{"segmentation": flat_masks[i], "area": 0} for i in best])
    overlay = draw_prompts(
        overlay,
        points.tolist() if points is not None else (),
        labels.tolist() if labels is not None else (),
        boxes.tolist() if boxes is not None else (),
    )
    atomic_write_bytes(out / f"{stem}_overlay.png", png_bytes(overlay))
    doc = {
        "image": {
            "file_name": Path(args.image).name,
            "height": image.shape[0],
            "width": image.shape[1],
        },
        "model": lm.name,
        "random_weights": lm.random_weights,
        "prompt": {
            "points": [] if points is None else points.tolist(),
            "labels": [] if labels is None else labels.tolist(),
            "boxes": [] if boxes is None else boxes.tolist(),
            "multimask": bool(args.multimask),
        },
        "overlay": f"{stem}_overlay.png",
        "overlay_shows": best,
        "masks": records,
    }
    _write_json(out / f"{stem}.json", doc)
    for r in records:
        print(f"{out / r['file']}  score {r['score']:.3f}  area {r['area']}")
    print(f"{out / (stem + '.json')}\n{out / (stem + '_overlay.png')}")
    return 0


# ------------------------------------------------------------------------------------ auto


class _AutoProgress(Progress):
    """`samkit auto`'s progress: images done / total, images/s, ETA, and per image its masks,
    the masks so far and masks per second of work (the one reporter, `samkit.io.progress`)."""

    heartbeat_s = 10.0  # off a terminal, the least seconds between two lines within an image

    def __init__(self, total: int, enabled: bool = True) -> None:
        super().__init__(total, "auto", "images", enabled=enabled)
        self.masks, self.busy_s = 0, 0.0

    def image_done(self, name: str, masks: int, seconds: float, status: str) -> None:
        self.masks += masks
        self.busy_s += seconds
        rate = self.masks / self.busy_s if self.busy_s > 0 else 0.0
        self.update(1, f"{self.masks} masks | {rate:.1f} masks/s | {name}: {status}")

    def within(self, name: str) -> Any:
        """The generator's `progress(done, total, stage)` for image `name`: its crop and batch
        shown while it runs (crops make one image take minutes)."""

        def report(done: int, total: int, stage: str) -> None:
            if stage != "done":
                note = f"{self.masks} masks | {name}: {stage}, batch {done}/{total}"
                self.working(note, self.heartbeat_s)

        return report


def cmd_auto(args: argparse.Namespace) -> int:
    concepts = auto_concept_kwargs(args)  # SAM 3 --text: its settings instead of the AMG's
    amg_kwargs = concepts or {name: getattr(args, name) for name, *_ in _AMG_OPTIONS}
    if not concepts:  # a negative count refused, a costly one said, before the model loads
        crops = (args.crop_n_layers, args.points_per_side, args.crop_n_points_downscale_factor)
        print_warnings("auto", crop_layers_warnings(*crops))
    if getattr(args, "use_m2m", False):
        amg_kwargs["use_m2m"] = True
    if getattr(args, "ray", False):
        return run_on_ray(args, "auto", amg_kwargs)
    files = list(dict.fromkeys(_image_files(args.inputs)))  # a file given twice is done once
    ids = image_ids([f.name for f in files])  # COCO ids: by file name, as with --ray
    out = out_folder(args.out)
    lm = _model_from_args(args, families=families_with("concepts" if concepts else "amg_generator"))
    if "use_m2m" in amg_kwargs and not takes_setting(lm.family, "use_m2m"):
        raise CliError(
            f"--use-m2m needs a {' or '.join(FAMILY_NAMES[f] for f in families_taking('use_m2m'))}"
            " model"
        )
    try:  # SamAutomaticMaskGenerator or Sam2AutomaticMaskGenerator, by model family
        generator = make_generator(lm.model, lm.family, amg_kwargs)
    except ValueError as e:  # the generator's words name its arguments; say the flags
        names = "|".join(sorted(amg_kwargs, key=len, reverse=True))
        raise CliError(re.sub(rf"\b({names})\b", lambda m: cli_flag(m[1]), str(e))) from None
    amg_kwargs = settled_amg_kwargs(generator, amg_kwargs)
    job = AutoJob.create(
        out,
        lm.name,
        lm.random_weights,
        amg_kwargs,
        image_stretch(args),
        args.format,
        max_pixels=image_max_pixels(args),
    )
    remove_stale_temporaries(out, [n for f in files for n in job.output_names(f.stem)])
    try:
        job.start_run([f.name for f in files])
    except ValueError as e:
        raise CliError(str(e)) from None

    progress = _AutoProgress(len(files), enabled=not args.quiet)
    failed: list[tuple[Path, str]] = []
    skipped = 0
    for f in files:
        if not args.overwrite and job.is_complete(f.stem):
            skipped += 1
            progress.image_done(f.name, 0, 0.0, "done already, skipped")
            continue
        t = time.perf_counter()
        if hasattr(generator, "progress"):
            generator.progress = progress.within(f.name)
        try:
            n_masks = job.run(generator, f, f.name, ids[f.name])
        except (ValueError, OSError, RuntimeError) as e:
            failed.append((f, f"{type(e).__name__}: {e}"))
            progress.image_done(f.name, 0, time.perf_counter() - t, "FAILED")
            print(f"samkit auto: {f}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        progress.image_done(f.name, n_masks, time.perf_counter() - t, f"{n_masks} masks")
        if not n_masks:
            reason = generator.empty_reason(cli_flag)
            print(f"samkit auto: {f}: {reason or '0 masks'}", file=sys.stderr, flush=True)
    progress.close()

    failed_files = {f for f, _ in failed}
    dataset = job.write_dataset([(ids[f.name], f.name) for f in files if f not in failed_files])
    done = len(files) - skipped - len(failed)
    print(
        f"{done} image{'s' if done != 1 else ''} segmented, {skipped} skipped (already "
        f"complete), {len(failed)} failed; "
        f"outputs in {out}; COCO dataset {dataset}"
    )
    for f, msg in failed:
        print(f"  failed: {f}: {msg}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------ embed


def cmd_embed(args: argparse.Namespace) -> int:
    if getattr(args, "ray", False):
        return run_on_ray(args, "embed")
    files = _image_files(args.inputs)
    out = out_folder(args.out)
    lm = _model_from_args(args, families=families_with("predictor"))
    job = EmbedJob(
        out, lm.name, lm.family, lm.img_size(), image_stretch(args), image_max_pixels(args)
    )
    remove_stale_temporaries(out, [n for f in files for n in job.output_names(f.stem)])
    predictor = make_predictor(lm.model, lm.family)
    failed = 0
    for f in files:
        dest = job.output(f.stem)
        if not args.overwrite and job.is_complete(f.stem):
            print(f"{dest} (exists, skipped)")
            continue
        try:
            job.run(predictor, f, f.name)
        except (ValueError, OSError, RuntimeError) as e:
            failed += 1
            print(f"samkit embed: {f}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        print(dest)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------ download / info


def cmd_download(args: argparse.Namespace) -> int:
    own = family_checkpoint(args.variant)  # a family named as a whole (sam3): a gated file
    if own is not None:
        file, url = own
        path = Path(args.cache_dir or default_cache_dir()) / file
        if not path.is_file():
            raise CliError(
                f"{args.variant}: samkit does not download {file} (Meta gates it): request "
                f"access at {url}, download {file} and put it at {path}, or pass its path as "
                "--checkpoint PATH"
            )
        print(path)
        return 0
    try:
        path = fetch_checkpoint(args.variant, args.cache_dir, progress=True)
    except CheckpointUnavailableError as e:  # its advice (--random-weights) is for other commands
        raise CliError(download_advice(args.variant, e.url, e.path, e.reason)) from None
    print(path)
    return 0


# ------------------------------------------------------------------------------------ serve


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from samkit.server.app import create_app
    except ImportError as e:
        raise CliError(
            f"samkit serve needs the [server] extra: pip install 'samkit[server]' ({e})"
        ) from None
    video_limits = _video_limits(args)
    sock = listen_socket(args.host, args.port)  # a busy port fails here, before the URL
    try:
        # Built off the main thread, so that only the app's decoding thread keeps torch threads.
        # SAM 3: clicks through its interactive head and the Find box (phrases)
        # SAM 3: + its tracker, from the same read of the checkpoint
        lm, video = run_in_fresh_thread(serve_models, args, families_with("predictor"))
        app = create_app(
            lm,
            video_predictor=video,
            cache_bytes=int(args.cache_mb * 2**20),
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            stretch=image_stretch(args),
            video_limits=video_limits,
        )
        print(
            f"samkit serve: {lm.name} on http://{args.host}:{sock.getsockname()[1]}/",
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _video_limits(args: argparse.Namespace) -> Any:
    """The web app's video limits from `--max-video-*` and `--video-idle-minutes` (CliError when
    out of range)."""
    try:
        return VideoLimits(
            max_bytes=int(args.max_video_mb * 2**20),
            max_frames=args.max_video_frames,
            max_seconds=args.max_video_seconds,
            max_sessions=args.max_video_sessions,
            idle_s=args.video_idle_minutes * 60,
        )
    except ValueError as e:
        raise CliError(f"--max-video-* / --video-idle-minutes: {e}") from None


# ------------------------------------------------------------------------------------ parser
