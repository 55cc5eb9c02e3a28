"""`samkit info` and the model names the commands take: the registered variants with their
other names (`vit_t` is MobileSAM's `mobile_sam`), the families named as a whole (`sam3`), and
which variant a checkpoint looks like (for "does not fit" errors).

Standard library only at import time (the parser and `cli.common` import this module); torch
and the family code are imported inside the functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samkit.build.loaded import load_family_model
from samkit.build.registry import (
    DEFAULT_FAMILY,
    families,
    get_family,
    is_config_path,
    spec_family,
)


def variant_aliases() -> dict[str, list[str]]:
    """Each registered variant's other names (`mobile_sam`: `vit_t`, MobileSAM's official name),
    canonical names first, in `samkit info` order; families named as a whole (`sam3`) too."""
    from samkit.configs.common import VARIANTS
    from samkit.configs.sam import variant_names

    names: dict[str, list[str]] = {n: [] for n in variant_names()}
    for alias, v in VARIANTS.items():
        if alias != v.name and v.name in names:
            names[v.name].append(alias)
    for f in families():
        for n in f.names:
            names.setdefault(n, [])
    return names


def variant_list() -> list[str]:
    """What `--model` takes by name: `vit_b`, ..., `mobile_sam (vit_t, mobilesam)`, ..., `sam3`."""
    return [f"{n} ({', '.join(a)})" if a else n for n, a in variant_aliases().items()]


def canonical_model(spec: str) -> str | None:
    """A `--model` value as its canonical registered name (`VIT_B` / `sam_vit_b` -> `vit_b`,
    `SAM3` -> `sam3`); None for a config path or an unknown name."""
    for f in families():
        name = f.canonical_name(spec)
        if name is not None:
            return name
    if is_config_path(spec):
        return None
    from samkit.configs.sam import get_variant

    try:
        return get_variant(spec).name
    except ValueError:
        return None


def checkpoint_lookalikes(checkpoint: str) -> list[str]:
    """The registered variants whose model has every tensor of the checkpoint, of the same
    shape (`sam2_hiera_t` and `sam2.1_hiera_t` share a layout); none for a fine-tuned size, a
    fixture model, or a family without variants. Models are built on the meta device: no
    weights are made."""
    import torch

    from samkit.build.family import checkpoint_family
    from samkit.checkpoint.load import read_state_dict
    from samkit.configs.sam import variant_names

    family = checkpoint_family(checkpoint)
    if family is None:
        return []
    found = {k: tuple(v.shape) for k, v in read_state_dict(checkpoint).items()}
    like = []
    for name in variant_names(family):
        try:
            with torch.device("meta"):
                net = load_family_model(family, name, None, True, "meta")
        except (ValueError, RuntimeError, NotImplementedError):
            continue
        if all(found.get(k) == tuple(v.shape) for k, v in net.state_dict().items()):
            like.append(name)
    return like


def checkpoint_hint(checkpoint: str, model: str) -> str:
    """What to do when `--checkpoint` does not fit `--model`: the variant it looks like."""
    like = checkpoint_lookalikes(checkpoint)
    if like:
        return (
            f"  --checkpoint {checkpoint} looks like a {' / '.join(like)} checkpoint, not "
            f"{model}: pass --model {like[0]}, or leave --model out (the architecture is read "
            "from the checkpoint)"
        )
    return (
        f"  --checkpoint {checkpoint} has the layout of no samkit variant (known: "
        f"{', '.join(variant_list())}): leave --model out (the architecture is read from the "
        "checkpoint; a custom SAM 2 checkpoint needs the config.json it was made with as --model)"
    )


def family_checkpoint(name: str) -> tuple[str, str] | None:
    """(file, url) of the checkpoint of a family named as a whole (`sam3`: the gated `sam3.pt`,
    which samkit does not download); None for any other name."""
    from samkit.build.sam3_models import SAM3_CHECKPOINT_FILE, SAM3_WEIGHTS_URL
    from samkit.configs.sam import variant_names

    if name in variant_names() or not any(f.canonical_name(name) for f in families()):
        return None
    return SAM3_CHECKPOINT_FILE, SAM3_WEIGHTS_URL


def cmd_info(args: argparse.Namespace) -> int:
    """`samkit info`: versions, the checkpoint cache, and per model name its family, checkpoint
    file, whether that file is in the cache, and its other names (`--json`: all of it).

    Raises:
        FileNotFoundError, NotADirectoryError: `--cache-dir` names no folder, or a file (the
            default cache folder may not exist yet: `samkit download` makes it, and the listing
            says so). `samkit.cli.main` prints them as a `CliError` (`samkit info: error: ...`,
            exit status 2); this module cannot import `cli.common`, which imports it.
    """
    import torch

    import samkit
    from samkit.checkpoint import default_cache_dir

    if args.cache_dir and not Path(args.cache_dir).is_dir():
        is_file = Path(args.cache_dir).exists()
        error = NotADirectoryError if is_file else FileNotFoundError
        raise error(
            f"--cache-dir {args.cache_dir}: {'not a folder' if is_file else 'no such folder'} "
            "(samkit download --cache-dir FOLDER makes one and fills it; leave --cache-dir out "
            "for the default cache)"
        )
    from samkit.configs.sam import get_variant, variant_names

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    rows = []
    for name, aliases in variant_aliases().items():
        if name in variant_names():
            v = get_variant(name)
            family, file, url = v.family, v.filename, v.url
        else:  # a family named as a whole (sam3): its own checkpoint file
            family, (file, url) = spec_family(name), family_checkpoint(name) or ("", "")
        present = bool(file) and (cache / file).is_file()
        rows.append(
            {"name": name, "aliases": aliases, "family": family}
            | {"file": file, "present": present, "url": url}
        )
    info = {
        "samkit": samkit.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "cache_dir": str(cache),
        "default_model": get_family(DEFAULT_FAMILY).default_model,  # no --model, no checkpoint
        "variants": rows,
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(
        f"samkit {info['samkit']}  torch {info['torch']}  cuda {'yes' if info['cuda'] else 'no'}"
        f"  default model (no --model, no --checkpoint): {info['default_model']}"
    )
    made = "" if cache.is_dir() else ", not made yet: samkit download VARIANT makes it"
    print(f"checkpoint cache: {cache}  (set SAMKIT_CACHE to change it{made})")
    table = [("variant", "family", "checkpoint", "present", "also named")]
    for r in rows:
        present = "yes" if r["present"] else "no"
        aliases = [
            a if a != "default" else "default (official registry name)" for a in r["aliases"]
        ]
        table.append((r["name"], r["family"], r["file"] or "-", present, ", ".join(aliases)))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[4]]
        print("  ".join(cells).rstrip())
    return 0
