"""Shared pieces of the command line: model loading, argument parsing helpers, atomic writes.

Standard library only at import time (the work imports numpy / torch inside the functions), so
that building the parser and `--help` stay fast.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any

from samkit.build.loaded import LoadedModel, load_family_model
from samkit.build.registry import (
    DEFAULT_FAMILY,
    FAMILY_NAMES,
    family_names,
    get_family,
    is_config_path,
    spec_family,
    state_dict_family,
)
from samkit.cli import model_errors
from samkit.io.provenance import with_article

# --dtype choices -> torch dtype names (torch is imported only when a model is built).
DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
RANDOM_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! WARNING: --random-weights: the model has RANDOM weights. Its masks are MEANINGLESS.\n"
    "!! Use it only for smoke tests; drop --random-weights to load the real checkpoint.\n"
    + "!" * 78
    + "\n"
)


class CliError(Exception):
    """An error reported as `samkit: error: ...` with exit status 2 (no traceback)."""


# ------------------------------------------------------------------------------------ models


def model_family(model: str | None, checkpoint: str | None = None) -> str:
    """The family `load_model(model, checkpoint)` would build, known before building it (a
    checkpoint alone is recognised by its tensor names; `samkit.build.registry`).

    Raises:
        CliError: a missing file.  ValueError: an unknown variant name.
    """
    if model is None:
        if checkpoint is None:
            return DEFAULT_FAMILY  # vit_b
        if not Path(checkpoint).is_file():
            raise CliError(f"--checkpoint {checkpoint}: no such file")
        from samkit.build.family import checkpoint_family

        return checkpoint_family(checkpoint) or DEFAULT_FAMILY
    if is_config_path(model) and not Path(model).is_file():
        raise CliError(f"--model {model}: no such config file")
    try:
        return spec_family(model)
    except ValueError as e:  # an unknown name: list every name, aliases and sam3 included
        if "unknown samkit variant" not in str(e):
            raise
        from samkit.cli.info import variant_list

        hint = str(e).partition("known variants:")[0]
        raise CliError(f"{hint}known names: {', '.join(variant_list())}") from None


def families_with(*slots: str) -> tuple[str, ...]:
    """The families whose registry entry has every one of `slots` (e.g. "amg_generator": the
    families `samkit auto` labels without prompts; "predictor": those that answer clicks)."""
    return family_names(*slots)


def takes_setting(family: str, name: str) -> bool:
    """Whether the family's automatic mask generator has the keyword `name` (`use_m2m`: SAM 2's
    generator has it, SAM 1's not)."""
    fam = get_family(family)
    return (
        fam.has("amg_generator") and name in inspect.signature(fam.load("amg_generator")).parameters
    )


def families_taking(name: str) -> tuple[str, ...]:
    """The families whose automatic mask generator has the keyword `name`."""
    return tuple(f for f in families_with("amg_generator") if takes_setting(f, name))


# what `load_model` takes by default: the families with the whole image toolkit (clicks,
# automatic masks, ONNX export), SAM 1 and SAM 2; a command names more where it can use them
TOOLKIT = ("predictor", "amg_generator", "exporter")


def refuse_family(family: str, families: tuple[str, ...] | None, command: str | None) -> None:
    """CliError naming the model's family when `command` cannot use it (`families`: those it
    can; None: `families_with(*TOOLKIT)`)."""
    if families is None:
        families = families_with(*TOOLKIT)
    if family in families:
        return
    what = f"samkit {command}" if command else "this command"
    fam = get_family(family)
    examples = " or ".join(m for m in (get_family(f).default_model for f in families) if m)
    if fam.has("concepts") and not fam.has("amg_generator"):
        raise CliError(
            f"{what} cannot use {with_article(fam.display)} model: {fam.display} works with `samkit "
            "segment` (--text, --box exemplars, --point clicks) and `samkit auto --text`; use a "
            f"{' / '.join(FAMILY_NAMES[f] for f in families)} model here"
            + (f" (e.g. --model {examples})" if examples else "")
        )
    raise CliError(
        f"{what} needs {with_article(' or '.join(FAMILY_NAMES[f] for f in families))} model, "
        f"not {FAMILY_NAMES.get(family, family)}"
    )


