"""What `samkit.cli.common.load_model` says when a model cannot be built: a config.json samkit
cannot read, a checkpoint of another family than the config's, a checkpoint whose tensors do not
fit the model. Every piece of advice is checked before it is given (the architecture read from
the checkpoint alone is built on the meta device: no weights are made), and key lists are
summarised: counts, prefix groups, a few names, and the checkpoint the model expected.

Standard library only at import time; torch and the family code are imported inside.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from samkit.build.loaded import load_family_model
from samkit.build.misfit import AdviceError
from samkit.build.registry import DEFAULT_FAMILY, FAMILY_NAMES, families, is_config_path
from samkit.io.provenance import with_article

KEYS_SHOWN = 3  # key names per kind in a message
GROUPS_SHOWN = 4  # prefix groups per kind


def config_families() -> list[str]:
    """The display names of the families whose loaders read a config.json (SAM 1's
    constructor configs and every family with a registry `config_match`)."""
    names = [f.display for f in families() if f.config_match is not None]
    return [FAMILY_NAMES[DEFAULT_FAMILY], *(n for n in names if n != FAMILY_NAMES[DEFAULT_FAMILY])]


def _shapes(family: str, spec: Any, checkpoint: Any) -> dict[str, tuple] | None:
    """Tensor name -> shape of the model `spec` / `checkpoint` builds, on the meta device; None
    when it cannot be built."""
    import torch

    try:
        with torch.device("meta"):
            net = load_family_model(family, spec, checkpoint, checkpoint is None, "meta")
    except (ValueError, RuntimeError, NotImplementedError, KeyError, TypeError):
        return None
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def checkpoint_alone_builds(checkpoint: str) -> str | None:
    """The family that `--checkpoint` alone (no --model) builds from the file's tensors, when
    that works; None when the architecture cannot be read from them."""
    from samkit.build.family import checkpoint_family

    family = checkpoint_family(checkpoint)
    if family is None or _shapes(family, None, checkpoint) is None:
        return None
    return family


def _groups(keys: list[str]) -> str:
    """`image_encoder.blocks (96), mask_decoder (12), ...`: keys counted by their first two
    dotted parts, largest groups first."""
    counts = Counter(".".join(k.split(".")[:2]) for k in keys)
    top = [f"{p} ({n})" for p, n in counts.most_common(GROUPS_SHOWN)]
    more = len(counts) - GROUPS_SHOWN
    return ", ".join(top) + (f", and {more} more groups" if more > 0 else "")


def key_summary(expected: dict[str, tuple], found: dict[str, tuple]) -> list[str]:
    """One line per kind of difference: its count, prefix groups and first few keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [k for k in expected if k in found and found[k] != expected[k]]
    lines = []
    for what, keys in (
        ("missing from the checkpoint", missing),
        ("in the checkpoint but not in the model", unexpected),
        ("of another shape", misshaped),
    ):
        if not keys:
            continue
        first = keys[:KEYS_SHOWN]
        if keys is misshaped:
            first = [f"{k} {found[k]} (expected {expected[k]})" for k in first]
        more = f", ... ({len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else ""
        lines.append(f"{len(keys)} tensors {what}: {_groups(keys)}; e.g. {', '.join(first)}{more}")
    return lines


def _expected_file(family: str, model: str) -> str:
    """ "SAM 1, the official sam_vit_b_01ec64.pth" for a variant; the family for a config."""
    from samkit.configs.sam import get_variant

    name = FAMILY_NAMES.get(family, family)
    if is_config_path(model):
        return name
    try:
        file = get_variant(model).filename
    except ValueError:
        return name
    return f"{name}, the official {file}" if file else name


def load_message(family: str, model: str | None, checkpoint: str | None, error: ValueError) -> str:
    """What the command line says when the family's loader refuses `--model model --checkpoint
    checkpoint` (`error`): a checkpoint that does not fit the model (`fit_message`), one of
    another family (`family_message`), else the loader's own message, in its command-line
    wording when it has one (`samkit.build.misfit.AdviceError.cli`)."""
    if model is not None and checkpoint is not None:
        if "does not fit" in str(error):
            return fit_message(family, model, checkpoint, error)
        if " checkpoint, not " in str(error):  # another family's file
            return family_message(family, model, checkpoint, error)
    return error.cli if isinstance(error, AdviceError) else str(error)


