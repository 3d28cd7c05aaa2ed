"""`sessionguard explore`: run the asyncio adapter under many schedules, checked against the model.

Every loop step of every schedule is checked against the model (refinement)
and every property is judged on the running code.  A violation is reported
with its schedule shrunk to the fewest deviations from asyncio's own order,
told step by step, and with the exact command that replays it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sessionguard.cli import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, UsageError, bounded_int

if TYPE_CHECKING:
    from sessionguard.loop import Reduction

STRATEGIES = ("dfs", "random", "pct")
REDUCTIONS = ("none", "sleep", "dpor", "stateful")

#: Code of the adapters declared local for partial-order reduction: the typing
#: indicator only awaits a future of its own until it is cancelled, so its steps
#: share nothing with the rest of the gateway (loop/reduction.py, assumption 3).
LOCAL_CODE = ("Adapter._start_typing.<locals>.typing",)


def make_reduction(name: str) -> Reduction | None:
    """The DFS reduction called `name` (see REDUCTIONS), set up for the adapters."""
    from sessionguard.loop import DPOR, SleepSets, UnsupportedState, VisitedStates

    if name == "none":
        return None
    if name == "stateful":
        try:
            return VisitedStates()
        except UnsupportedState as exc:
            raise UsageError(f"explore: {exc}") from None
    return SleepSets(LOCAL_CODE) if name == "sleep" else DPOR(LOCAL_CODE)


def add_parser(sub: Any) -> None:
    from sessionguard.model import DESIGNS

    p = sub.add_parser(
        "explore",
        help="explore schedules of the asyncio adapter, checking every step against the model",
        description=__doc__,
    )
    p.add_argument("--list", action="store_true", help="list the named scenarios and exit")
    p.add_argument("--design", default="reference", choices=list(DESIGNS))
    p.add_argument("--scenario", default=None, help="a named scenario (see --list), or 'all' (default)")
    p.add_argument("--strategy", default="random", choices=STRATEGIES)
    p.add_argument(
        "--schedules",
        type=bounded_int("schedules", 1, 10**8),
        default=None,
        help="schedule budget per scenario (default: 1000 for random and pct, unbounded for dfs)",
    )
    p.add_argument("--seed", type=bounded_int("seed", 0, 2**63), default=0, help="seed for random and pct")
    p.add_argument(
        "--depth",
        type=bounded_int("depth", 0, 100),
        default=None,
        help="pct: bug depth (default 3); dfs: at most this many deviations from FIFO (default 3; "
        "unbounded DFS does not finish on three-message scenarios)",
    )
    p.add_argument(
        "--reduction",
        default="none",
        choices=REDUCTIONS,
        help="dfs: partial-order reduction, one schedule per class of equivalent ones (sleep sets, "
        "or DPOR with sleep sets), or stateful: every reachable program state explored once; "
        "with a reduction, dfs is unbounded unless --depth is given",
    )
    p.add_argument("--max-seconds", type=float, default=None, help="time budget per scenario")
    p.add_argument("--keep-going", action="store_true", help="run the whole budget even after a failure")
    p.add_argument("--no-shrink", action="store_true", help="report the failing schedule as found")
    p.add_argument("--save", default=None, help="write the first failure's replay file (JSON) here")
    p.add_argument("--format", choices=["text", "json"], default="text")


@dataclass
class PropertyStats:
    count: int = 0
    first_schedule: int = 0
    first_seconds: float = 0.0
    result: Any = None


@dataclass
class ScenarioReport:
    scenario: str
    exploration: Any
    props: dict[str, PropertyStats] = field(default_factory=dict)
    failure: Any = None  # the RunResult reported in full
    failure_reason: str = ""


def _explore(args: argparse.Namespace, design: str, scenario: Any) -> ScenarioReport:
    from sessionguard.loop import explore_dfs, explore_pct, explore_random
    from sessionguard.model import DESIGNS
    from sessionguard.reference.harness import findings_of, scenario_run

    known = set(DESIGNS[design].known)
    report = ScenarioReport(scenario.name, None)
    started = time.perf_counter()
    counter = [0]

    def is_failure(result: Any) -> bool:
        counter[0] += 1
        for prop in findings_of(result):
            stats = report.props.setdefault(prop, PropertyStats())
            if stats.count == 0:
                stats.first_schedule = counter[0]
                stats.first_seconds = time.perf_counter() - started
                stats.result = result
            stats.count += 1
        bad = result.verdict != "ok" or bool(set(findings_of(result)) - known)
        if bad and report.failure is None:
            report.failure = result
        return bad

    factory = scenario_run(design, scenario)
    options: dict[str, Any] = {
        "is_failure": is_failure,
        "stop_on_failure": not args.keep_going,
        "max_seconds": args.max_seconds,
        "keep_failures": 1,
    }
    if args.strategy == "dfs":
        reduction = make_reduction(args.reduction)
        default_depth = 3 if reduction is None else None
        depth = default_depth if args.depth is None else args.depth
        ex = explore_dfs(
            factory, max_deviations=depth, reduction=reduction, max_schedules=args.schedules, **options
        )
        if reduction is not None:
            ex.strategy += f", reduction={args.reduction}"
            states = getattr(reduction, "states", None)
            if states is not None:
                ex.strategy += f", {states} states"
            if getattr(reduction, "restarts", 0):
                ex.strategy += ", started over with the loop's iterations in the state (a timer made already due)"
            if not getattr(reduction, "complete", True):
                ex.strategy += ", no exhaustion claimed: a run reached the step limit (--reduction none searches it exactly)"
    elif args.strategy == "random":
        ex = explore_random(factory, runs=args.schedules or 1000, seed=args.seed, **options)
    else:
        ex = explore_pct(
            factory, runs=args.schedules or 1000, depth=args.depth or 3, seed=args.seed, **options
        )
    report.exploration = ex
    if report.failure is None:
        # Nothing undeclared: tell the first known violation, if any.
        firsts = sorted(report.props.items(), key=lambda kv: kv[1].first_schedule)
        if firsts:
            report.failure = firsts[0][1].result
    return report


def _shrunk(design: str, scenario: Any, result: Any, props: set[str]) -> Any:
    from sessionguard.loop import shrink
    from sessionguard.reference.harness import findings_of, scenario_run

    if result.verdict == "violation":

        def same(r: Any) -> bool:
            return bool(r.verdict == "violation")

    else:

        def same(r: Any) -> bool:
            return bool(props & set(findings_of(r)))

    try:
        better = shrink(scenario_run(design, scenario), result.schedule, same, max_runs=300)
    except Exception:
        return result
    return better if better is not None else result


def replay_command(design: str, scenario: Any, schedule: Any, save: str | None) -> str:
    from sessionguard.reference.harness import encode_token

    if save:
        return f"sessionguard replay {save}"
    return f"sessionguard replay --token {encode_token(design, scenario, schedule)}"


def run(args: argparse.Namespace) -> int:
    from sessionguard.model import DESIGNS
    from sessionguard.reference.harness import findings_of, mismatch_of, narrate, replay_document
    from sessionguard.reference.scenarios import SCENARIOS

    if args.list:
        width = max(len(n) for n in SCENARIOS)
        for name, sc in SCENARIOS.items():
            print(f"{name:<{width}}  {sc.description}")
            print(f"{'':<{width}}  {sc.describe()}")
        return EXIT_OK
    if args.scenario in (None, "all"):
        scenarios = list(SCENARIOS.values())
    elif args.scenario in SCENARIOS:
        scenarios = [SCENARIOS[args.scenario]]
    else:
        raise UsageError(
            f"explore: unknown scenario {args.scenario!r}: use one of {', '.join(SCENARIOS)} "
            f"(or see 'sessionguard explore --list')"
        )
    if args.reduction != "none" and args.strategy != "dfs":
        raise UsageError(f"explore: --reduction {args.reduction} needs --strategy dfs (it prunes the exhaustive search)")
    if args.max_seconds is not None and not 0 < args.max_seconds < float("inf"):  # refuses nan too
        raise UsageError(f"explore: --max-seconds must be a positive number of seconds, not {args.max_seconds}")
    design = args.design
    known = DESIGNS[design].known
    reports = [_explore(args, design, sc) for sc in scenarios]
    undeclared = False
    out_json: list[dict[str, Any]] = []
    saved = False
    for rep in reports:
        ex = rep.exploration
        named = SCENARIOS.get(rep.scenario)
        failure = rep.failure
        entry: dict[str, Any] = {
            "scenario": rep.scenario,
            "design": design,
            "strategy": ex.strategy,
            "schedules": ex.schedules,
            "seconds": round(ex.seconds, 4),
            "schedules_per_second": round(ex.schedules_per_second, 1) if ex.seconds else None,
            "exhausted": ex.exhausted,
            "verdicts": dict(ex.verdicts),
            "properties": {
                name: {
                    "schedules": st.count,
                    "first_schedule": st.first_schedule,
                    "first_seconds": round(st.first_seconds, 4),
                    "known": known.get(name),
                }
                for name, st in sorted(rep.props.items())
            },
        }
        bad = any(r != "ok" for r in ex.verdicts) or any(p not in known for p in rep.props)
        undeclared = undeclared or bad
        if failure is not None and named is not None:
            sc = named
            props = set(findings_of(failure))
            if not args.no_shrink:
                failure = _shrunk(design, sc, failure, props)
            save = None
            if args.save and not saved:
                with open(args.save, "w") as fh:
                    json.dump(replay_document(design, sc, failure.schedule), fh)
                save, saved = args.save, True
            _, story = narrate(design, sc, failure.schedule)
            mismatch = mismatch_of(failure)
            entry["failure"] = {
                "verdict": failure.verdict,
                "properties": {p: str(f) for p, f in sorted(findings_of(failure).items())},
                "mismatch": str(mismatch) if mismatch else None,
                "problem": str(failure.problem) if failure.problem else None,
                "deviations": failure.schedule.deviations,
                "steps": failure.steps,
                "story": story,
                "replay": replay_command(design, sc, failure.schedule, save),
            }
        out_json.append(entry)
    if args.format == "json":
        print(json.dumps(out_json, indent=2))
    else:
        for entry in out_json:
            _print_text(entry, known)
    return EXIT_VIOLATION if undeclared else EXIT_OK


def _print_text(entry: dict[str, Any], known: dict[str, str]) -> None:
    rate = entry["schedules_per_second"]
    state = "exhausted" if entry["exhausted"] else "stopped"
    verdicts = ", ".join(f"{v}={n}" for v, n in sorted(entry["verdicts"].items()))
    print(
        f"== {entry['design']} / {entry['scenario']}: {entry['strategy']}, {entry['schedules']} schedules "
        f"in {entry['seconds']:.2f}s ({rate if rate is not None else '-'}/s), {state}; verdicts: {verdicts}"
    )
    if not entry["properties"]:
        print("   every property holds on every schedule run; no refinement mismatch")
    for name, st in entry["properties"].items():
        tag = "known" if st["known"] else "UNDECLARED"
        print(
            f"   {name}: violated in {st['schedules']} schedule(s), first at schedule "
            f"{st['first_schedule']} ({st['first_seconds']:.3f}s) [{tag}]"
        )
    failure = entry.get("failure")
    if failure:
        print(f"   -- the first failure, shrunk to {failure['deviations']} deviation(s) from FIFO:")
        if failure["mismatch"]:
            print("   " + failure["mismatch"].replace("\n", "\n   "))
        if failure["problem"]:
            print(f"   {failure['problem']}")
        for p, why in failure["properties"].items():
            print(f"   {p}: {why}")
        for line in failure["story"]:
            print(f"   {line}")
        print(f"   replay: {failure['replay']}")


__all__ = ["add_parser", "run", "EXIT_USAGE"]
