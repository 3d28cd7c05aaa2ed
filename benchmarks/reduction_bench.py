"""Partial-order reduction of the exhaustive DFS: schedules and verdicts, off against on.

For each named scenario, in one process and side by side:

1. unbounded DFS with no reduction, with sleep sets, with DPOR and with the
   stateful search (each with the same time budget): runs, whether the search
   was exhausted, the verdicts and the violated properties, the wall time, and
   the ratio of runs (off / reduced) when both were exhausted (a lower bound,
   marked ``>=``, when only the reduced search finished). A run is a schedule
   run to its end or a run cut short as redundant (sleep sets: every ready lane
   asleep; stateful: a state reached before), since both cost a run of the
   program. The stateful search also counts, on the state graph it explored,
   the schedules the search without reduction runs (``paths``): equal to that
   search's own count wherever it finishes, and the only count there is where
   it does not;
2. the same with a deviation bound (``--depth``, the same for every side;
   the sides are ``--bounded-reductions``, no reduction and DPOR unless
   told), where the full search can be exhausted on every scenario.

Every row says whether the two sides agree: the same set of run verdicts and
the same set of violated properties. There is no random choice anywhere (DFS
is deterministic), so there is no seed to print.

Usage: ``python benchmarks/reduction_bench.py [--quick] [--designs reference,prefix]
[--scenarios a,b] [--reductions none,sleep,dpor,stateful] [--bounded-reductions none,dpor]
[--budget S] [--depth D]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from sessionguard.commands.explore import make_reduction
from sessionguard.loop import RunResult, VisitedStates, explore_dfs
from sessionguard.model import DESIGNS
from sessionguard.reference.harness import findings_of, scenario_run
from sessionguard.reference.scenarios import SCENARIOS

QUICK_SCENARIOS = ("dead-owner", "cancelled-task", "send-hangs")


@dataclass
class Side:
    reduction: str
    schedules: int
    exhausted: bool
    verdicts: frozenset[str]
    violated: frozenset[str]
    seconds: float
    redundant: int
    paths: int | None = None  # stateful: the schedules of the search without reduction
    states: int | None = None  # stateful: distinct program states reached

    @property
    def runs(self) -> int:
        """Runs of the program: schedules run to the end, and runs cut as redundant."""
        return self.schedules + self.redundant

    def cell(self) -> str:
        state = "exhausted" if self.exhausted else "budget out"
        extra = f", {self.schedules:,} to the end" if self.redundant else ""
        paths = f", {self.paths:,} paths" if self.paths is not None else ""
        states = f", {self.states:,} states" if self.states is not None else ""
        return f"{self.runs:>7,} runs ({state}, {self.seconds:6.1f}s{extra}{states}{paths})"


def explore(design: str, scenario: str, reduction: str, depth: int | None, budget: float) -> Side:
    violated: set[str] = set()

    def judge(result: RunResult) -> bool:
        violated.update(findings_of(result))
        return result.verdict != "ok"

    red = make_reduction(reduction)
    started = time.perf_counter()
    ex = explore_dfs(
        scenario_run(design, SCENARIOS[scenario]),
        max_deviations=depth,
        reduction=red,
        is_failure=judge,
        stop_on_failure=False,
        max_seconds=budget,
    )
    seconds = time.perf_counter() - started
    redundant, paths, states = 0, None, None
    if isinstance(red, VisitedStates):
        redundant, states = red.pruned, red.states
        paths = red.paths() if ex.exhausted else None
    elif red is not None:
        redundant = red.stats.redundant_runs
    return Side(
        reduction,
        ex.schedules,
        ex.exhausted,
        frozenset(ex.verdicts),
        frozenset(violated),
        seconds,
        redundant,
        paths,
        states,
    )


def ratio(full: Side, reduced: Side) -> str:
    if not reduced.exhausted:
        return "-"
    value = full.runs / max(reduced.runs, 1)
    return f"{value:.1f}x" if full.exhausted else f">={value:.1f}x"


def agreement(full: Side, reduced: Side) -> str:
    same = full.verdicts == reduced.verdicts and full.violated == reduced.violated
    if full.exhausted and reduced.exhausted:
        return "same verdicts" if same else "DIFFERENT"
    return "same so far" if same else "differ (incomplete)"


@dataclass
class Row:
    """One design and scenario: its searches, the baseline first."""

    design: str
    scenario: str
    sides: list[Side]

    @property
    def differ(self) -> bool:
        """True when the first and the last side were both exhausted and disagree."""
        return len(self.sides) > 1 and agreement(self.sides[0], self.sides[-1]) == "DIFFERENT"


def row(design: str, scenario: str, sides: list[Side]) -> Row:
    """Print one scenario's row and return it."""
    full, last = sides[0], sides[-1]
    props = ",".join(sorted(full.violated | last.violated)) or "none violated"
    cells = " | ".join(f"{s.reduction} {s.cell()}" for s in sides)
    compared = f" | ratio {ratio(full, last)} | {agreement(full, last)}" if len(sides) > 1 else ""
    print(f"   {design:<9} {scenario:<20} {cells}{compared} | {props}")
    sys.stdout.flush()
    return Row(design, scenario, sides)


