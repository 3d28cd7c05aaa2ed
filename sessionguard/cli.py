"""The `sessionguard` command.

Exit codes, the same for every subcommand: 0 when nothing undeclared was found,
1 when a property fails that the design does not declare as known, 2 for bad
input (a one-line error that names the problem and the fix, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from sessionguard import __version__

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2

LIMITS = {"messages": (1, 8), "faults": (0, 4), "sessions": (1, 4)}


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _bounded(name: str) -> object:
    low, high = LIMITS[name]

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


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    from sessionguard.model import BY_NAME, DESIGNS
    from sessionguard.model.vocabulary import FAULTS, KINDS

    parser = _Parser(prog="sessionguard", description="Model-check a chat gateway's session guard.")
    parser.add_argument("--version", action="version", version=f"sessionguard {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    check = sub.add_parser("check", help="explore every state of a design and judge every property")
    check.add_argument("--design", default="all", choices=[*DESIGNS, "all"])
    check.add_argument("--messages", type=_bounded("messages"), default=2, help="inbound messages (default 2)")
    check.add_argument("--faults", type=_bounded("faults"), default=1, help="faults in all (default 1)")
    check.add_argument("--sessions", type=_bounded("sessions"), default=1, help="session keys (default 1)")
    check.add_argument(
        "--kinds",
        type=_csv,
        default=None,
        help=f"inbound kinds, comma-separated (default text,photo,/stop,/approve; all: {','.join(KINDS)})",
    )
    check.add_argument(
        "--fault-kinds", type=_csv, default=None, help=f"faults to inject (default all: {','.join(FAULTS)})"
    )
    check.add_argument(
        "--property", action="append", default=None, choices=list(BY_NAME), help="check only this property (repeatable)"
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument("--by-rule", action="store_true", help="one shortest counterexample per breaking rule")
    check.add_argument("--no-symmetry", action="store_true", help="do not merge states that differ by session names")
    check.add_argument("--max-states", type=int, default=5_000_000, help="state budget (default 5,000,000)")
    check.add_argument("--max-seconds", type=float, default=600.0, help="time budget (default 600)")
    check.add_argument("--progress", action="store_true", help="show progress on stderr (default: when a terminal)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "check":
            return _check(args)
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _check(args: argparse.Namespace) -> int:
    from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, check
    from sessionguard.model.checker import Stats
    from sessionguard.model.vocabulary import FAULTS, KINDS

    from .report import render_json, render_text

    kinds = tuple(args.kinds) if args.kinds is not None else Bounds().kinds
    for kind in kinds:
        if kind not in KINDS:
            raise UsageError(f"check: unknown message kind {kind!r}: use some of {','.join(KINDS)}")
    fault_kinds = tuple(args.fault_kinds) if args.fault_kinds is not None else FAULTS
    for fault in fault_kinds:
        if fault not in FAULTS:
            raise UsageError(f"check: unknown fault {fault!r}: use some of {','.join(FAULTS)}")
    if not kinds:
        raise UsageError("check: --kinds is empty: name at least one message kind")
    if args.max_states < 1 or args.max_seconds <= 0:
        raise UsageError("check: --max-states and --max-seconds must be positive")
    bounds = Bounds(
        messages=args.messages,
        faults=args.faults,
        sessions=args.sessions,
        kinds=kinds,
        fault_kinds=fault_kinds,
    )
    show_progress = args.progress or (sys.stderr.isatty() and args.format == "text")

    def progress(stats: Stats) -> None:
        print(
            f"\r  {stats.states:,} states, {stats.transitions:,} transitions, depth {stats.depth}, "
            f"{stats.states_per_second:,.0f} states/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    config = CheckerConfig(
        max_states=args.max_states,
        max_seconds=args.max_seconds,
        symmetry=not args.no_symmetry,
        by_rule=args.by_rule,
        properties=tuple(BY_NAME[p] for p in args.property) if args.property else None,
        progress=progress if show_progress else None,
    )
    names = list(DESIGNS) if args.design == "all" else [args.design]
    reports = []
    for name in names:
        reports.append(check(DESIGNS[name], bounds, config))
        if show_progress:
            print("\r" + " " * 90 + "\r", end="", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(render_json(reports), indent=2))
    else:
        print(render_text(reports, argv_hint=_command_line(args)))
    return EXIT_VIOLATION if any(r.undeclared for r in reports) else EXIT_OK


def _command_line(args: argparse.Namespace) -> str:
    parts = ["sessionguard check", f"--messages {args.messages}", f"--faults {args.faults}"]
    if args.sessions != 1:
        parts.append(f"--sessions {args.sessions}")
    if args.kinds is not None:
        parts.append(f"--kinds {','.join(args.kinds)}")
    if args.fault_kinds is not None:
        parts.append(f"--fault-kinds {','.join(args.fault_kinds)}")
    return " ".join(parts)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
