"""The controlled loop's explorers against detangle's, on the same adapters and scenarios.

detangle (measured with ``detangle==0.1.0`` from PyPI; ``pip install
detangle==0.1.0``; the script says so and exits 0 when it is missing) runs a
coroutine function on its own event loop, ``SimLoop``, with PCT, random-walk
and delay-bounded DFS strategies. It cannot run on our ``ControlledLoop``,
so both tools are given the very same thing to run: the coroutine factory
``scenario_run(design, scenario)`` of ``reference/harness.py``, which builds
the adapter, its scripted runner and platform, starts the scenario's phases
and checks every loop step against the model (refinement). The one line of
the harness that needs our loop is ``add_observer``, which registers the
refinement check to run after every step; under detangle the same check is
registered with ``detangle.invariant`` (which detangle runs after every step)
and called with the label of the task whose step just ran, taken from
``SimLoop``. So on both loops the adapter, the faults and the judge are the
same code; only the scheduler differs.

A run *fails* when the refinement check finds a mismatch or when the run
violates one of the target properties (``Outcome.violated``). detangle's
own extra failure kinds (exceptions nobody retrieved, tasks left pending)
are turned off: the scripted faults produce them on purpose. Shrinking is off
on both sides; detangle's time still includes the one traced replay it makes
of a failing schedule before it reports it.

Printed, with ratios ours / theirs (below 1: ours needs fewer):

1. runs and wall time to the first violation, medians over ``--seeds`` seeds
   (random walk against random walk, PCT depth 3 against PCT depth 3), for
   ``prefix`` (#11016 trap on ``cancelled-task``, two workers at once on
   ``followups``) and ``seed`` (``release-by-owner`` on ``double-stop``,
   ``one-worker`` on ``followups``);
2. schedules and wall time to exhaust a scenario without any bound: our DFS
   without and with DPOR, detangle's DFS with a delay bound larger than any
   run (which makes it unbounded). The two loops split a run into lanes a
   little differently (detangle puts fired timers in the callback lane; we
   give each timer its own), so the counts are of the same program under
   each tool's own notion of a schedule.

Seeds are 0 .. seeds-1 for both tools; every failure line prints the seed.
Usage: ``python benchmarks/detangle_bench.py [--quick] [--seeds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sessionguard.reference.harness as harness
from sessionguard.commands.explore import make_reduction
from sessionguard.loop import RunResult, explore_dfs, explore_pct, explore_random
from sessionguard.loop.controlled import ControlledLoop
from sessionguard.loop.controlled import add_observer as add_controlled_observer
from sessionguard.reference.harness import Outcome, findings_of, mismatch_of, scenario_run
from sessionguard.reference.scenarios import SCENARIOS

try:
    import detangle
    from detangle.errors import BugFound
except ImportError:  # pragma: no cover - depends on the environment
    detangle = None  # type: ignore[assignment]

AVAILABLE = detangle is not None
MISSING = "detangle is not installed: pip install detangle==0.1.0 (this benchmark was measured with 0.1.0)"

DETANGLE_OPTIONS: dict[str, Any] = {
    "fail_on_unobserved": False,  # a scripted fault leaves a task's exception unretrieved on purpose
    "fail_on_callback_error": False,
    "check_leaks": False,
    "seed_random": False,  # nothing here draws from `random`
    "shrink": False,  # time to the first failure, not to a minimal one
    "database": False,
}

#: (design, scenario, target properties): what section 1 looks for.
TARGETS = [
    ("prefix", "cancelled-task", ("no-orphan-guard", "no-trapped-session")),
    ("prefix", "followups", ("one-worker",)),
    ("seed", "double-stop", ("release-by-owner",)),
    ("seed", "followups", ("one-worker",)),
]
EXHAUST = [("prefix", "dead-owner"), ("prefix", "cancelled-task"), ("reference", "send-hangs"), ("seed", "cancelled-task")]


# --- running the harness under detangle -------------------------------------------------


def _add_observer(observer: Callable[[int, str], None]) -> None:
    """The harness's add_observer, on either loop (see the module docstring)."""
    loop: Any = asyncio.get_running_loop()
    if isinstance(loop, ControlledLoop):
        add_controlled_observer(observer)
        return
    last: list[Any] = [None]
    execute = loop._execute

    def remember(lane: Any, handle: Any) -> None:
        last[0] = lane  # detangle's invariants run inside _execute, after the step
        execute(lane, handle)

    def task_label(task: Any) -> str:
        # Unique per task, like ours ("T<n>:<name>"): two jobs of one session share a name.
        info = loop.task_info.get(task)
        return f"T{info.id if info is not None else '?'}:{task.get_name()}"

    loop._execute = remember
    loop.task_label = task_label  # the refinement recognises a task's own step by its label

    def check() -> None:
        lane = last[0]
        task = getattr(lane, "task", None)
        observer(loop.steps - 1, task_label(task) if task is not None else "callbacks")

    detangle.invariant(check, "refinement")


