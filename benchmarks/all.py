"""Every comparison benchmark in one command, ending in one table of headline ratios.

    python benchmarks/all.py            # full runs: about 5 minutes on 2 cores
    python benchmarks/all.py --quick    # smaller bounds and budgets: about 1.5 minutes

Runs the parts one after the other in this process, each printing its own rows
as it measures them (in the part's own script's format), then prints one
table whose every number was measured in this run, side by side:

1. controlled loop / stock asyncio: cost per loop step of the same workload
   (``explore_bench.py`` section 2), then its time to the first #11016 trap;
2. reduced / naive: runs of the unbounded DFS with DPOR (with sleep sets)
   and with the stateful search against no reduction, per design and
   scenario, with whether the verdicts and violated properties agree
   (``reduction_bench.py`` part 1). The full run takes the scenarios of
   ``FULL_REDUCTION_SCENARIOS``, whose unbounded search without reduction
   finishes within the two-minute budget. Then the largest named scenario of
   ``reference``: stateful against no reduction with a deviation bound
   (both run), and the unbounded stateful search against the number of
   schedules the naive search would run, counted on the state graph the
   stateful search explored (the naive search does not finish there);
3. ours / Spin: the state count of each with every reduction off (equal or
   not, and the safety verdicts), and the total wall time of the three
   designs at ``spin_bench.SPEED_BOUND`` with each tool's reductions on,
   Spin's compile included (``spin_bench.py`` parts 1 and 2);
4. ours / detangle: time to the first violation, median over seeds 0..19,
   per design, scenario and strategy (``detangle_bench.py``), then per
   design and scenario with each tool's fastest strategy there; --quick keeps
   the 20 seeds (a median of a few seeds swings with one lucky seed) and
   shortens the exhaustion budgets.

A part whose tool is missing (spin and gcc, detangle) says so in its table
row instead of a ratio. Exits 1 when a count or verdict differs (the part's
own rows print the command that replays it), 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable

import explore_bench
import reduction_bench
import spin_bench

from sessionguard.model.promela import SpinError, spin_available
from sessionguard.reference.scenarios import SCENARIOS

#: One table row: what is compared, the ratio (or a verdict), how it was measured.
Row = tuple[str, str, str]

#: Part 2 of the full run: the quick scenarios and three larger ones, all
#: exhausted by the DPOR search of `reference` within the default budget.
FULL_REDUCTION_SCENARIOS = (*reduction_bench.QUICK_SCENARIOS, "cancel-followup", "runner-error", "send-failure")

#: Part 4, quick or not: the seeds of detangle_bench's full run.
DETANGLE_SEEDS = 20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}, {cpu_model()}, {os.cpu_count()} cores"
    )


def part(number: int, title: str) -> None:
    print(f"\n######## {number}/4 {title}", flush=True)


# --- 1. the controlled loop against stock asyncio ----------------------------------------


def loop_rows(quick: bool) -> list[Row]:
    part(1, "controlled loop vs stock asyncio (benchmarks/explore_bench.py)")
    if not quick:
        explore_bench.rates(300)
    cost = explore_bench.loop_cost(1000)
    explore_bench.first_trap(5 if quick else 20)
    per_step = f"{cost.controlled_seconds / cost.steps * 1e6:.2f} vs {cost.stock_seconds / cost.steps * 1e6:.2f} us"
    return [
        (
            "controlled loop / stock asyncio, cost per step",
            f"{cost.ratio:.2f}",
            f"{per_step} per step; same workload, {cost.steps} steps per run, {cost.runs} runs each",
        )
    ]


# --- 2. partial-order reduction of the exhaustive DFS ------------------------------------


def reduction_rows(quick: bool) -> tuple[list[Row], int, tuple[int, int]]:
    """The table rows, how many rows' verdicts differ, and (paths equal to naive counts, rows compared)."""
    part(2, "DFS with DPOR and stateful vs no reduction (benchmarks/reduction_bench.py part 1)")
    argv = ["--reductions", "none,dpor,stateful", "--skip-bounded"]
    argv += ["--quick"] if quick else ["--scenarios", ",".join(FULL_REDUCTION_SCENARIOS)]
    args = reduction_bench.options(argv)
    results = reduction_bench.measure(args)
    rows: list[Row] = []
    paths_checked = [0, 0]
    for label, index in (("DPOR", 1), ("stateful", 2)):
        both_exhausted: list[float] = []
        for r in results.unbounded:
            naive, reduced = r.sides[0], r.sides[index]
            what = f"{label} / naive runs, exhaustive DFS: {r.design} {r.scenario}"
            agree = reduction_bench.agreement(naive, reduced)
            if not reduced.exhausted:
                rows.append((what, "-", f"{label} not exhausted in {args.budget:g} s ({reduced.runs:,} runs); {agree}"))
                continue
            value = reduced.runs / max(naive.runs, 1)
            if naive.exhausted:
                both_exhausted.append(value)
                ratio, naive_cell = f"{value:.3f}", f"{naive.runs:,}"
                if reduced.paths is not None:
                    paths_checked[0] += reduced.paths == naive.runs
                    paths_checked[1] += 1
            else:
                # The naive count is only a lower bound, so the ratio is an upper bound.
                ratio, naive_cell = f"<= {value:.3f}", f">= {naive.runs:,} (budget of {args.budget:g} s out)"
            rows.append((what, ratio, f"{label} {reduced.runs:,} vs none {naive_cell}; {agree}"))
        if both_exhausted:
            rows.append(
                (
                    f"{label} / naive runs, geometric mean",
                    f"{statistics.geometric_mean(both_exhausted):.3f}",
                    f"over the {len(both_exhausted)} rows where both searches were exhausted",
                )
            )
    return rows, results.differ, (paths_checked[0], paths_checked[1])


