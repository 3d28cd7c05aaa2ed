"""The `sessionguard` command.

Each subcommand is a module of `sessionguard.commands` with two functions:
`add_parser(subparsers)` and `run(args) -> int`.

Exit codes, the same for every subcommand: 0 when nothing undeclared was found,
1 when a property fails that the design does not declare as known, 2 for bad
input (a one-line error that names the problem and the fix, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sessionguard import __version__

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2

#: Subcommands, in the order `--help` lists them.
COMMANDS = ("check", "explore", "replay", "prove", "conform", "explain", "export")


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a file name may hold a newline)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value

    parse.__name__ = name
    return parse


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _modules() -> list[object]:
    out: list[object] = []
    for name in COMMANDS:
        try:
            out.append(importlib.import_module(f"sessionguard.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"sessionguard.commands.{name}":
                raise
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sessionguard", description="Model-check and test a chat gateway's session guard.")
    parser.add_argument("--version", action="version", version=f"sessionguard {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in _modules():
        module.add_parser(sub)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        module = importlib.import_module(f"sessionguard.commands.{args.command}")
        code: int = module.run(args)
        return code
    except UsageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`sessionguard ... | head`): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
