"""The `--embedding FILE` option of `samkit segment` (and SAM 3's): the model that computed the
file, and the checks of the file against the model and the image (split out of
`samkit.cli.common`).

Standard library only at import time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samkit.cli.common import CliError
from samkit.io.provenance import display_name, with_article


def read_embedding(path: str) -> Any:
    """The `samkit embed` file `--embedding path` names (`samkit.io.embeddings.load_embedding`).

    Raises:
        CliError: no such file, or another file (an image, another safetensors file), saying
            what `--embedding` takes."""
    from samkit.io.embeddings import load_embedding

    try:
        return load_embedding(path)
    except (ValueError, FileNotFoundError) as e:
        what = "no such file" if isinstance(e, FileNotFoundError) else str(e)
        raise CliError(
            f"--embedding {path}: {what.removeprefix(f'{Path(path)}: ')}; expected the "
            ".safetensors file `samkit embed IMAGE --out DIR` writes for this image"
        ) from None


def checked_embedding(args: argparse.Namespace, lm: Any, image: Any) -> Any:
    """The `samkit embed` file of `--embedding`, checked against the model's family and the
    decoded HxWx3 image (size and pixels); CliError naming what differs."""
    from samkit.io.embeddings import rgb_sha256

    emb = read_embedding(args.embedding)
    if emb.family != lm.family:
        raise CliError(
            f"--embedding {args.embedding} is {with_article(display_name(emb.family))} "
            f"embedding, but the model ({lm.name}) is {display_name(lm.family)}: "
            "embed the image with the same model, or pass that model's --model"
        )
    if emb.original_size != image.shape[:2]:
        raise CliError(
            f"--embedding {args.embedding} is for a {emb.original_size} image, "
            f"{args.image} is {image.shape[:2]}"
        )
    if emb.image_sha256 and emb.image_sha256 != rgb_sha256(image):
        raise CliError(f"--embedding {args.embedding} was computed for a different image")
    return emb


def model_from_embedding(args: argparse.Namespace) -> None:
    """`--embedding FILE` names the model that computed it (`samkit embed`): without `--model`
    and `--checkpoint` that model is used (a variant, or a config file, which then needs
    `--checkpoint` as always), with a note on stderr; a `--model` naming another variant is
    refused. Sets `args.model` or `args.checkpoint`.

    Raises:
        CliError: the names conflict, the file names no model this samkit can find, or it is
            no readable embedding file (`read_embedding`).
    """
    path = getattr(args, "embedding", None)
    if not path:
        return
    from samkit.cli.info import canonical_model

    made_by = read_embedding(path).variant
    named = canonical_model(made_by)
    what = f"samkit {getattr(args, 'command', 'segment')}"
    if args.model is None and args.checkpoint is None:
        if named is None and not Path(made_by).is_file():
            raise CliError(
                f"--embedding {path} was computed by {made_by!r}, which is no known variant and "
                "no existing file: pass the --model (and --checkpoint) that computed it"
            )
        if named is None and not made_by.endswith(".json"):
            args.checkpoint = made_by  # computed by a checkpoint alone (`--checkpoint PATH`)
        else:
            args.model = named or made_by
        print(
            f"{what}: using {args.model or args.checkpoint}, the model --embedding {path} was "
            "computed with",
            file=sys.stderr,
            flush=True,
        )
        return
    mine = canonical_model(args.model) if args.model is not None else None
    if named is not None and mine is not None and named != mine:
        raise CliError(
            f"--embedding {path} was computed by {named}, but --model is {mine}: pass --model "
            f"{named} (or no --model, to use it), or embed the image again with {mine}"
        )
    if args.model is None and made_by.endswith(".json") and Path(made_by).is_file():
        args.model = made_by  # --checkpoint alone: the config that computed the embedding
