"""The `samkit` command line (also `python -m samkit`).

Commands: segment, auto, embed, download, info, serve, track, eval-video (+ export / finetune /
eval when those modules are installed). Run `samkit COMMAND --help` for each one's options.

Parsing is light (`samkit.cli.parser`): `--help`, `--version` and usage errors never import
numpy or torch; a command's module is imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from samkit.cli.common import RANDOM_WARNING, CliError, LoadedModel, load_model
from samkit.cli.parser import build_parser

__all__ = [
    "RANDOM_WARNING",
    "CliError",
    "LoadedModel",
    "build_parser",
    "load_model",
    "main",
    "run_command",
]


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: `args.func` is a callable or a "module:function" string (the
    command's module is imported here, not when the parser is built)."""
    func: Callable[[argparse.Namespace], int | None] | str = args.func
    if isinstance(func, str):
        module, _, name = func.partition(":")
        func = getattr(importlib.import_module(module), name)
    return int(func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `samkit` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except (CliError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        # ValueError covers bad settings, unknown variants and CheckpointUnavailableError, whose
        # messages say what to do.
        print(f"samkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"samkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`samkit info | head`): stop quietly, as a command killed by
        # SIGPIPE would (exit 128 + 13). stdout goes to devnull so the exit-time flush cannot
        # raise again (the recipe of Python's signal module documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
