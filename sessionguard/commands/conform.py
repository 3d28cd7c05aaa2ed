"""`sessionguard conform`: check your own adapter class against SPEC section 5.

Each named scenario (messages, commands and faults) runs against the target
under the controlled loop, in a child process, with a wall-clock budget; the
observations are written as model states and judged by the model's
properties.  Exit 0: no violation; 1: a violation (or an adapter that could
not be driven); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from xml.etree import ElementTree as ET

from sessionguard.cli import EXIT_OK, EXIT_VIOLATION, UsageError

FORMATS = ("text", "json", "junit")


def add_parser(sub: Any) -> None:
    from sessionguard.conform.conformance import STRATEGIES
    from sessionguard.reference.scenarios import SCENARIOS

    p = sub.add_parser(
        "conform",
        help="check your adapter class against the session-guard properties",
        description=(
            "Run the named scenarios, with faults, against TARGET (module:Class, built with no "
            "arguments by the hermes binding) under the controlled event loop, and judge every "
            "step by the properties of SPEC section 5. Scenarios: " + ", ".join(SCENARIOS) + "."
        ),
    )
    p.add_argument("target", metavar="TARGET", help="the adapter: module:Class (or a factory)")
    p.add_argument("--binding", default="hermes", help="'hermes' (default) or module:obj, a binding of your own")
    p.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="schedule explorer (default random)")
    p.add_argument("--budget-seconds", type=float, default=10.0, help="wall-clock budget per scenario (default 10)")
    p.add_argument("--schedules", type=int, default=None, help="at most this many schedules per scenario")
    p.add_argument("--seed", type=int, default=0, help="seed of the random and PCT explorers (default 0)")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), json or junit")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (atomically)")
    p.add_argument("--replay", metavar="TOKEN", help="replay one schedule printed by an earlier run, step by step")


def run(args: argparse.Namespace) -> int:
    from sessionguard.conform.binding import BINDINGS, BindingError, load_binding, load_object
    from sessionguard.conform.conformance import Options, check, replay_token
    from sessionguard.loop.errors import ScheduleVersionError
    from sessionguard.reference.scenarios import SCENARIOS

    if args.budget_seconds is None or not 0 < args.budget_seconds <= 86_400:
        raise UsageError("conform: --budget-seconds must be between 0 and 86400 (e.g. --budget-seconds 30)")
    if args.schedules is not None and args.schedules < 1:
        raise UsageError("conform: --schedules must be at least 1")
    if not 0 <= args.seed < 2**63:
        raise UsageError("conform: --seed must be between 0 and 2**63-1")
    names = args.scenario or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            raise UsageError(f"conform: unknown scenario {name!r}: use some of {', '.join(SCENARIOS)}")
    # Bad input is found here, in this process, before any child starts.
    try:
        load_object(args.target, what="target")
        if args.binding not in BINDINGS:
            load_binding(args.binding)
    except BindingError as exc:
        raise UsageError(f"conform: {exc}") from None

    if args.replay is not None:
        try:
            scenario, result, lines = replay_token(args.target, args.binding, args.replay)
        except (ValueError, ScheduleVersionError) as exc:
            raise UsageError(f"conform: --replay: {exc}") from None
        from sessionguard.conform.run import findings_of

        print(f"replay of {scenario.name} against {args.target}: {result.verdict}")
        for line in lines:
            print(line)
        found = findings_of(result)
        for f in found.values():
            print(f"VIOLATED {f.prop} at step {f.step} ({f.label}): {f.why}")
        return EXIT_VIOLATION if found or result.verdict != "ok" else EXIT_OK

    options = Options(strategy=args.strategy, budget_seconds=args.budget_seconds, schedules=args.schedules, seed=args.seed)
    reports = []
    for name in names:
        report = check(args.target, args.binding, SCENARIOS[name], options)
        reports.append(report)
        if args.format == "text" and not args.output:
            _print_text(report)
            sys.stdout.flush()
    if args.format == "json":
        text = json.dumps({"target": args.target, "binding": args.binding, "scenarios": [r.to_json() for r in reports]}, indent=2) + "\n"
    elif args.format == "junit":
        text = junit(args.target, reports)
    else:
        text = "".join(_text(r) for r in reports) if args.output else ""
    failed = [r for r in reports if r.verdict != "pass"]
    summary = f"conform {args.target}: {len(reports) - len(failed)} of {len(reports)} scenarios pass (strategy {args.strategy}, seed {args.seed})\n"
    if args.output:
        from sessionguard.explain import write_atomic

        write_atomic(args.output, text + (summary if args.format == "text" else ""))
    elif text:
        sys.stdout.write(text)
    if args.format == "text" and not args.output:
        sys.stdout.write(summary)
    return EXIT_VIOLATION if failed else EXIT_OK


def _text(r: Any) -> str:
    head = f"{r.scenario:22s} {r.verdict.upper() if r.verdict != 'pass' else 'pass':10s} {r.schedules} schedules in {r.seconds:.1f}s"
    lines = [head]
    for f in r.findings:
        lines.append(f"  VIOLATED {f['number']}. {f['title']} ({f['property']}) at step {f['step']}: {f['condition']}")
    if r.problem:
        lines.append(f"  {r.problem}")
    if r.narrative:
        lines.append("  schedule:")
        lines.extend(f"  {line}" for line in r.narrative)
    if r.replay:
        lines.append(f"  replay: {r.replay}")
    return "\n".join(lines) + "\n"


def _print_text(r: Any) -> None:
    sys.stdout.write(_text(r))


def junit(target: str, reports: list[Any]) -> str:
    """One <testcase> per scenario; a violation is a <failure>, an undrivable adapter an <error>."""
    suite = ET.Element(
        "testsuite",
        name=f"sessionguard conform {target}",
        tests=str(len(reports)),
        failures=str(sum(r.verdict == "violation" for r in reports)),
        errors=str(sum(r.verdict == "error" for r in reports)),
        time=f"{sum(r.seconds for r in reports):.3f}",
    )
    for r in reports:
        case = ET.SubElement(suite, "testcase", classname=f"sessionguard.conform.{target}", name=r.scenario, time=f"{r.seconds:.3f}")
        body = _text(r)
        if r.verdict == "violation":
            first = r.findings[0]
            failure = ET.SubElement(case, "failure", message=f"{first['property']}: {first['condition']}", type=first["property"])
            failure.text = body
        elif r.verdict == "error":
            error = ET.SubElement(case, "error", message=r.problem or "error", type="adapter")
            error.text = body
        else:
            out = ET.SubElement(case, "system-out")
            out.text = body
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