def fit_message(family: str, model: str, checkpoint: str, error: ValueError) -> str:
    """The "does not fit" error of `--model model --checkpoint checkpoint`: what the model
    expected, what the file has (summarised), and what to do (checked), said once: the
    builder's advice (`samkit.build.misfit.AdviceError`) leads and the last line then only
    names the checkpoint's layout; without it the last line gives the advice."""
    from samkit.checkpoint.load import read_state_dict
    from samkit.cli.info import checkpoint_lookalikes, variant_list

    expected = _shapes(family, model, None)
    found = {k: tuple(v.shape) for k, v in read_state_dict(checkpoint).items()}
    advice = isinstance(error, AdviceError)  # the builder's checked advice, first
    report = str(error).split("\n", 1)[1] if advice else str(error)
    first = [error.cli] if isinstance(error, AdviceError) else []
    if expected is None:  # cannot summarise: the loader's own report
        return "\n".join([*first, report])
    what = f"the config {model}" if is_config_path(model) else f"--model {model}"
    lines = [
        *first,
        report.split("\n")[0],
        f"  {what} expects {len(expected)} tensors ({_expected_file(family, model)}); "
        f"--checkpoint {checkpoint} has {len(found)}:",
        *(f"  {line}" for line in key_summary(expected, found)),
    ]
    like = checkpoint_lookalikes(checkpoint)
    if advice:  # the first line said what to do
        layout = " / ".join(like) if like else "no samkit variant"
        lines.append(f"  --checkpoint {checkpoint} has the layout of {layout}")
        return "\n".join(lines)
    alone = checkpoint_alone_builds(checkpoint)
    if like:
        lines.append(
            f"  --checkpoint {checkpoint} has the layout of {' / '.join(like)}: pass --model {like[0]}"
        )
    elif alone is not None:
        lines.append(
            f"  --checkpoint {checkpoint} has the layout of no samkit variant; leave --model "
            f"out: the checkpoint alone builds its {FAMILY_NAMES[alone]} architecture from its "
            "tensors"
        )
    elif is_config_path(model):
        lines.append("  pass the config.json this checkpoint was made with as --model")
    else:
        lines.append(
            f"  the checkpoint has the layout of no samkit variant ({len(variant_list())} known: "
            "samkit info): pass the config.json it was made with as --model"
        )
    return "\n".join(lines)


def family_message(family: str, model: str, checkpoint: str, error: ValueError) -> str:
    """A config.json read as `family`'s and a checkpoint of another family: what builds that
    checkpoint (checked: the file alone, a variant of its layout, else its own config.json)."""
    from samkit.build.family import checkpoint_family
    from samkit.cli.info import checkpoint_lookalikes

    found = checkpoint_family(checkpoint)
    head = str(error).split(": load it with")[0]
    if is_config_path(model):
        head += (
            f"\n  --model {model} was read as {with_article(FAMILY_NAMES[family])} config "
            f"(samkit reads the config.json of {config_list()} models)"
        )
    if checkpoint_alone_builds(checkpoint) is not None:
        return (
            f"{head}. Leave --model out: --checkpoint {checkpoint} alone builds its "
            f"{FAMILY_NAMES[found]} architecture from its tensors"
        )
    like = checkpoint_lookalikes(checkpoint)
    if like:
        return f"{head}. Pass --model {like[0]} (the checkpoint has its layout)"
    other = FAMILY_NAMES.get(found, "other") if found else "other"
    return f"{head}. Pass the {other} config.json this checkpoint was made with as --model"


def config_list() -> str:
    """ "SAM 1 / SAM 2 / ..." (the families that read a config.json)."""
    return " / ".join(config_families())


def config_message(model: str, error: Exception) -> str:
    """`--model CONFIG.json` that no family's loader reads: what samkit reads, and instead."""
    return (
        f"--model {model}: {error}. samkit reads the config.json of {config_list()} models; "
        "another model (light ones included) takes a variant name (samkit info) or no --model: "
        "leave --model out and pass its --checkpoint alone (the architecture is read from the "
        "tensors)"
    )


def is_readable_config(family: str, model: str) -> Exception | None:
    """None when the family's loader builds `model` (a config.json) with random weights on the
    meta device, else its error."""
    import torch

    if not is_config_path(model) or not Path(model).is_file():
        return None
    try:
        with torch.device("meta"):
            load_family_model(family, model, None, True, "meta")
    except (ValueError, KeyError, TypeError) as e:
        return e
    except Exception:  # not buildable on the meta device: the real build says what is wrong
        return None
    return None
