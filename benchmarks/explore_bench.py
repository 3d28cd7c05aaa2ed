"""Benchmark of the implementation-level explorer (issue 3).

Prints, in one run:

1. schedules per second for each design on a few scenarios, every step
   checked against the model (refinement) and every property judged;
2. the controlled loop's cost per step against the stock asyncio loop on the
   same workload (the adapter answering three messages, FIFO order, no
   refinement), as a ratio measured in the same process;
3. time to the first #11016 trap in `prefix` per strategy (DFS; random and
   PCT as the median over 20 seeds);
4. with ``--campaign``: 10,000 random and 10,000 PCT schedules of the
   `reference` design on the `all-faults` scenario (takes several minutes).

Usage: ``python benchmarks/explore_bench.py [--campaign] [--runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from sessionguard.loop import RunResult, explore_dfs, explore_pct, explore_random, run
from sessionguard.reference.adapter import make_adapter
from sessionguard.reference.fakes import (
    FaultPlan,
    Ledger,
    Message,
    ScriptedPlatform,
    ScriptedRunner,
)
from sessionguard.reference.harness import findings_of, scenario_run, violates
from sessionguard.reference.scenarios import SCENARIOS

TRAP = ("no-orphan-guard", "no-trapped-session", "dead-lock-heals", "stop-works")


def rates(runs: int) -> None:
    print(f"== 1. schedules per second (random, {runs} schedules each, refinement on)")
    for design in ("prefix", "seed", "reference"):
        for name in ("followups", "stop-midrun", "wedged-stop", "all-faults"):
            ex = explore_random(
                scenario_run(design, SCENARIOS[name]), runs=runs, seed=1, is_failure=lambda r: False
            )
            print(
                f"   {design:<9} {name:<12} {ex.schedules_per_second:8.0f} schedules/s "
                f"(longest run {ex.longest_run} steps)"
            )


async def workload() -> int:
    """The adapter answers three messages of one chat; returns the number of jobs."""
    ledger = Ledger()
    faults = FaultPlan()
    adapter = make_adapter("reference", ScriptedRunner(ledger, faults), ScriptedPlatform(ledger, faults))

    async def deliver(m: Message) -> None:
        ledger.accept(m)
        await adapter.handle_message(m)

    arrivals = [asyncio.get_running_loop().create_task(deliver(Message(0, "text", f"m{i}"))) for i in range(3)]
    await asyncio.gather(*arrivals)
    while True:
        live = [j.task for j in adapter.jobs if j.task is not None and not j.task.done()]
        if not live:
            return len(adapter.jobs)
        await asyncio.wait(live)


@dataclass
class LoopCost:
    """Seconds per run of the same workload on each loop; `steps` is counted on the controlled loop."""

    runs: int
    steps: int
    stock_seconds: float
    controlled_seconds: float

    @property
    def ratio(self) -> float:
        """Controlled / stock, per run and so per step."""
        return self.controlled_seconds / self.stock_seconds


def loop_cost(runs: int) -> LoopCost:
    print(f"== 2. controlled loop vs stock asyncio, same workload, {runs} runs each")
    steps = run(workload).steps

    def on_stock_loop() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(workload())
        loop.close()

    # Both loops are warmed up, then timed in alternating rounds: on a shared
    # machine the load drifts, and timing one loop wholly before the other
    # would charge that drift to one side of the ratio.
    on_stock_loop()
    run(workload)
    rounds = 10
    stock = controlled = 0.0
    for i in range(rounds):
        share = runs // rounds + (i < runs % rounds)
        t0 = time.perf_counter()
        for _ in range(share):
            on_stock_loop()
        stock += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(share):
            run(workload)
        controlled += time.perf_counter() - t0
    stock /= runs
    controlled /= runs
    t0 = time.perf_counter()
    for _ in range(runs):
        run(scenario_run("reference", SCENARIOS["followups"]))
    checked = (time.perf_counter() - t0) / runs
    print(f"   {steps} loop steps per run")
    print(f"   stock asyncio:      {stock * 1e6:8.1f} us/run  {stock / steps * 1e6:6.2f} us/step")
    print(f"   controlled loop:    {controlled * 1e6:8.1f} us/run  {controlled / steps * 1e6:6.2f} us/step")
    print(f"   ratio controlled/stock: {controlled / stock:.2f}x")
    print(f"   with the scenario harness and refinement check (followups): {checked * 1e6:8.1f} us/run")
    return LoopCost(runs, steps, stock, controlled)


def first_trap(seeds: int) -> None:
    print(f"== 3. time to the first #11016 trap in prefix ({', '.join(TRAP)}); last row: one-worker")
    cases = [(name, TRAP) for name in ("cancelled-task", "dead-owner", "wedged-stop", "stop-midrun", "all-faults")]
    # A race that needs an unusual interleaving: two workers at once.
    cases.append(("followups", ("one-worker",)))
    for name, props in cases:
        is_trap = violates(*props)
        factory = scenario_run("prefix", SCENARIOS[name])
        t0 = time.perf_counter()
        ex = explore_dfs(factory, max_deviations=3, is_failure=is_trap, max_seconds=60)
        dfs = (time.perf_counter() - t0, ex.schedules, ex.found)
        cells = [f"dfs {dfs[0] * 1000:7.1f} ms ({dfs[1]} schedules{'' if dfs[2] else ', NOT FOUND'})"]
        for label, explore in (("random", explore_random), ("pct", explore_pct)):
            times, counts, missed = [], [], 0
            for seed in range(seeds):
                t0 = time.perf_counter()
                ex = explore(factory, runs=2000, seed=seed, is_failure=is_trap)
                times.append(time.perf_counter() - t0)
                counts.append(ex.schedules)
                missed += not ex.found
            cells.append(
                f"{label} median {statistics.median(times) * 1000:7.1f} ms "
                f"({statistics.median(counts):.0f} schedules{f', {missed} missed' if missed else ''})"
            )
        print(f"   {name:<15} " + "; ".join(cells))


def campaign(runs: int) -> int:
    print(f"== 4. reference, all-faults: {runs} random + {runs} PCT schedules, all faults on")
    factory = scenario_run("reference", SCENARIOS["all-faults"])

    def bad(result: RunResult) -> bool:
        return result.verdict != "ok" or bool(findings_of(result))

    failures = 0
    for label, ex in (
        ("random", explore_random(factory, runs=runs, seed=1, is_failure=bad, stop_on_failure=False)),
        ("pct", explore_pct(factory, runs=runs, seed=1, is_failure=bad, stop_on_failure=False)),
    ):
        print(
            f"   {label}: {ex.schedules} schedules in {ex.seconds:.1f}s ({ex.schedules_per_second:.0f}/s); "
            f"verdicts {dict(ex.verdicts)}; {ex.failure_count} failing"
        )
        failures += ex.failure_count
        if ex.first_failure is not None:
            print(f"   first: {ex.first_failure.describe()} {findings_of(ex.first_failure)}")
    return failures


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", action="store_true", help="also run the 10,000 + 10,000 campaign")
    parser.add_argument("--campaign-runs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300, help="schedules per rate measurement")
    parser.add_argument("--seeds", type=int, default=20, help="seeds for the time-to-first-violation medians")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}")
    rates(args.runs)
    loop_cost(1000)
    first_trap(args.seeds)
    if args.campaign:
        return 1 if campaign(args.campaign_runs) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