def largest_rows(quick: bool, paths_checked: tuple[int, int], unbounded_budget: float) -> tuple[list[Row], int]:
    """The largest named scenario of `reference`: stateful against naive, unbounded and bounded."""
    scenario = max(SCENARIOS.values(), key=lambda sc: len(sc.actions)).name
    part(2, f"the largest named scenario, {scenario} (benchmarks/reduction_bench.py)")
    rows: list[Row] = []
    differ = 0
    depth = 1 if quick else 2
    budget = 600.0
    naive = reduction_bench.explore("reference", scenario, "none", depth, budget)
    cached = reduction_bench.explore("reference", scenario, "stateful", depth, budget)
    bounded = reduction_bench.row("reference", scenario, [naive, cached])
    differ += bounded.differ
    agree = reduction_bench.agreement(naive, cached)
    rows.append(
        (
            f"stateful / naive runs, DFS with <= {depth} deviations: reference {scenario}",
            f"{cached.runs / max(naive.runs, 1):.3f}" if naive.exhausted and cached.exhausted else "-",
            f"stateful {cached.runs:,} ({cached.seconds:.0f} s) vs none {naive.runs:,} ({naive.seconds:.0f} s); {agree}",
        )
    )
    if quick:
        return rows, differ
    unbounded = reduction_bench.explore("reference", scenario, "stateful", None, unbounded_budget)
    reduction_bench.row("reference", scenario, [unbounded])
    if unbounded.exhausted and unbounded.paths is not None:
        equal, compared = paths_checked
        rows.append(
            (
                f"stateful / naive runs, exhaustive DFS: reference {scenario}",
                f"{unbounded.runs / unbounded.paths:.2e}",
                f"stateful {unbounded.runs:,} runs ({unbounded.seconds:.0f} s, verdicts {','.join(sorted(unbounded.verdicts))}, "
                f"{','.join(sorted(unbounded.violated)) or 'nothing'} violated) vs none {unbounded.paths:,} schedules, "
                f"counted on the explored state graph, not run (the count equals the naive search's own "
                f"on {equal} of the {compared} rows above where both finished)",
            )
        )
    else:
        rows.append(
            (
                f"stateful, exhaustive DFS: reference {scenario}",
                "-",
                f"not exhausted in {unbounded_budget:.0f} s ({unbounded.runs:,} runs, {unbounded.states or 0:,} states)",
            )
        )
    return rows, differ


# --- 3. our checker against Spin ----------------------------------------------------------


def spin_rows(quick: bool) -> tuple[list[Row], bool]:
    """The table rows, and whether every state count and verdict was equal."""
    part(3, "our checker vs Spin (benchmarks/spin_bench.py)")
    speed_what = f"ours / Spin, total wall time at '{spin_bench.SPEED_BOUND[0]}'"
    count_what = "state count ours = Spin, every reduction off"
    missing = spin_available()
    if missing:
        print(f"skipped: {missing}")
        return [(speed_what, "-", f"skipped: {missing}"), (count_what, "-", f"skipped: {missing}")], True
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {spin_bench.tool_versions()}")
    try:
        space = spin_bench.same_space(spin_bench.BOUNDS[:1] if quick else spin_bench.BOUNDS)
        speed = spin_bench.speed(*spin_bench.SPEED_BOUND)
    except SpinError as error:
        print(f"Spin failed: {error}")
        failed = f"failed: {(str(error).splitlines() or [repr(error)])[0]}"
        return [(speed_what, "-", failed), (count_what, "-", failed)], False
    equal = sum(r.equal for r in space)
    same = sum(r.same for r in space)
    bounds = ", ".join(dict.fromkeys(r.bound for r in space))
    designs = len(dict.fromkeys(r.design for r in space))
    rows = [
        (
            speed_what,
            f"{speed.ratio:.2f}",
            f"ours {speed.ours_seconds:.1f} s (symmetry, history merging) vs Spin {speed.spin_seconds:.1f} s "
            f"(partial-order reduction; {speed.spin_compile_seconds:.1f} s of it compiling), {designs} designs",
        ),
        (
            count_what,
            f"{equal}/{len(space)} equal",
            f"bounds: {bounds}; safety verdicts the same in {same}/{len(space)}",
        ),
    ]
    return rows, equal == same == len(space)


