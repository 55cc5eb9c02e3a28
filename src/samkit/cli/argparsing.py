"""Command-line parsing details: negative coordinates, clean `--help` defaults, warnings.

Kept apart from the commands so that `cli/__init__.py` and `cli/common.py` only name these.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from samkit.prompt_bounds import prompt_warnings  # noqa: F401  (the CLI's import point)

# Options whose value is a comma-separated list of numbers that may start with a minus sign.
COORDINATE_OPTIONS = ("--point", "--box")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COORDS = re.compile(rf"^-{_NUMBER[len('[-+]?') :]}(?:,{_NUMBER})*$")


def join_negative_coordinates(argv: Sequence[str]) -> list[str]:
    """Rewrite `--point -10,-10` as `--point=-10,-10` (and the same for `--box`).

    argparse takes any word that starts with "-" and is not a plain negative number for an
    option, so `--point -10,-10` would fail with "expected one argument". A word right after
    `--point` / `--box` that is a comma-separated list of numbers is the option's value.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in COORDINATE_OPTIONS and i + 1 < len(argv) and _COORDS.match(argv[i + 1]):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


class SamkitArgumentParser(argparse.ArgumentParser):
    """`ArgumentParser` that accepts negative coordinates after `--point` / `--box`."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(join_negative_coordinates(argv), namespace)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` only where it says something.

    Not for flags, for None / empty defaults, or when the help text already names the value;
    floats are shown with 4 significant digits (0.3413, not 0.3413333333333333).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or (isinstance(default, (list, tuple, dict, str)) and not default)
            or not (
                action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
            )
        ):
            return action.help
        shown = f"{default:.4g}" if isinstance(default, float) else str(default)
        if shown in text:  # the help names it already ("float32 (exact, the default)")
            return action.help
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def print_warnings(command: str, warnings: Sequence[str], file: Any = None) -> None:
    """Print `samkit COMMAND: warning: ...` lines to stderr."""
    for w in warnings:
        print(f"samkit {command}: warning: {w}", file=file or sys.stderr, flush=True)