harness.add_observer = _add_observer


def detangle_main(design: str, scenario: str, props: tuple[str, ...]) -> Callable[[], Any]:
    factory = scenario_run(design, SCENARIOS[scenario])

    async def main() -> None:
        outcome: Outcome = await factory()
        bad = outcome.violated & set(props)
        assert not bad, f"violated {sorted(bad)}"

    main.__qualname__ = f"{design}/{scenario}"
    return main


def our_predicate(props: tuple[str, ...]) -> Callable[[RunResult], bool]:
    def failed(result: RunResult) -> bool:
        return mismatch_of(result) is not None or bool(set(findings_of(result)) & set(props))

    return failed


# --- 1. time to the first violation ------------------------------------------------------


def theirs_until_failure(main: Callable[[], Any], strategy: Any, budget: int) -> tuple[int, float, bool]:
    started = time.perf_counter()
    try:
        stats = detangle.explore(main, runs=budget, strategy=strategy, **DETANGLE_OPTIONS)
    except BugFound as bug:
        return bug.report.runs, time.perf_counter() - started, True
    return stats.runs, time.perf_counter() - started, False


@dataclass
class FirstViolation:
    """One target and strategy of section 1: medians over the seeds, and how many seeds missed."""

    design: str
    scenario: str
    strategy: str
    seeds: int
    ours_runs: float
    ours_seconds: float
    ours_missed: int
    theirs_runs: float
    theirs_seconds: float
    theirs_missed: int

    @property
    def time_ratio(self) -> float:
        return self.ours_seconds / self.theirs_seconds


def first_violation(seeds: int, budget: int) -> list[FirstViolation]:
    print(f"== 1. runs and time to the first violation, medians over seeds 0..{seeds - 1} (budget {budget} runs)")
    rows: list[FirstViolation] = []
    for design, scenario, props in TARGETS:
        ours_factory = scenario_run(design, SCENARIOS[scenario])
        theirs_main = detangle_main(design, scenario, props)
        for label, ours_explore, theirs_strategy in (
            ("random", explore_random, lambda s: detangle.RandomWalk(seed=s)),
            ("pct:3", explore_pct, lambda s: detangle.PCT(seed=s, depth=3)),
        ):
            ours: list[tuple[int, float, bool]] = []
            theirs: list[tuple[int, float, bool]] = []
            for seed in range(seeds):
                ex = ours_explore(ours_factory, runs=budget, seed=seed, is_failure=our_predicate(props))
                ours.append((ex.schedules, ex.seconds, ex.found))
                theirs.append(theirs_until_failure(theirs_main, theirs_strategy(seed), budget))
            o_runs = statistics.median(r for r, _, _ in ours)
            t_runs = statistics.median(r for r, _, _ in theirs)
            o_time = statistics.median(t for _, t, _ in ours)
            t_time = statistics.median(t for _, t, _ in theirs)
            o_miss = sum(not f for _, _, f in ours)
            t_miss = sum(not f for _, _, f in theirs)
            rows.append(FirstViolation(design, scenario, label, seeds, o_runs, o_time, o_miss, t_runs, t_time, t_miss))
            print(
                f"   {design:<6} {scenario:<15} {label:<6} ours {o_runs:6.0f} runs {o_time * 1000:8.1f} ms"
                f"{f' ({o_miss} seeds missed)' if o_miss else ''} | detangle {t_runs:6.0f} runs "
                f"{t_time * 1000:8.1f} ms{f' ({t_miss} seeds missed)' if t_miss else ''} | ratio runs "
                f"{o_runs / max(t_runs, 1):5.2f}, time {o_time / t_time:5.2f}"
            )
            sys.stdout.flush()
    return rows