# --- 4. our explorers against detangle's --------------------------------------------------


def detangle_rows(quick: bool) -> list[Row]:
    part(4, "our explorers vs detangle (benchmarks/detangle_bench.py)")
    # Imported here, last: importing it routes the harness's refinement check
    # through a shim that also runs under detangle's loop, which the parts
    # above should not pay for.
    import detangle_bench

    what = "ours / detangle, time to first violation"
    args = detangle_bench.options(["--quick", "--seeds", str(DETANGLE_SEEDS)] if quick else [])
    if not detangle_bench.AVAILABLE:
        print(f"skipped: {detangle_bench.MISSING}")
        return [(what, "-", f"skipped: {detangle_bench.MISSING}")]
    measured = detangle_bench.measure(args)
    rows: list[Row] = []
    for r in measured:
        missed = "".join(
            f"; {name} missed {n} of {r.seeds} seeds (counted at its whole budget)"
            for name, n in (("ours", r.ours_missed), ("detangle", r.theirs_missed))
            if n
        )
        rows.append(
            (
                f"{what}: {r.design} {r.scenario}, {r.strategy}",
                f"{r.time_ratio:.2f}",
                f"medians over seeds 0..{r.seeds - 1}: ours {r.ours_seconds * 1000:.1f} ms "
                f"({r.ours_runs:.0f} runs) vs detangle {r.theirs_seconds * 1000:.1f} ms ({r.theirs_runs:.0f} runs){missed}",
            )
        )
    rows.append(
        (
            f"{what}, geometric mean",
            f"{statistics.geometric_mean(r.time_ratio for r in measured):.2f}",
            f"over the {len(measured)} rows above",
        )
    )
    # Per scenario, as a user would search it: each tool with whichever of its
    # strategies found the violation soonest there (the rows above, regrouped).
    targets: dict[tuple[str, str], list[detangle_bench.FirstViolation]] = {}
    for r in measured:
        targets.setdefault((r.design, r.scenario), []).append(r)
    for (design, scenario), pairs in targets.items():
        ours = min(pairs, key=lambda r: r.ours_seconds)
        theirs = min(pairs, key=lambda r: r.theirs_seconds)
        rows.append(
            (
                f"{what}: {design} {scenario}, each tool's fastest strategy",
                f"{ours.ours_seconds / theirs.theirs_seconds:.2f}",
                f"ours {ours.strategy} {ours.ours_seconds * 1000:.1f} ms vs detangle {theirs.strategy} "
                f"{theirs.theirs_seconds * 1000:.1f} ms (medians of the rows above)",
            )
        )
    return rows


# --- the table ----------------------------------------------------------------------------


def table(rows: Iterable[Row]) -> str:
    """A Markdown table, padded so that it also reads as plain text."""
    header: Row = ("comparison", "ratio", "measured (this run, side by side)")
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]

    def render(cells: Row) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(header), rule, *(render(line) for line in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller bounds, seeds and budgets (a few minutes)")
    parser.add_argument(
        "--largest-budget",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="budget of the unbounded stateful search of the largest scenario (default 1800)",
    )
    args = parser.parse_args(argv)
    if not args.largest_budget > 0:
        parser.error(f"--largest-budget must be a positive number of seconds, got {args.largest_budget:g}")
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)

    rows = loop_rows(args.quick)
    reduced, differ, paths_checked = reduction_rows(args.quick)
    largest, largest_differ = largest_rows(args.quick, paths_checked, args.largest_budget)
    differ += largest_differ
    spin, spin_ok = spin_rows(args.quick)
    rows += reduced + largest + spin + detangle_rows(args.quick)

    seconds = time.perf_counter() - started
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n######## headline ratios ({'--quick' if args.quick else 'full run'}, {when})")
    print(f"machine: {machine()}")
    print(table(rows))
    problems = ([f"{differ} reduction rows with different verdicts"] if differ else []) + (
        [] if spin_ok else ["a Spin state count or verdict differs, or Spin failed (see part 3)"]
    )
    print(f"total {seconds:.0f} s; " + ("; ".join(problems) if problems else "every count and verdict agrees"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