@dataclass
class Results:
    unbounded: list[Row]  # part 1 (empty with --skip-unbounded)
    bounded: list[Row]  # part 2 (empty with --skip-bounded)

    @property
    def differ(self) -> int:
        return sum(r.differ for r in self.unbounded + self.bounded)


def measure(args: argparse.Namespace) -> Results:
    """Run the parts that `args` (from `options`) asks for, printing each row as it is measured."""
    print(f"Python {sys.version.split()[0]}; budget {args.budget:g}s per search")
    results = Results([], [])
    if not args.skip_unbounded:
        print(f"== 1. unbounded DFS: {' | '.join(args.sides)} (sleep: sleep sets; dpor: DPOR with sleep sets)")
        for design in args.designs:
            for scenario in args.scenarios:
                sides = [explore(design, scenario, r, None, args.budget) for r in args.sides]
                results.unbounded.append(row(design, scenario, sides))
    if not args.skip_bounded:
        print(f"== 2. DFS with at most {args.depth} deviations on every side: {' | '.join(args.bounded_sides)}")
        for design in args.designs:
            for scenario in args.scenarios:
                sides = [explore(design, scenario, r, args.depth, args.budget) for r in args.bounded_sides]
                results.bounded.append(row(design, scenario, sides))
    return results


def options(argv: Any = None) -> argparse.Namespace:
    """The command line, with the --quick defaults filled in (bad input exits 2 with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_SCENARIOS)}, short budgets")
    parser.add_argument("--designs", default="reference,prefix,seed")
    parser.add_argument("--scenarios", default=None, help="comma-separated (default: every named scenario)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per search (default 120; quick 10)")
    parser.add_argument("--depth", type=int, default=None, help="deviation bound of part 2 (default 2; quick 1)")
    parser.add_argument(
        "--reductions", default="none,sleep,dpor", help="sides of part 1, in order (the first is the baseline)"
    )
    parser.add_argument(
        "--bounded-reductions", default="none,dpor", help="sides of part 2, in order (the first is the baseline)"
    )
    parser.add_argument("--skip-unbounded", action="store_true")
    parser.add_argument("--skip-bounded", action="store_true")
    args = parser.parse_args(argv)
    args.designs = args.designs.split(",")
    args.scenarios = (
        args.scenarios.split(",") if args.scenarios else list(QUICK_SCENARIOS if args.quick else SCENARIOS)
    )
    for name in args.designs:
        if name not in DESIGNS:
            parser.error(f"unknown design {name!r}: use one of {', '.join(DESIGNS)}")
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}: see 'sessionguard explore --list'")
    args.sides = args.reductions.split(",")
    args.bounded_sides = args.bounded_reductions.split(",")
    for flag, sides in (("--reductions", args.sides), ("--bounded-reductions", args.bounded_sides)):
        if not set(sides) <= {"none", "sleep", "dpor", "stateful"}:
            parser.error(f"{flag} takes none, sleep, dpor and stateful, comma-separated")
    args.budget = args.budget if args.budget is not None else (10.0 if args.quick else 120.0)
    args.depth = args.depth if args.depth is not None else (1 if args.quick else 2)
    if args.budget <= 0 or args.depth < 0:
        parser.error("--budget must be positive and --depth at least 0")
    return args


def main(argv: Any = None) -> int:
    differ = measure(options(argv)).differ
    print(f"rows with different verdicts: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
