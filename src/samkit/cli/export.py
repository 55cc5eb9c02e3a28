"""`samkit export onnx`: write encoder.onnx and decoder.onnx for a SAM 1 or SAM 2 / 2.1 model.

samkit export onnx --model vit_b --out onnx_vit_b
samkit export onnx --model sam2.1_hiera_t --out onnx_sam2.1_t
samkit export onnx --model cfg.json --checkpoint sam.pth --out DIR --return-single-mask
samkit export onnx --model sam2.1_hiera_t --video --out onnx_video   # video tracking parts

With --video, a SAM 2-style video model (SAM 2 / 2.1, EfficientTAM) is written as its tracking
parts and a video.json manifest for samkit.export.ort_video.OnnxSam2VideoPredictor (see
samkit.export.sam2_video).

SAM 1 decoders have the official segment_anything ONNX interface; SAM 2 decoders the community
SAM 2 one (image_embed, high_res_feats_0, high_res_feats_1 from the encoder; no padding point
to append). See samkit.export.sam and samkit.export.sam2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from samkit.build.registry import get_family
from samkit.cli.common import CliError, _add_model_args, families_with, load_model

# `--opset`'s default as `--help` shows it; the exporter's DEFAULT_OPSET is not imported here
# (that module imports torch, and `--help` must not). tests/export checks that the two agree.
HELP_DEFAULT_OPSET = 17


def cmd_export_onnx(args: argparse.Namespace) -> int:
    try:
        import onnx
    except ImportError:
        raise CliError("ONNX export needs the onnx package: pip install 'samkit[onnx]'") from None
    if args.video:
        return _export_video(args)
    loaded = load_model(
        args.model,
        args.checkpoint,
        args.random_weights,
        None,
        families=families_with("exporter"),
        command="export onnx",
    )
    export = get_family(loaded.family).load("exporter")  # export_sam_onnx, export_sam2_onnx
    opset = {} if args.opset is None else {"opset": args.opset}  # None: the exporter's default
    paths = export(
        loaded.model,
        args.out,
        return_single_mask=args.return_single_mask,
        encoder=not args.decoder_only,
        **opset,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    if not args.quiet:
        graph = onnx.load(str(paths["decoder"]), load_external_data=False).graph
        hints = {"point_coords": " (BxNx2, resized frame)", "point_labels": " (BxN)"}
        inputs = ", ".join(i.name + hints.get(i.name, "") for i in graph.input)
        outputs = ", ".join(o.name for o in graph.output)
        print(f"decoder inputs: {inputs}; outputs: {outputs}", file=sys.stderr)
    return 0


def _export_video(args: argparse.Namespace) -> int:
    """`export onnx --video`: the family's video exporter (samkit.export.sam2_video)."""
    if args.return_single_mask or args.decoder_only:
        raise CliError(
            "--video writes every tracking part: drop --return-single-mask / --decoder-only"
        )
    loaded = load_model(
        args.model,
        args.checkpoint,
        args.random_weights,
        None,
        families=families_with("video_exporter"),
        command="export onnx --video",
    )
    export = get_family(loaded.family).load("video_exporter")
    opset = {} if args.opset is None else {"opset": args.opset}
    for name, path in export(loaded.model, args.out, **opset).items():
        print(f"{name}: {path}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Add `export onnx` to the `samkit` command's subparsers."""
    export = subparsers.add_parser("export", help="export a model (onnx)")
    sub = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    p = sub.add_parser(
        "onnx",
        help="encoder.onnx + decoder.onnx (SAM 1: official ONNX decoder interface; SAM 2: "
        "the community SAM 2 decoder interface)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="decoder outputs one mask instead of all 4 (SAM 1, official rule: the single-mask "
        "token with more than 2 points, else the best multimask output by predicted IoU, so "
        "OnnxSamPredictor refuses one point or a box alone with it; SAM 2: what "
        "predict(multimask_output=False) returns, with its stability-based choice)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset, 14..20 (default: {HELP_DEFAULT_OPSET})",
    )
    p.add_argument("--decoder-only", action="store_true", help="skip encoder.onnx")
    p.add_argument(
        "--video",
        action="store_true",
        help="export the video tracking parts (image encoder, mask decoder, memory attention, "
        "memory encoder) and video.json for OnnxSam2VideoPredictor (SAM 2 / EfficientTAM)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the written paths")
    p.set_defaults(func=cmd_export_onnx)
