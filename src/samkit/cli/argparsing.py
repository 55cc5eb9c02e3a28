"""Command-line parsing details: negative coordinates, "did you mean", clean `--help` defaults,
warnings.

Kept apart from the commands so that `cli/__init__.py` and `cli/common.py` only name these, and
light (standard library only): parsing, `--help` and usage errors never import numpy or torch.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any

from samkit.predict.prompt_bounds import prompt_warnings  # noqa: F401  (the CLI's import point)

# Options whose value is a comma-separated list of numbers that may start with a minus sign.
COORDINATE_OPTIONS = ("--point", "--box")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COORDS = re.compile(rf"^-{_NUMBER[len('[-+]?') :]}(?:,{_NUMBER})*$")
# `samkit track`'s FRAME:... values: a negative FRAME is the option's value, refused by the
# command with the video's frame range (as `--start-frame -1` is), not an unknown option "-1".
FRAME_OPTIONS = ("--point", "--box", "--mask", "--exemplar")
_NEGATIVE_FRAME = re.compile(r"^-\d+:")


def join_negative_coordinates(argv: Sequence[str]) -> list[str]:
    """Rewrite `--point -10,-10` as `--point=-10,-10` (and the same for `--box`).

    argparse takes any word that starts with "-" and is not a plain negative number for an
    option, so `--point -10,-10` would fail with "expected one argument". A word right after
    `--point` / `--box` that is a comma-separated list of numbers is the option's value, and so
    is a word `-N:...` right after `--point` / `--box` / `--mask` / `--exemplar` (`samkit
    track`'s negative FRAME: no option starts with a minus and a digit).
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if (word in COORDINATE_OPTIONS and _COORDS.match(value)) or (
            word in FRAME_OPTIONS and _NEGATIVE_FRAME.match(value)
        ):
            out.append(f"{word}={value}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def did_you_mean(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to a mistyped `word` (difflib, dashes ignored), or None."""
    names = {c.lstrip("-"): c for c in candidates}
    match = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=0.6)
    return names[match[0]] if match else None


class SamkitArgumentParser(argparse.ArgumentParser):
    """`ArgumentParser` that accepts negative coordinates after `--point` / `--box` and answers a
    mistyped option or command with "did you mean ...?".

    The words are checked before argparse parses them, so a typo is reported (by the parser of
    the command it was typed for, with that command's usage) before any other error, such as a
    missing required option. Sub-command parsers (`add_subparsers` makes them of
    `SamkitCommandParser`) report left-over words themselves too, instead of the top-level usage.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = join_negative_coordinates(sys.argv[1:] if args is None else list(args))
        self._check_words(argv)
        return super().parse_known_args(argv, namespace)

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", SamkitCommandParser)
        return super().add_subparsers(**kwargs)

    def _check_words(self, argv: Sequence[str]) -> None:
        """`self.error` (exit status 2) for an unknown option or command name, with the closest
        known one. A parser with sub-commands looks only up to the command's name (its own
        options take no values); the others look at every word up to `--`."""
        commands = next((a for a in self._actions if a.nargs == argparse.PARSER), None)
        options = sorted({s for a in self._actions for s in a.option_strings})
        for word in argv:
            if word == "--":
                return
            if not word.startswith("-") or word == "-" or _COORDS.match(word):
                if commands is None:
                    continue
                if word not in commands.choices:
                    guess = did_you_mean(word, list(commands.choices))
                    hint = f"; did you mean {guess}?" if guess else ""
                    self.error(
                        f"unknown command {word!r}{hint} (choose from "
                        f"{', '.join(commands.choices)})"
                    )
                return
            name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
            if name in options or (
                self.allow_abbrev
                and name.startswith("--")
                and any(o.startswith(name) for o in options)
            ):
                continue
            guess = did_you_mean(name, [o for o in options if o.startswith("--")])
            hint = f"; did you mean {guess}?" if guess else f" (see {self.prog} --help)"
            self.error(f"unrecognized option {name}{hint}")


class SamkitCommandParser(SamkitArgumentParser):
    """The parser of one `samkit` command: also reports words left over (an extra positional)
    itself, with its own usage, rather than leaving them to the top-level parser."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` only where it says something.

    Not for flags, for None / empty defaults, or when the help text already names the value;
    floats are shown with 4 significant digits (0.3413, not 0.3413333333333333), integers of a
    million or more with thousands separators (64,000,000).
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
        if isinstance(default, float):
            shown = f"{default:.4g}"
        elif isinstance(default, int) and default >= 1_000_000:
            shown = f"{default:,}"  # 64,000,000 pixels
        else:
            shown = str(default)
        if shown in text:  # the help names it already ("float32 (exact, the default)")
            return action.help
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def print_warnings(command: str, warnings: Sequence[str], file: Any = None) -> None:
    """Print `samkit COMMAND: warning: ...` lines to stderr."""
    for w in warnings:
        print(f"samkit {command}: warning: {w}", file=file or sys.stderr, flush=True)
