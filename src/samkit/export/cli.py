"""`samkit export onnx`: write encoder.onnx and decoder.onnx for a SAM 1 model.

samkit export onnx --model vit_b --out onnx_vit_b
samkit export onnx --model cfg.json --checkpoint sam.pth --out DIR --return-single-mask
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from samkit.cli import CliError, load_model
    from samkit.export.onnx import export_sam_onnx

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CliError("ONNX export needs the onnx package: pip install 'samkit[onnx]'") from None
    loaded = load_model(args.model, args.checkpoint, args.random_weights, None)
    if loaded.family != "sam1":
        raise CliError("samkit export onnx supports SAM 1 models (vit_b, vit_l, vit_h) so far")
    paths = export_sam_onnx(
        loaded.model,
        args.out,
        return_single_mask=args.return_single_mask,
        opset=args.opset,
        encoder=not args.decoder_only,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    if not args.quiet:
        print(
            "decoder inputs: image_embeddings, point_coords (1xNx2, resized frame), point_labels "
            "(1xN), mask_input, has_mask_input, orig_im_size; outputs: masks, iou_predictions, "
            "low_res_masks",
            file=sys.stderr,
        )
    return 0


def add_parser(subparsers: Any) -> None:
    """Add `export onnx` to the `samkit` command's subparsers."""
    from samkit.cli import _add_model_args
    from samkit.export.onnx import DEFAULT_OPSET

    export = subparsers.add_parser("export", help="export a model (onnx)")
    sub = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    p = sub.add_parser(
        "onnx",
        help="encoder.onnx + decoder.onnx (official SAM ONNX decoder interface)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="decoder outputs one mask (official rule: the single-mask token with more than 2 "
        "points, else the best multimask output by predicted IoU) instead of all 4",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (14..20)")
    p.add_argument("--decoder-only", action="store_true", help="skip encoder.onnx")
    p.add_argument("--quiet", action="store_true", help="print only the written paths")
    p.set_defaults(func=cmd_export_onnx)
