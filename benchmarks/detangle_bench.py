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
``SimLoop`` (made at the task's first step and kept, as our loop makes its
labels, so that detangle is not charged for formatting one per step). So on
both loops the adapter, the faults and the judge are the
same code; only the scheduler differs.

A run *fails* when the refinement check finds a mismatch or when the run
violates one of the target properties (``Outcome.violated``). detangle's
own extra failure kinds (exceptions nobody retrieved, tasks left pending)
are turned off: the scripted faults produce them on purpose. Shrinking is off
on both sides; detangle's time still includes the one traced replay it makes
of a failing schedule before it reports it.

Both tools run in one process, so each could pay for the other. The
refinement check memoises the model's successors per design and bounds in
one process-wide cache, and the garbage collector collects, at moments set
by counts of allocations, whatever either tool left. Every search (each seed
of section 1, each of section 2, each chunk of section 3) therefore starts
with that cache emptied and a full collection, so that neither tool
inherits the model states the other discovered or its garbage; and in
sections 1 and 3 the two tools take turns going first (ours first for even
seeds and chunks). Without this, ours, always first, paid for both: a
single run of prefix ``cancelled-task`` cost ours 4.0 ms against 1.7 ms,
and the same 1.5 ms each with the collector off.

Printed, with ratios ours / theirs (below 1: ours needs fewer or less):

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
   each tool's own notion of a schedule;
3. what the medians of section 1 estimate, measured directly: the chance
   that one run fails (with its 95% interval) and the cost of one run, over
   ``--rate-runs`` runs per tool in chunks of 250 that alternate between
   the tools (each chunk a search of its own, seeds 0, 1, ..., that does
   not stop at a failure), and from them the expected time to the first
   violation (cost / chance). A median over 20 seeds of a rare bug moves by
   about a third with the seeds; these move much less. Our random walk
   never runs a schedule twice, and stops early when it has run them all
   (prefix ``cancelled-task`` has 124): it then counts the runs it made.