def load_model(
    model: str | None,
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    families: tuple[str, ...] | None = None,
    command: str | None = None,
    checkpoint_state: dict[str, Any] | None = None,
) -> LoadedModel:
    """Build the model named on the command line (its family's registry loader).

    Args:
        model: a variant name (`samkit info` lists them), a family's own name (`sam3`,
            `samkit.build.sam3_models`) or a config.json path; None infers the family and
            architecture from `checkpoint` (or means vit_b without a checkpoint).
        checkpoint: a checkpoint file; without it a variant's official checkpoint is taken from
            the cache or downloaded.
        random_weights: skip loading weights (smoke tests only; prints a loud warning).
        device: torch device (default CPU).
        dtype: "float32" (default), "bfloat16" or "float16" (see `build_sam`'s dtype).
        families: the families the command can use; another one is refused by name
            (`refuse_family`) before it is built. Default: those with the whole image toolkit
            (`TOOLKIT`: SAM 1 and SAM 2).
        command: the command's name, for that message.
        checkpoint_state: the tensors of the checkpoint (`checkpoint`, or the cached file of a
            family named as a whole) already read: the family of a checkpoint alone is read off
            them, and a loader that takes them builds from them (`load_family_model`), so that
            `samkit serve` reads a SAM 3 file once for the model and its video tracker.

    Raises:
        CliError: a bad flag or file, a family the command cannot use, or a model its loader
            refuses (`samkit.cli.model_errors.load_message`: the command-line wording, key
            reports summarised); `samkit` prints it after `samkit COMMAND: error:`, no
            traceback, exit status 2.
    """
    from samkit.runtime.accel import tune_malloc

    tune_malloc()  # an application: keep freed memory for the next forward (~10 % faster)

    if checkpoint is not None and random_weights:
        raise CliError("--checkpoint and --random-weights exclude each other")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CliError(f"--checkpoint {checkpoint}: no such file")
    if model is None and checkpoint is None:
        model = get_family(DEFAULT_FAMILY).default_model
    if model is None and checkpoint_state is not None:  # the tensors were read: no sniffing
        family = state_dict_family(checkpoint_state.keys()) or DEFAULT_FAMILY
    else:
        family = model_family(model, checkpoint)
    refuse_family(family, families, command)
    if model is not None:
        model = get_family(family).canonical_name(model) or model
        unread = model_errors.is_readable_config(family, model)
        if unread is not None:  # before asking for a checkpoint that would not help
            raise CliError(model_errors.config_message(model, unread))
        if is_config_path(model) and checkpoint is None and not random_weights:
            raise CliError(
                f"--model {model} is a config file: also pass --checkpoint PATH (or "
                "--random-weights for a smoke test)"
            )
    if dtype is not None and dtype not in DTYPES:
        raise CliError(f"--dtype {dtype}: choose from {', '.join(sorted(DTYPES))}")
    if random_weights:
        print(RANDOM_WARNING, file=sys.stderr, flush=True)
    try:
        net = load_family_model(
            family, model, checkpoint, random_weights, device, dtype, checkpoint_state
        )
    except ValueError as e:  # what the loader refused, in the command line's words
        raise CliError(model_errors.load_message(family, model, checkpoint, e)) from None
    return LoadedModel(net, family, model or str(checkpoint), random_weights)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="VARIANT",
        help="variant name (see `samkit info`; default vit_b; e.g. sam2.1_hiera_t, vit_t = "
        "mobile_sam), sam3 (SAM 3: segment / auto --text) or a config.json path",
    )
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint file; default: the variant's official checkpoint from the cache "
        "(downloaded if missing)",
    )
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="no weights at all (smoke tests only: the masks are meaningless)",
    )
    g.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    g.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="float32 (exact, the default) or bfloat16 / float16: the image encoder (and for "
        "video SAM 2's memory attention and memory encoder) in that dtype, decoder matmuls under "
        "autocast (bfloat16: about 2.8x faster on CPUs with AMX; masks within IoU 0.97 of "
        "float32 on the test fixtures). `samkit export onnx` always writes float32.",
    )


