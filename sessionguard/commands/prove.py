"""`sessionguard prove`: z3 proofs of the safety properties, beyond every bound.

For `reference` each property is proved by induction with the strengthening
invariants of `sessionguard.proofs.invariants` (no bound on messages, faults or
guard identities); for the other designs, and wherever induction fails, a
bounded search in z3 looks for the shortest counterexample.  A property is
PROVED only when z3 answered `unsat` to every query of its proof.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sessionguard.cli import EXIT_OK, EXIT_VIOLATION, UsageError, bounded_int


def add_parser(sub: Any) -> None:
    from sessionguard.model import DESIGNS

    p = sub.add_parser("prove", help="prove the safety properties with z3 (unbounded), or find counterexamples")
    p.add_argument("--design", default="reference", choices=[*DESIGNS, "all"], help="design to prove (default reference)")
    p.add_argument("--property", action="append", default=None, metavar="NAME",
                   help="prove only this property (repeatable; default: all)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--depth", type=bounded_int("depth", 1, 40), default=10,
                   help="deepest bounded search for a counterexample, in steps (default 10)")
    p.add_argument("--timeout", type=bounded_int("timeout", 1, 3600), default=60,
                   help="seconds per property before it is reported UNKNOWN (default 60)")
    p.add_argument("--mutation", default=None, help="weaken the design first (reference only; see docs/proofs.md)")


def run(args: argparse.Namespace) -> int:
    from sessionguard.model import DESIGNS
    from sessionguard.proofs.encoding import MUTATIONS
    from sessionguard.proofs.prove import PROPERTY_NAMES, prove

    props = args.property
    for name in props or ():
        if name not in PROPERTY_NAMES:
            raise UsageError(f"prove: unknown property {name!r}: use one of {', '.join(PROPERTY_NAMES)}")
    if args.mutation is not None:
        if args.mutation not in MUTATIONS:
            raise UsageError(f"prove: unknown mutation {args.mutation!r}: use one of {', '.join(MUTATIONS)}")
        if args.design != "reference":
            raise UsageError("prove: --mutation weakens the reference design: use it with --design reference")
    names = list(DESIGNS) if args.design == "all" else [args.design]
    reports = [
        prove(name, props, mutation=args.mutation, depth=args.depth, timeout=float(args.timeout))
        for name in names
    ]
    if args.format == "json":
        print(json.dumps({
            "reports": [
                {
                    "design": r.design,
                    "mutation": r.mutation,
                    "seconds": round(r.seconds, 3),
                    "lemmas": [{"name": n, "status": s, "seconds": round(t, 3)} for n, s, t in r.lemmas],
                    "results": [x.to_json() for x in r.results],
                    "ok": r.ok,
                }
                for r in reports
            ]
        }, indent=2))
    else:
        print(render_text(reports))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_VIOLATION


def render_text(reports: list[Any]) -> str:
    from sessionguard.proofs.prove import COUNTEREXAMPLE, PROVED

    lines: list[str] = []
    for r in reports:
        title = r.design + (f" (weakened: {r.mutation})" if r.mutation else "")
        lines.append(f"{title}: z3 {__import__('z3').get_version_string()}, no bound on messages, faults or guards")
        if r.lemmas:
            total = sum(t for _, _, t in r.lemmas)
            bad = [f"{n} ({s})" for n, s, _ in r.lemmas if s != "inductive"]
            state = "all inductive" if not bad else "NOT inductive: " + ", ".join(bad)
            lines.append(f"  strengthening invariant: {len(r.lemmas)} lemmas, {state} ({total:.2f} s)")
        for x in r.results:
            if x.status == PROVED:
                verdict = "PROVED"
            elif x.status == COUNTEREXAMPLE:
                verdict = f"COUNTEREXAMPLE at depth {x.depth}" + (" (known)" if x.known else "")
            else:
                verdict = "UNKNOWN"
            lines.append(f"  {x.number:>2} {x.prop:<22} {verdict:<34} {x.seconds:6.2f} s  {x.method}")
            if x.detail:
                lines.append(f"       {x.detail}")
            if x.known:
                lines.append(f"       known for {r.design}: {x.known}")
            if x.trace is not None:
                for k, step in enumerate(x.trace.steps, 1):
                    lines.append(f"       {k}. {step}")
        lines.append(f"  total {r.seconds:.2f} s (building the transition relation: {r.build_seconds:.2f} s)")
        lines.append("")
    ok = all(r.ok for r in reports)
    lines.append("every property proved or a known violation" if ok else "some property is not proved and not a known violation")
    return "\n".join(lines)
