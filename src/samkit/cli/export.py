"""`samkit export onnx`: write a model as ONNX files for onnxruntime.

What each family exports is read off its registry entry (`samkit.build.registry`: the
`exporter` / `onnx_predictor` and `video_exporter` / `onnx_video_predictor` slots), so `--help`
lists the families as they are registered (`export_help`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
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


def _names(slot: str, runner: str) -> list[str]:
    """ "SAM 1 (OnnxSamPredictor; e.g. --model vit_b)" for each family with `slot`."""
    out = []
    for f in families_with(slot):
        fam = get_family(f)
        cls = str(getattr(fam, runner) or "").rpartition(":")[2]
        example = f"; e.g. --model {fam.default_model}" if fam.default_model else ""
        out.append(f"{fam.display} ({cls}{example})" if cls else fam.display)
    return out


def export_help() -> str:
    """The description of `samkit export onnx --help`, from the registry's export slots."""
    image = "\n".join(f"  {n}" for n in _names("exporter", "onnx_predictor"))
    video = "\n".join(f"  {n}" for n in _names("video_exporter", "onnx_video_predictor"))
    notes = (
        "SAM 1-style decoders (OnnxSamPredictor, OnnxSamHQPredictor) have the official "
        "segment_anything ONNX interface; SAM 2-style ones the community SAM 2 one (image_embed "
        "and, where the model uses them, high_res_feats_0 / high_res_feats_1 from the encoder; "
        "no padding point to append). See samkit.export.sam, samkit.export.sam2 and "
        "samkit.export.sam2_video."
    )
    return (
        "`samkit export onnx`: write a model as ONNX files for onnxruntime.\n\n"
        "Image models: encoder.onnx + decoder.onnx, for the onnxruntime predictor named:\n"
        f"{image}\n"
        + textwrap.fill(
            "With --video, a video model's tracking parts (image encoder, mask decoder, memory "
            "attention, memory encoder) and video.json:",
            88,
        )
        + f"\n{video}\n\n"
        "samkit export onnx --model vit_b --out onnx_vit_b\n"
        "samkit export onnx --model sam2.1_hiera_t --out onnx_sam2.1_t\n"
        "samkit export onnx --model cfg.json --checkpoint sam.pth --out DIR --return-single-mask\n"
        "samkit export onnx --model sam2.1_hiera_t --video --out onnx_video\n\n"
        + textwrap.fill(notes, 88)
    )


def add_parser(subparsers: Any) -> None:
    """Add `export onnx` to the `samkit` command's subparsers."""
    export = subparsers.add_parser("export", help="export a model (onnx)")
    sub = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    image = " / ".join(get_family(f).display for f in families_with("exporter"))
    video = " / ".join(get_family(f).display for f in families_with("video_exporter"))
    p = sub.add_parser(
        "onnx",
        help=f"encoder.onnx + decoder.onnx ({image}); --video: the tracking parts ({video})",
        description=export_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="decoder outputs one mask instead of all 4 (SAM 1-style, official rule: the single-mask "
        "token with more than 2 points, else the best multimask output by predicted IoU, so "
        "OnnxSamPredictor refuses one point or a box alone with it; SAM 2-style: what "
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
        f"memory encoder) and video.json for onnxruntime ({video})",
    )
    p.add_argument("--quiet", action="store_true", help="print only the written paths")
    p.set_defaults(func=cmd_export_onnx)
