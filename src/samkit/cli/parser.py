"""The `samkit` argument parser, built without importing the commands' work.

Every module this one imports is light (standard library and samkit's own option helpers), so
`samkit --help`, `--version`, each command's `--help` and every usage error answer without
importing numpy, PIL or torch. A command's function is named as a "module:function" string and
imported only when that command runs (`samkit.cli.main`).
"""

from __future__ import annotations

import argparse
import contextlib

from samkit.cli.amgopts import add_amg_args
from samkit.cli.argparsing import DefaultsHelpFormatter, SamkitArgumentParser
from samkit.cli.common import _add_model_args, _point
from samkit.cli.distributed import add_ray_args
from samkit.cli.imageopts import add_image_args
from samkit.cli.sam3opts import add_sam3_args, labelled_box
from samkit.io.limits import SERVER_DEFAULT_MAX_PIXELS

_COMMANDS = "samkit.cli.commands"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `samkit` command line (all sub-commands; `args.func` is a callable or
    a "module:function" string, see `samkit.cli.run_command`)."""
    parser = SamkitArgumentParser(
        prog="samkit",
        description="Segment Anything (SAM 1 / SAM 2 / SAM 3): segment, auto, embed, serve.",
    )
    parser.add_argument("--version", action="version", version=f"samkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = DefaultsHelpFormatter

    p = sub.add_parser(
        "segment",
        help="masks for points / boxes on one image; SAM 3: every instance of --text",
        formatter_class=fmt,
    )
    p.add_argument("image", help="image file")
    p.add_argument(
        "--point",
        action="append",
        type=_point,
        default=[],
        metavar="X,Y[,LABEL]",
        help="a point in pixels; LABEL 1 foreground (default), 0 background; repeatable",
    )
    p.add_argument(
        "--box",
        action="append",
        type=labelled_box,
        default=[],
        metavar="X0,Y0,X1,Y1[,LABEL]",
        help="a box in pixels; repeatable (each box gets its own mask(s)). SAM 3 without "
        "--point: an exemplar of what to find, LABEL 1 positive (default) or 0 negative",
    )
    p.add_argument(
        "--multimask", action="store_true", help="3 candidate masks per prompt instead of 1"
    )
    p.add_argument(
        "--embedding",
        metavar="PATH",
        help="a `samkit embed` file for this image (skips the encoder)",
    )
    p.add_argument("--out", required=True, help="output folder")
    add_sam3_args(p)
    add_image_args(p)
    _add_model_args(p)
    p.set_defaults(func=f"{_COMMANDS}:cmd_segment")

    p = sub.add_parser(
        "auto", help="segment everything in many images (resumable)", formatter_class=fmt
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument(
        "--out", required=True, help="output folder: <stem>.json + <stem>_overlay.png per image"
    )
    p.add_argument(
        "--format",
        choices=["coco", "sa1b"],
        default="coco",
        help="<stem>.json layout: coco = a COCO instance-segmentation file (images, annotations "
        "with RLE masks, categories; loads with pycocotools.coco.COCO), sa1b = Meta's SA-1B "
        "per-image layout (image + annotations; not loadable by COCO tools). Default: coco",
    )
    add_amg_args(p)
    p.add_argument(
        "--overwrite", action="store_true", help="recompute images whose outputs are complete"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_image_args(p)
    p.add_argument("--use-m2m", action="store_true", help="SAM 2: refine each mask once more")
    add_sam3_args(p)
    _add_model_args(p)
    add_ray_args(p)
    p.set_defaults(func=f"{_COMMANDS}:cmd_auto")

    p = sub.add_parser(
        "embed", help="precompute image embeddings (.safetensors)", formatter_class=fmt
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", required=True, help="output folder: <stem>.safetensors")
    p.add_argument("--overwrite", action="store_true", help="recompute existing embeddings")
    add_image_args(p)
    _add_model_args(p)
    add_ray_args(p)
    p.set_defaults(func=f"{_COMMANDS}:cmd_embed")

    p = sub.add_parser("download", help="download a variant's official checkpoint into the cache")
    p.add_argument("variant", help="variant name (see `samkit info`)")
    p.add_argument("--cache-dir", help="cache folder (default: $SAMKIT_CACHE or ~/.cache/samkit)")
    p.set_defaults(func=f"{_COMMANDS}:cmd_download")

    p = sub.add_parser("info", help="variants, cache folder and which checkpoints are present")
    p.add_argument("--cache-dir", help="cache folder to inspect")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="samkit.cli.info:cmd_info")

    p = sub.add_parser("serve", help="the interactive web app", formatter_class=fmt)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only by default)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--cache-mb", type=float, default=1024, help="embedding cache bound (MiB)")
    p.add_argument("--max-upload-mb", type=float, default=32, help="largest accepted upload (MiB)")
    p.add_argument("--max-video-mb", type=float, default=64, help="largest video upload (MiB)")
    p.add_argument("--max-video-seconds", type=float, default=60, help="longest video (seconds)")
    p.add_argument("--max-video-frames", type=int, default=600, help="most frames of a video")
    p.add_argument(
        "--max-video-sessions",
        type=int,
        default=4,
        help="videos open at once; when all are, a new one closes an idle one or gets 503",
    )
    p.add_argument(
        "--video-idle-minutes",
        type=float,
        default=10,
        help="how long an unused video keeps its slot when the slots are full",
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    add_image_args(p, max_pixels_default=SERVER_DEFAULT_MAX_PIXELS)
    _add_model_args(p)
    p.set_defaults(func=f"{_COMMANDS}:cmd_serve")

    with contextlib.suppress(ImportError):
        from samkit.cli.export import add_parser as add_export

        add_export(sub)
    with contextlib.suppress(ImportError):
        from samkit.cli.train import add_parsers as add_train

        add_train(sub)
    from samkit.cli.video import add_parsers as add_video  # track, eval-video

    add_video(sub)
    parser.description = f"Segment Anything (SAM 1 / SAM 2 / SAM 3): {', '.join(sub.choices)}."
    return parser


def _version() -> str:
    import samkit  # its public API is imported lazily: this reads only __version__

    return samkit.__version__
