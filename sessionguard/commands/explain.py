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
            "Explain one counterexample: found by the checker (--design and --property), by z3 "
            "(--prove --design D --property P), a run of the asyncio adapter found by explore "
            "(--token T), or read from a file (--from FILE: a 'check --format json' or "
            "'prove --format json' report, a replay file of 'explore --save', or the output of "
            "'explore --format json').  A saved trace is replayed through the current model, "
            "and a run under the controlled loop, before it is drawn."
        ),
    )
    p.add_argument("--design", choices=list(DESIGNS), help="the design (with --from: which report of the file)")
    p.add_argument("--property", choices=list(BY_NAME), help="the property whose counterexample to explain")
    p.add_argument("--from", dest="source", metavar="FILE", help="a saved check or prove report, explore replay file or explore output")
    p.add_argument("--token", default=None, help="a replay token printed by 'sessionguard explore' or 'sessionguard conform'")
    p.add_argument("--target", default=None, help="with a conform token: the adapter it was found on (module:Class)")
    p.add_argument("--binding", default="hermes", help="with a conform token: its binding (default hermes)")
    p.add_argument("--scenario", default=None, help="with --from an explore output: which scenario's failure")
    p.add_argument("--prove", action="store_true", help="explain z3's counterexample (sessionguard prove) for --design and --property")
    p.add_argument("--depth", type=bounded_int("depth", 1, 40), default=None, help="with --prove: deepest search, in steps (default 10)")
    p.add_argument("--messages", type=bounded_int("messages", 1, 8), default=None, help="bound (default: the finding's bound, else 3)")
    p.add_argument("--faults", type=bounded_int("faults", 0, 4), default=None, help="bound (default: the finding's bound, else 1)")
    p.add_argument("--sessions", type=bounded_int("sessions", 1, 4), default=None, help="bound (default 1)")
    p.add_argument("--kinds", type=csv, default=None, help="inbound kinds, comma-separated")
    p.add_argument("--fault-kinds", type=csv, default=None, help="faults to inject, comma-separated")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), markdown or html")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")


def run(args: argparse.Namespace) -> int:
    from sessionguard.explain import ExplainError, from_checker, from_file, render, write_atomic
    from sessionguard.explain_runs import from_prove, from_token

    try:
        chosen = [name for name, on in (("--from", args.source is not None), ("--token", args.token is not None), ("--prove", args.prove)) if on]
        if len(chosen) > 1:
            raise UsageError(f"explain: {' and '.join(chosen)} name different counterexamples: give one of them")
        bound_opts = [args.messages, args.faults, args.sessions, args.kinds, args.fault_kinds]
        if chosen and any(x is not None for x in bound_opts):
            raise UsageError(f"explain: {chosen[0]} takes the bound from its counterexample; drop --messages, --faults, --sessions, --kinds, --fault-kinds")
        if args.scenario is not None and args.source is None:
            raise UsageError("explain: --scenario chooses a scenario of an explore output: use it with --from FILE")
        if args.depth is not None and not args.prove:
            raise UsageError("explain: --depth is the depth of z3's search: use it with --prove")
        if args.token is not None:
            if args.design is not None:
                raise UsageError("explain: a token names its design; drop --design")
            if _is_conform_token(args.token):
                from sessionguard.conform.explain import explained

                if args.target is None:
                    raise UsageError("explain: a conform token replays against its adapter: add --target module:Class (and --binding if not hermes)")
                ex = explained(args.target, args.binding, args.token, prop=args.property)
            else:
                ex = from_token(args.token, prop=args.property)
        elif args.source is not None:
            ex = from_file(args.source, design=args.design, prop=args.property, scenario=args.scenario)
        else:
            if args.design is None or args.property is None:
                raise UsageError(
                    "explain: name a counterexample: --design D --property P (add --prove for z3's), "
                    "--token T, or --from FILE (see 'sessionguard explain --help')"
                )
            if args.prove:
                ex = from_prove(args.design, args.property, depth=args.depth or 10)
            else:
                ex = from_checker(args.design, args.property, _bounds(args))
        text = render(ex, args.format)
        if args.output:
            write_atomic(args.output, text)
        else:
            sys.stdout.write(text)
    except ExplainError as exc:
        raise UsageError(f"explain: {exc}") from None
    return EXIT_OK


def _is_conform_token(token: str) -> bool:
    from sessionguard.reference.harness import unpack_token

    try:
        return unpack_token(token).get("k") == "conform"
    except ValueError:
        return False


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