# --- 2. schedules to exhaust --------------------------------------------------------------


def exhaust(budget: float) -> None:
    print(f"== 2. schedules to exhaust a scenario, no bound (budget {budget:g}s each)")
    for design, scenario in EXHAUST:
        props: tuple[str, ...] = ()
        cells = []
        counts = {}
        for name in ("none", "dpor"):
            ex = explore_dfs(
                scenario_run(design, SCENARIOS[scenario]),
                reduction=make_reduction(name),
                is_failure=our_predicate(props),
                stop_on_failure=False,
                max_seconds=budget,
            )
            counts[name] = (ex.schedules, ex.exhausted, ex.seconds)
            cells.append(f"ours {name} {ex.schedules:,} ({'exhausted' if ex.exhausted else 'budget out'}, {ex.seconds:.1f}s)")
        started = time.perf_counter()
        stats = detangle.explore(
            detangle_main(design, scenario, props),
            runs=10**7,
            strategy=detangle.DFS(max_delays=10**9),
            max_duration=budget,
            **DETANGLE_OPTIONS,
        )
        seconds = time.perf_counter() - started
        cells.append(f"detangle dfs {stats.runs:,} ({'exhausted' if stats.exhausted else 'budget out'}, {seconds:.1f}s)")
        ratio = " | ".join(
            f"ours {name}/detangle {counts[name][0] / max(stats.runs, 1):.2f}"
            for name in ("none", "dpor")
            if counts[name][1] and stats.exhausted
        )
        print(f"   {design:<9} {scenario:<15} " + " | ".join(cells) + (f" | ratio {ratio}" if ratio else ""))
        sys.stdout.flush()


def measure(args: argparse.Namespace) -> list[FirstViolation]:
    """Both sections, as `args` (from `options`) asks, printed as they are measured; section 1's rows."""
    print(f"Python {sys.version.split()[0]}; detangle {getattr(detangle, '__version__', '?')}")
    rows = first_violation(args.seeds, args.runs)
    ratios = [r.time_ratio for r in rows]
    print(f"   geometric mean of the time ratios (ours / detangle): {statistics.geometric_mean(ratios):.2f}")
    exhaust(args.budget)
    return rows


def options(argv: Any = None) -> argparse.Namespace:
    """The command line, with the --quick defaults filled in (bad input exits 2 with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, a smaller budget")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for the medians (default 20; quick 3)")
    parser.add_argument("--runs", type=int, default=2000, help="run budget per search in section 1")
    parser.add_argument("--budget", type=float, default=None, help="seconds per search in section 2 (default 120; quick 10)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else (3 if args.quick else 20)
    args.budget = args.budget if args.budget is not None else (10.0 if args.quick else 120.0)
    if args.seeds < 1 or args.runs < 1 or args.budget <= 0:
        parser.error("--seeds and --runs must be at least 1, --budget positive")
    return args


def main(argv: Any = None) -> int:
    args = options(argv)
    if not AVAILABLE:
        print(MISSING)
        return 0
    measure(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
