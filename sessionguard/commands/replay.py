"""`sessionguard replay`: run one recorded schedule of the asyncio adapter again, exactly.

The schedule comes from a replay file (`explore --save FILE`) or a token
(printed by `explore` and by the Hypothesis tests).  The run is checked
against the model as during exploration and told step by step.  A schedule
only replays on the Python minor version that recorded it: asyncio queues a
different number of callbacks on each, so the step numbers would not line up.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sessionguard.cli import EXIT_OK, EXIT_VIOLATION, UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay one schedule of the asyncio adapter (from explore) and tell it",
        description=__doc__,
    )
    p.add_argument("file", nargs="?", default=None, help="a replay file written by 'explore --save'")
    p.add_argument("--token", default=None, help="a replay token printed by explore or a test")
    p.add_argument("--design", default=None, help="replay against another design than recorded")
    p.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    from sessionguard.loop import ScheduleVersionError
    from sessionguard.model import DESIGNS
    from sessionguard.reference.harness import (
        decode_token,
        findings_of,
        load_document,
        mismatch_of,
        narrate,
    )

    if (args.file is None) == (args.token is None):
        raise UsageError("replay: give exactly one of FILE or --token (see 'sessionguard replay --help')")
    try:
        if args.token is not None:
            design, scenario, schedule = decode_token(args.token)
        else:
            try:
                with open(args.file) as fh:
                    data = json.load(fh)
            except OSError as exc:
                raise UsageError(f"replay: cannot read {args.file}: {exc.strerror}") from None
            except json.JSONDecodeError as exc:
                raise UsageError(f"replay: {args.file} is not JSON ({exc.msg})") from None
            design, scenario, schedule = load_document(data)
    except ValueError as exc:
        raise UsageError(f"replay: {exc}") from None
    if args.design is not None:
        design = args.design
    if not isinstance(design, str) or design not in DESIGNS:
        raise UsageError(f"replay: unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    try:
        schedule.check_version()
    except ScheduleVersionError as exc:
        raise UsageError(f"replay: {exc}") from None
    result, story = narrate(design, scenario, schedule)
    findings = findings_of(result)
    mismatch = mismatch_of(result)
    known = DESIGNS[design].known
    undeclared = result.verdict not in ("ok",) or any(p not in known for p in findings)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "design": design,
                    "scenario": scenario.to_json(),
                    "verdict": result.verdict,
                    "steps": result.steps,
                    "properties": {p: str(f) for p, f in sorted(findings.items())},
                    "mismatch": str(mismatch) if mismatch else None,
                    "problem": str(result.problem) if result.problem else None,
                    "story": story,
                },
                indent=2,
            )
        )
    else:
        print(f"replay of {design} / {scenario.name} ({scenario.describe()}), {len(schedule)} steps")
        for line in story:
            print(f"  {line}")
        print(f"verdict: {result.verdict}")
        if result.problem is not None:
            print(str(result.problem))
        if mismatch is not None:
            print(str(mismatch))
        for p, f in sorted(findings.items()):
            tag = "known" if p in known else "UNDECLARED"
            print(f"{p} [{tag}]: {f}")
        if not findings and mismatch is None:
            print("every property held; every step was a model transition")
    return EXIT_VIOLATION if undeclared else EXIT_OK
