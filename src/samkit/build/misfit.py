"""What a builder says when a checkpoint does not fit the variant or config it was given.

A list of missing keys and shape mismatches says that a checkpoint does not fit, not what it is
or what to do. `misfit_error` puts one line first: what the checkpoint is (its encoder's width
and block count read from its tensors, and the registered variant of its layout when there is
one: "this checkpoint is vit_l (...), not 'vit_b': ... --model vit_l") and a call that builds
it, checked before it is given (the builder run on the meta device: no weights are made). The
loader's key report follows.

`AdviceError` carries both wordings of such advice: the Python one in its message and the
command line's in `cli` (the CLI shows that one, with no Python call in it).

Where it is given: once, in the one build pipeline (`samkit.build.pipeline.build_model` calls
`family_misfit` when strict loading fails for a variant or config the caller named), so every
family built there, a registered one included, gets it without code of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from samkit.build.registry import get_family, is_config_path
from samkit.configs.sam import variant_names
from samkit.io.provenance import with_article

if TYPE_CHECKING:
    from torch import Tensor

# (encoder name, patch embedding weight, block key pattern) of the encoders described by width
_ENCODERS = (
    ("ViT", "image_encoder.patch_embed.proj.weight", r"image_encoder\.blocks\.(\d+)\."),
    (
        "Hiera",
        "image_encoder.trunk.patch_embed.proj.weight",
        r"image_encoder\.trunk\.blocks\.(\d+)\.",
    ),
)


class AdviceError(ValueError):
    """A builder's ValueError whose advice the command line words differently.

    Attributes:
        cli: the same message for the command line (flags instead of Python calls).
    """

    def __init__(self, message: str, cli: str) -> None:
        super().__init__(message)
        self.cli = cli


def describe_encoder(state: Mapping[str, Tensor]) -> str | None:
    """ "a 64-wide, 4-block ViT" from a checkpoint's tensors; None for an encoder of another
    layout."""
    for name, patch, blocks in _ENCODERS:
        if patch in state:
            rx = re.compile(blocks)
            depth = len({m.group(1) for k in state if (m := rx.match(k))})
            if name == "Hiera" and "image_encoder.trunk.pos_embed_window" not in state:
                name = "ViT"  # EfficientTAM's trunk
            return f"a {state[patch].shape[0]}-wide, {depth}-block {name}"
    return None


def misfit_error(
    error: ValueError,
    builder: Callable[..., Any],
    builder_name: str,
    spec: Any,
    state: Mapping[str, Tensor],
    checkpoint: str | os.PathLike,
    infer: Callable[[Any], Any],
    display: str = "model",
    variants: Sequence[str] = (),
) -> ValueError:
    """`error` (the loader's "does not fit" report) with a first line saying what the checkpoint
    is and what builds it; `error` itself for any other error.

    Args:
        error: what loading `state` into the model of `spec` raised.
        builder, builder_name: the public builder (`build_sam`, ...), run on the meta device to
            check the advice, and its name for the message.
        spec: the variant name or config that did not fit.
        state, checkpoint: the checkpoint's tensors and its path.
        infer: the builder's checkpoint -> architecture step (a variant name or a config); a
            ValueError when the architecture cannot be read from the tensors.
        display: the family's name ("MobileSAM"), for an encoder `describe_encoder` cannot
            describe.
        variants: the family's registered variant names; when `infer` gives a config (SAM 1,
            the light families), the variant whose model (`builder(name, checkpoint=None,
            device="meta")`) has the checkpoint's tensor names and shapes is named instead.

    Returns:
        An `AdviceError` (message: the Python advice; `cli`: the flags), or `error`.
    """
    if "does not fit" not in str(error):
        return error
    try:
        inferred = infer(dict(state))
    except ValueError:
        inferred = None
    if inferred is not None:
        try:
            builder(None, checkpoint=checkpoint, device="meta")
        except (ValueError, RuntimeError, TypeError, KeyError):
            inferred = None
    if inferred is not None and not isinstance(inferred, str):
        inferred = variant_of_layout(builder, variants, state) or inferred
    what = describe_encoder(state) or f"{with_article(display)} of another size"
    given = repr(spec) if isinstance(spec, str) else "the config given"
    if isinstance(inferred, str):  # a registered variant of the checkpoint's layout
        head = f"this checkpoint is {inferred} ({what}), not {given}"
        python = (
            f"call {builder_name}({inferred!r}, checkpoint=...) or {builder_name}(checkpoint=...)"
            " without a variant"
        )
        cli = f"pass --model {inferred}, or leave --model out"
    elif inferred is not None:
        head = f"this checkpoint is {what}, not {given}"
        python = f"call {builder_name}(checkpoint=...) without a variant"
        cli = "leave --model out (the architecture is read from the checkpoint)"
    else:
        head = f"this checkpoint is {what} of no registered size, not {given}"
        python = (
            f"its architecture cannot be read from its tensors alone: call "
            f"{builder_name}('CONFIG.json', checkpoint=...) with the config.json it was made with"
        )
        cli = "pass the config.json it was made with as --model"
    if isinstance(spec, str | os.PathLike) and is_config_path(spec):
        head = head.replace(f"not {given}", f"not the model of {spec}")
    report = str(error)
    flags = cli.split(" (")[0]
    return AdviceError(f"{head}: {python} (CLI: {flags})\n{report}", f"{head}: {cli}")


def variant_of_layout(
    builder: Callable[..., Any], variants: Sequence[str], state: Mapping[str, Tensor]
) -> str | None:
    """The first of `variants` whose model has exactly the tensors of `state` (names and
    shapes), built on the meta device (`builder(name, checkpoint=None, device="meta")`: no
    weights are made); None when none has.

    Args:
        builder: the family's builder, as `misfit_error` calls it.
        variants: registered variant names of the family.
        state: the checkpoint's tensors.
    """
    found = {k: tuple(v.shape) for k, v in state.items()}
    for name in variants:
        try:
            model = builder(name, checkpoint=None, device="meta")
        except (ValueError, RuntimeError, TypeError, KeyError, NotImplementedError):
            continue
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == found:
            return name
    return None


def family_misfit(
    error: ValueError,
    family: str,
    spec: Any,
    state: Mapping[str, Tensor],
    checkpoint: str | os.PathLike,
    infer: Callable[[Any], Any] | None,
) -> ValueError:
    """`misfit_error` for a registered family: its registry `loader` checks the advice (the
    checkpoint alone, on the meta device), the loader's name words it (`build_sam`, ...), its
    display name names an encoder of an unknown layout.

    Args:
        error, spec, state, checkpoint: as `misfit_error`'s.
        family: the registered family whose model `state` did not fit.
        infer: the family's tensors -> architecture step; None: its checkpoints do not tell
            their architecture (the advice is then the config.json the file was made with).

    Returns:
        An `AdviceError`, or `error` when it is no "does not fit" report.
    """
    entry = get_family(family)
    loader = entry.load("loader")
    if entry.loader_finds_checkpoint:  # its own signature (`samkit.build.family_entry`)

        def alone(spec: Any, checkpoint: Any, device: Any) -> Any:
            return loader(spec, checkpoint, checkpoint is None, device, None)

    else:

        def alone(spec: Any, checkpoint: Any, device: Any) -> Any:
            return loader(spec, checkpoint=checkpoint, device=device)

    name = entry.loader.rpartition(":")[2]  # the public builder ("build_sam2")
    variants = variant_names(family)
    return misfit_error(
        error, alone, name, spec, state, checkpoint, infer or _unknown, entry.display, variants
    )


def _unknown(state: Any) -> Any:
    raise ValueError("the architecture cannot be read from the tensors")
