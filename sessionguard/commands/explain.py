"""`sessionguard explain`: a counterexample as a sequence diagram, a narrative and a state table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sessionguard.cli import EXIT_OK, UsageError, bounded_int, csv

FORMATS = ("text", "markdown", "html")


def add_parser(sub: Any) -> None:
    from sessionguard.model import BY_NAME, DESIGNS

    p = sub.add_parser(
        "explain",
        help="explain a counterexample: sequence diagram, narrative, state table",
        description=(
            "Explain one counterexample, found by the checker (--design and --property) or "
            "read from a saved 'sessionguard check --format json' report (--from FILE). "
            "A saved trace is replayed through the current model before it is drawn."
        ),
    )
    p.add_argument("--design", choices=list(DESIGNS), help="the design (with --from: which report of the file)")
    p.add_argument("--property", choices=list(BY_NAME), help="the property whose counterexample to explain")
    p.add_argument("--from", dest="source", metavar="FILE", help="a saved 'sessionguard check --format json' report")
    p.add_argument("--messages", type=bounded_int("messages", 1, 8), default=None, help="bound (default: the finding's bound, else 3)")
    p.add_argument("--faults", type=bounded_int("faults", 0, 4), default=None, help="bound (default: the finding's bound, else 1)")
    p.add_argument("--sessions", type=bounded_int("sessions", 1, 4), default=None, help="bound (default 1)")
    p.add_argument("--kinds", type=csv, default=None, help="inbound kinds, comma-separated")
    p.add_argument("--fault-kinds", type=csv, default=None, help="faults to inject, comma-separated")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), markdown or html")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")


def run(args: argparse.Namespace) -> int:
    from sessionguard.explain import ExplainError, from_checker, from_file, render, write_atomic

    try:
        if args.source is not None:
            bound_opts = [args.messages, args.faults, args.sessions, args.kinds, args.fault_kinds]
            if any(x is not None for x in bound_opts):
                raise UsageError("explain: --from takes the bound from the file; drop --messages, --faults, --sessions, --kinds, --fault-kinds")
            ex = from_file(args.source, design=args.design, prop=args.property)
        else:
            if args.design is None or args.property is None:
                raise UsageError("explain: name a counterexample: --design D --property P, or --from FILE (see 'sessionguard explain --help')")
            ex = from_checker(args.design, args.property, _bounds(args))
        text = render(ex, args.format)
        if args.output:
            write_atomic(args.output, text)
        else:
            sys.stdout.write(text)
    except ExplainError as exc:
        raise UsageError(f"explain: {exc}") from None
    return EXIT_OK


def _bounds(args: argparse.Namespace) -> Any:
    from sessionguard.explain import finding_bounds
    from sessionguard.model import Bounds
    from sessionguard.model.vocabulary import FAULTS, KINDS

    base = finding_bounds(args.design, args.property) or Bounds()
    kinds = tuple(args.kinds) if args.kinds is not None else base.kinds
    for kind in kinds:
        if kind not in KINDS:
            raise UsageError(f"explain: unknown message kind {kind!r}: use some of {','.join(KINDS)}")
    if not kinds:
        raise UsageError("explain: --kinds is empty: name at least one message kind")
    fault_kinds = tuple(args.fault_kinds) if args.fault_kinds is not None else base.fault_kinds
    for fault in fault_kinds:
        if fault not in FAULTS:
            raise UsageError(f"explain: unknown fault {fault!r}: use some of {','.join(FAULTS)}")
    return Bounds(
        messages=args.messages if args.messages is not None else base.messages,
        faults=args.faults if args.faults is not None else base.faults,
        sessions=args.sessions if args.sessions is not None else base.sessions,
        kinds=kinds,
        fault_kinds=fault_kinds,
    )
