"""`sessionguard check`: explore every state of a design and judge every property."""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sessionguard.cli import EXIT_OK, EXIT_VIOLATION, UsageError, bounded_int, csv
from sessionguard.model.vocabulary import KINDS

LIMITS = {"messages": (1, 8), "faults": (0, 4), "sessions": (1, 4)}
DEFAULTS = {"messages": 2, "faults": 1, "sessions": 1}
#: Every kind of inbound message arrives at the default bound.
DEFAULT_KINDS = KINDS


def add_parser(sub: Any) -> None:
    from sessionguard.model import BY_NAME, DESIGNS
    from sessionguard.model.vocabulary import FAULTS

    p = sub.add_parser("check", help="explore every state of a design and judge every property")
    p.add_argument("--design", default="all", choices=[*DESIGNS, "all"])
    for name, (low, high) in LIMITS.items():
        p.add_argument(
            f"--{name}",
            type=bounded_int(name, low, high),
            default=DEFAULTS[name],
            help=f"{name} in the bound, {low} to {high} (default {DEFAULTS[name]})",
        )
    p.add_argument(
        "--kinds",
        type=csv,
        default=None,
        help=f"inbound kinds, comma-separated (default: all of {','.join(DEFAULT_KINDS)})",
    )
    p.add_argument("--fault-kinds", type=csv, default=None, help=f"faults to inject (default all: {','.join(FAULTS)})")
    p.add_argument("--property", action="append", default=None, choices=list(BY_NAME), help="check only this one (repeatable)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--by-rule", action="store_true", help="also one shortest counterexample per rule that breaks a property")
    p.add_argument("--no-symmetry", action="store_true", help="do not merge states that differ only by session names")
    p.add_argument("--no-merge-history", action="store_true", help="keep how finished messages ended in the state")
    p.add_argument("--max-states", type=bounded_int("max-states", 1, 10**9), default=5_000_000, help="state budget (default 5,000,000)")
    p.add_argument("--max-seconds", type=bounded_int("max-seconds", 1, 10**6), default=600, help="time budget in seconds (default 600)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr (default: when stderr is a terminal)")
    p.add_argument("--por", action="store_true", help="partial-order reduction: fewer states, counterexamples maybe not the shortest")
    p.add_argument("--jobs", type=bounded_int("jobs", 1, 64), default=None, help="designs checked in parallel (default: one per core)")


def run(args: argparse.Namespace) -> int:
    from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, check
    from sessionguard.model.checker import Stats
    from sessionguard.model.vocabulary import FAULTS
    from sessionguard.report import render_json, render_text

    kinds = tuple(args.kinds) if args.kinds is not None else DEFAULT_KINDS
    if not kinds:
        raise UsageError("check: --kinds is empty: name at least one message kind")
    for kind in kinds:
        if kind not in KINDS:
            raise UsageError(f"check: unknown message kind {kind!r}: use some of {','.join(KINDS)}")
    fault_kinds = tuple(args.fault_kinds) if args.fault_kinds is not None else FAULTS
    for fault in fault_kinds:
        if fault not in FAULTS:
            raise UsageError(f"check: unknown fault {fault!r}: use some of {','.join(FAULTS)}")
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
        max_seconds=float(args.max_seconds),
        symmetry=not args.no_symmetry,
        merge_history=not args.no_merge_history,
        by_rule=args.by_rule,
        por=args.por,
        properties=tuple(BY_NAME[p] for p in args.property) if args.property else None,
        progress=progress if show_progress else None,
    )
    names = list(DESIGNS) if args.design == "all" else [args.design]
    jobs = min(args.jobs or os.cpu_count() or 1, len(names))
    if jobs > 1:
        # Designs are independent searches: one process each, as many at once as cores.
        config.progress = None
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            reports = list(pool.map(_check_one, names, [bounds] * len(names), [config] * len(names)))
    else:
        reports = []
        for name in names:
            reports.append(check(DESIGNS[name], bounds, config))
            if show_progress:
                print("\r" + " " * 90 + "\r", end="", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(render_json(reports), indent=2))
    else:
        print(render_text(reports, argv_hint=command_line(args)))
    return EXIT_VIOLATION if any(r.undeclared for r in reports) else EXIT_OK


def _check_one(name: str, bounds: Any, config: Any) -> Any:
    from sessionguard.model import DESIGNS, check

    return check(DESIGNS[name], bounds, config)


def command_line(args: argparse.Namespace) -> str:
    """The check command that reproduces these bounds."""
    parts = ["sessionguard check", f"--messages {args.messages}", f"--faults {args.faults}"]
    if args.sessions != 1:
        parts.append(f"--sessions {args.sessions}")
    if args.kinds is not None:
        parts.append(f"--kinds {','.join(args.kinds)}")
    if args.fault_kinds is not None:
        parts.append(f"--fault-kinds {','.join(args.fault_kinds)}")
    return " ".join(parts)