Seeds are 0 .. seeds-1 for both tools; every failure line prints the seed.
Usage: ``python benchmarks/detangle_bench.py [--quick] [--seeds N] [--rate-runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import sessionguard.reference.harness as harness
from sessionguard.commands.explore import make_reduction
from sessionguard.loop import RunResult, explore_dfs, explore_pct, explore_random
from sessionguard.loop.controlled import ControlledLoop
from sessionguard.loop.controlled import add_observer as add_controlled_observer
from sessionguard.reference import refinement
from sessionguard.reference.harness import Outcome, findings_of, mismatch_of, scenario_run
from sessionguard.reference.scenarios import SCENARIOS

try:
    import detangle
    from detangle.errors import BugFound
except ImportError:  # pragma: no cover - depends on the environment
    detangle = None  # type: ignore[assignment]

_T = TypeVar("_T")
_U = TypeVar("_U")

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


def fresh_start() -> None:
    """Empty the refinement's process-wide model cache and collect garbage (see the module docstring)."""
    refinement._INDEXES.clear()
    gc.collect()


def in_turn(seed: int, ours: Callable[[], _T], theirs: Callable[[], _U]) -> tuple[_T, _U]:
    """Both searches from a fresh start, ours first for even seeds, theirs first for odd ones."""
    if seed % 2 == 0:
        fresh_start()
        first = ours()
        fresh_start()
        return first, theirs()
    fresh_start()
    second = theirs()
    fresh_start()
    return ours(), second


class Tally:
    """Failing runs counted under detangle without stopping it (section 3).

    While ``counting``, a mismatch found by the refinement check marks the run
    as failed and switches the check off for the rest of that run, as our
    loop does with an observer that raised; the run goes on to its end.
    """

    def __init__(self) -> None:
        self.counting = False
        self.failed = False
        self.failures = 0


TALLY = Tally()


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

    labels: dict[Any, str] = {}

    def task_label(task: Any) -> str:
        # Unique per task, like ours ("T<n>:<name>"): two jobs of one session share a name.
        # Made at first use and kept, as our loop does, rather than once per step.
        label = labels.get(task)
        if label is None:
            info = loop.task_info.get(task)
            label = labels[task] = f"T{info.id if info is not None else '?'}:{task.get_name()}"
        return label

    loop._execute = remember
    loop.task_label = task_label  # the refinement recognises a task's own step by its label

    def check() -> None:
        if TALLY.failed:
            return
        lane = last[0]
        task = getattr(lane, "task", None)
        try:
            observer(loop.steps - 1, task_label(task) if task is not None else "callbacks")
        except Exception:
            if not TALLY.counting:
                raise
            TALLY.failed = True

    detangle.invariant(check, "refinement")


harness.add_observer = _add_observer


def detangle_main(design: str, scenario: str, props: tuple[str, ...]) -> Callable[[], Any]:
    factory = scenario_run(design, SCENARIOS[scenario])

    async def main() -> None:
        TALLY.failed = False
        outcome: Outcome = await factory()
        bad = outcome.violated & set(props)
        if TALLY.counting:
            TALLY.failures += bool(bad) or TALLY.failed
            return
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


#: Each strategy compared: its label, our explorer, and detangle's strategy for a seed.
STRATEGY_PAIRS: tuple[tuple[str, Any, Any], ...] = (
    ("random", explore_random, lambda s: detangle.RandomWalk(seed=s)),
    ("pct:3", explore_pct, lambda s: detangle.PCT(seed=s, depth=3)),
)


def first_violation(seeds: int, budget: int) -> list[FirstViolation]:
    print(f"== 1. runs and time to the first violation, medians over seeds 0..{seeds - 1} (budget {budget} runs)")
    rows: list[FirstViolation] = []
    for design, scenario, props in TARGETS:
        ours_factory = scenario_run(design, SCENARIOS[scenario])
        theirs_main = detangle_main(design, scenario, props)
        for label, ours_explore, theirs_strategy in STRATEGY_PAIRS:
            ours: list[tuple[int, float, bool]] = []
            theirs: list[tuple[int, float, bool]] = []
            for seed in range(seeds):
                ex, their = in_turn(
                    seed,
                    partial(ours_explore, ours_factory, runs=budget, seed=seed, is_failure=our_predicate(props)),
                    partial(theirs_until_failure, theirs_main, theirs_strategy(seed), budget),
                )
                ours.append((ex.schedules, ex.seconds, ex.found))
                theirs.append(their)
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
            fresh_start()
            ex = explore_dfs(
                scenario_run(design, SCENARIOS[scenario]),
                reduction=make_reduction(name),
                is_failure=our_predicate(props),
                stop_on_failure=False,
                max_seconds=budget,
            )
            counts[name] = (ex.schedules, ex.exhausted, ex.seconds)
            cells.append(f"ours {name} {ex.schedules:,} ({'exhausted' if ex.exhausted else 'budget out'}, {ex.seconds:.1f}s)")
        fresh_start()
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


# --- 3. chance of failure per run, and cost per run ----------------------------------------

CHUNK = 250  # runs per search in section 3; the tools alternate chunk by chunk


def wilson(failures: int, runs: int) -> tuple[float, float]:
    """The 95% Wilson interval of a failure chance seen `failures` times in `runs` runs."""
    z = 1.96
    p = failures / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Rate:
    """Section 3 for one target and strategy: failing runs and seconds, per tool."""

    design: str
    scenario: str
    strategy: str
    ours_runs: int = 0
    ours_failures: int = 0
    ours_seconds: float = 0.0
    ours_exhausted: bool = False
    theirs_runs: int = 0
    theirs_failures: int = 0
    theirs_seconds: float = 0.0

    def expected(self, failures: int, seconds: float) -> float:
        """Expected seconds to the first failing run: cost per run / chance per run."""
        return seconds / failures if failures else math.inf

    @property
    def chance_ratio(self) -> float:
        return (self.ours_failures / self.ours_runs) / max(self.theirs_failures / self.theirs_runs, 1e-9)

    @property
    def cost_ratio(self) -> float:
        return (self.ours_seconds / self.ours_runs) / (self.theirs_seconds / self.theirs_runs)

    @property
    def time_ratio(self) -> float:
        return self.expected(self.ours_failures, self.ours_seconds) / self.expected(
            self.theirs_failures, self.theirs_seconds
        )


def theirs_counted(main: Callable[[], Any], strategy: Any, runs: int) -> tuple[int, int, float]:
    """Runs, failing runs (counted by TALLY, see there) and seconds of `runs` detangle runs."""
    TALLY.failures = 0
    started = time.perf_counter()
    stats = detangle.explore(main, runs=runs, strategy=strategy, **DETANGLE_OPTIONS)
    return stats.runs, TALLY.failures, time.perf_counter() - started


def rates(runs: int) -> list[Rate]:
    chunks = max(1, runs // CHUNK)
    print(
        f"== 3. chance that a run fails and cost per run, up to {chunks * CHUNK} runs per tool "
        f"in chunks of {CHUNK} (seeds 0..{chunks - 1})"
    )
    out: list[Rate] = []
    TALLY.counting = True
    try:
        for design, scenario, props in TARGETS:
            ours_factory = scenario_run(design, SCENARIOS[scenario])
            theirs_main = detangle_main(design, scenario, props)
            for label, ours_explore, theirs_strategy in STRATEGY_PAIRS:
                rate = Rate(design, scenario, label)
                for chunk in range(chunks):
                    ex, (runs_made, failures, seconds) = in_turn(
                        chunk,
                        partial(
                            ours_explore,
                            ours_factory,
                            runs=CHUNK,
                            seed=chunk,
                            is_failure=our_predicate(props),
                            stop_on_failure=False,
                        ),
                        partial(theirs_counted, theirs_main, theirs_strategy(chunk), CHUNK),
                    )
                    rate.ours_runs += ex.schedules
                    rate.ours_failures += ex.failure_count
                    rate.ours_seconds += ex.seconds
                    rate.ours_exhausted |= ex.exhausted
                    rate.theirs_runs += runs_made
                    rate.theirs_failures += failures
                    rate.theirs_seconds += seconds
                if rate.ours_exhausted:
                    # Its runs are then every schedule once, not independent draws:
                    # a chance per run would say nothing about the time to the first.
                    print(
                        f"   {design:<6} {scenario:<15} {label:<6} ours: every schedule run "
                        f"({rate.ours_runs} runs in {chunks} searches, {rate.ours_failures} failing); "
                        f"detangle {rate.theirs_runs} runs p={rate.theirs_failures / rate.theirs_runs:.4f}; no ratio"
                    )
                    continue
                out.append(rate)
                cells = []
                for name, runs_made, failures, seconds in (
                    ("ours", rate.ours_runs, rate.ours_failures, rate.ours_seconds),
                    ("detangle", rate.theirs_runs, rate.theirs_failures, rate.theirs_seconds),
                ):
                    low, high = wilson(failures, runs_made)
                    cells.append(
                        f"{name} {runs_made} runs p={failures / runs_made:.4f} [{low:.4f}, {high:.4f}] "
                        f"{seconds / runs_made * 1000:.3f} ms/run -> {rate.expected(failures, seconds) * 1000:6.1f} ms"
                    )
                print(
                    f"   {design:<6} {scenario:<15} {label:<6} " + " | ".join(cells)
                    + f" | ratio chance {rate.chance_ratio:.2f}, cost {rate.cost_ratio:.2f}, expected time {rate.time_ratio:.2f}"
                )
                sys.stdout.flush()
    finally:
        TALLY.counting = False
    return out


def measure(args: argparse.Namespace) -> list[FirstViolation]:
    """Every section, as `args` (from `options`) asks, printed as they are measured; section 1's rows."""
    print(f"Python {sys.version.split()[0]}; detangle {getattr(detangle, '__version__', '?')}")
    rows = first_violation(args.seeds, args.runs)
    ratios = [r.time_ratio for r in rows]
    print(f"   geometric mean of the time ratios (ours / detangle): {statistics.geometric_mean(ratios):.2f}")
    exhaust(args.budget)
    if args.rate_runs:
        measured = rates(args.rate_runs)
        finite = [r.time_ratio for r in measured if 0 < r.time_ratio < math.inf]
        if finite:
            print(f"   geometric mean of the expected-time ratios (ours / detangle): {statistics.geometric_mean(finite):.2f}")
    return rows


def options(argv: Any = None) -> argparse.Namespace:
    """The command line, with the --quick defaults filled in (bad input exits 2 with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, a smaller budget")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for the medians (default 20; quick 3)")
    parser.add_argument("--runs", type=int, default=2000, help="run budget per search in section 1")
    parser.add_argument("--budget", type=float, default=None, help="seconds per search in section 2 (default 120; quick 10)")
    parser.add_argument(
        "--rate-runs", type=int, default=None,
        help=f"runs per tool for each row of section 3, a multiple of {CHUNK} (default 2000; quick 500; 0 skips it)",
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else (3 if args.quick else 20)
    args.budget = args.budget if args.budget is not None else (10.0 if args.quick else 120.0)
    args.rate_runs = args.rate_runs if args.rate_runs is not None else (500 if args.quick else 2000)
    if args.seeds < 1 or args.runs < 1 or args.budget <= 0:
        parser.error("--seeds and --runs must be at least 1, --budget positive")
    if args.rate_runs < 0 or args.rate_runs % CHUNK:
        parser.error(f"--rate-runs must be 0 or a positive multiple of {CHUNK}, e.g. 2000")
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