def _check_device(device: str | None) -> None:
    """A clear error for a device this torch build cannot use (e.g. cuda on a CPU build)."""
    if not device:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise CliError(f"--device {device}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise CliError(
            f"--device {device}: this torch build ({torch.__version__}) sees no CUDA device; "
            "use --device cpu"
        )


def _model_from_args(
    args: argparse.Namespace,
    families: tuple[str, ...] | None = None,
    checkpoint_state: dict[str, Any] | None = None,
) -> LoadedModel:
    _check_device(args.device)
    return load_model(
        args.model,
        args.checkpoint,
        args.random_weights,
        args.device,
        getattr(args, "dtype", None),
        families=families,
        command=getattr(args, "command", None),
        checkpoint_state=checkpoint_state,
    )


# ------------------------------------------------------------------------------------ inputs


def _point(text: str) -> tuple[float, float, int]:
    parts = text.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a point is X,Y or X,Y,LABEL (LABEL 1 foreground, 0 background)"
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"{text!r}: coordinates must be finite numbers")
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(
            f"{text!r}: LABEL must be 1 (foreground) or 0 (background)"
        )
    return x, y, label


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        v = [float(s) for s in text.split(",")]
        if len(v) != 4 or not all(math.isfinite(c) for c in v):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a box is X0,Y0,X1,Y1 (finite numbers)"
        ) from None
    if v[2] < v[0] or v[3] < v[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: a box needs X1 >= X0 and Y1 >= Y0")
    return v[0], v[1], v[2], v[3]


def _video_suffixes() -> tuple[str, ...]:
    from samkit.video.frames.folder import VIDEO_SUFFIXES

    return VIDEO_SUFFIXES


def refuse_video(path: str | Path) -> None:
    """CliError for a video file (by its suffix) given where images are read: what the command
    takes and how a video is segmented (`samkit track`)."""
    from samkit.io.images import IMAGE_SUFFIXES

    if Path(path).suffix.lower() in _video_suffixes():
        raise CliError(
            f"{path} is a video; this command reads images ({', '.join(IMAGE_SUFFIXES)}): "
            f"segment a video with `samkit track {path}` (--point FRAME:OBJ:X,Y, or --text "
            "PHRASE with SAM 3), or pass a folder of its frames"
        )


def _image_files(inputs: list[str]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted, not recursive).

    Raises:
        CliError: a missing path, a video file, no image at all (naming the videos found)."""
    from samkit.io.masks import IMAGE_SUFFIXES

    files: list[Path] = []
    videos: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(
                sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            )
            videos += sorted(f.name for f in p.iterdir() if f.suffix.lower() in _video_suffixes())
        elif p.is_file():
            refuse_video(item)
            files.append(p)
        else:
            raise CliError(f"{item}: no such file or folder")
    if not files:
        found = ""
        if videos:
            shown = ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else "")
            found = f"; it holds videos ({shown}): segment a video with `samkit track VIDEO`"
        raise CliError(
            f"no image files in {' '.join(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)})" + found
        )
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems and stems[f.stem] != f:
            raise CliError(
                f"{stems[f.stem]} and {f} would write the same outputs ({f.stem}.*); "
                "rename one or run them with different --out folders"
            )
        stems[f.stem] = f
    return files


def out_folder(out: str, option: str = "--out", make: bool = True) -> Path:
    """The output folder of `option`, made if missing (parents too) unless `make` is False (a
    command that checks it before its work and writes there later).

    Raises:
        CliError: the path is an existing file, or the folder cannot be made (the message names
            the path and says what to pass instead of an OS error number).
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CliError(
            f"{option} {out} is a file; {option} names the folder the outputs are written to "
            "(made if missing): pass a folder path"
        )
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise CliError(f"{option} {out}: {blocking} is a file, so no folder can be made there")
    try:
        if make:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(
            f"{option} {out}: cannot make this folder ({e.strerror or e}); pass a folder path "
            "you can write to"
        ) from None
    return path


def _write_json(path: Path, doc: Any) -> None:
    from samkit.io.masks import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())


# ------------------------------------------------------------------------------------ segment
