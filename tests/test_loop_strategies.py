"""The random walk's schedule tree, PCT's estimate of k, and choosers asked only at decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from test_loop_explore import bank

from sessionguard.loop import explore_dfs, explore_random, run
from sessionguard.loop.pct import RunLengths
from sessionguard.loop.random_walk import RandomChooser, ScheduleTree


def test_random_walk_runs_every_schedule_once_then_says_exhausted() -> None:
    dfs = explore_dfs(bank(), stop_on_failure=False)
    assert dfs.exhausted
    seen: list[tuple[int, ...]] = []

    def record(result: object) -> bool:
        seen.append(result.schedule.choices)  # type: ignore[attr-defined]
        return result.verdict != "ok"  # type: ignore[attr-defined]

    walk = explore_random(bank(), runs=10_000, seed=5, is_failure=record, stop_on_failure=False)
    assert walk.exhausted and "exhausted" in walk.summary()
    # Exactly the schedules DFS enumerates, each once, with the same verdicts.
    assert len(seen) == len(set(seen)) == walk.schedules == dfs.schedules
    assert walk.failure_count == dfs.failure_count and walk.verdicts == dfs.verdicts


def test_plain_random_chooser_repeats_schedules() -> None:
    # Without the tree the same walk draws some schedules again: what the tree saves.
    runs = [run(bank(), RandomChooser(seed)).schedule.choices for seed in range(60)]
    assert len(set(runs)) < len(runs)


def test_random_walk_of_a_nondeterministic_program_never_claims_exhausted() -> None:
    calls = {"n": 0}

    async def main() -> None:
        calls["n"] += 1

        async def work() -> None:
            await asyncio.sleep(0)

        # A different number of tasks each run: the same choices, other lanes.
        await asyncio.gather(*(work() for _ in range(1 + calls["n"] % 3)))

    walk = explore_random(main, runs=300, seed=1, stop_on_failure=False)
    assert walk.schedules == 300 and not walk.exhausted


def test_schedule_tree_stays_within_its_bound() -> None:
    tree = ScheduleTree(max_branches=3)
    for seed in range(200):
        chooser = RandomChooser(seed, tree)
        chooser.record(run(bank(noise=1), chooser))
    assert tree.branches == 3 and not tree.exhausted


def test_run_lengths_median_ignores_an_outlier() -> None:
    lengths = RunLengths()
    assert lengths.median() == 0
    for steps in (20, 22, 21, 100_000, 23):
        lengths.add(steps)
    assert lengths.median() == 22  # the longest run (an earlier estimate) would be 100,000
    lengths.add(19)
    assert lengths.median() == 21  # lower median of 19, 20, 21, 22, 23, 100000


class LastLane:
    """Always the newest ready lane; records the lanes it was offered."""

    def __init__(self, decisions_only: bool) -> None:
        self.decisions_only = decisions_only
        self.offers: list[int] = []

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        self.offers.append(len(lanes))
        return len(lanes) - 1


def test_decisions_only_chooser_is_asked_only_when_there_is_a_choice() -> None:
    every, decisions = LastLane(False), LastLane(True)
    full = run(bank(noise=2), every)
    fast = run(bank(noise=2), decisions)
    assert fast.schedule == full.schedule and fast.verdict == full.verdict
    assert decisions.offers == [n for n in every.offers if n > 1]
    assert 1 in every.offers and len(decisions.offers) < len(every.offers)


def test_a_walk_on_an_exhausted_tree_is_plain_and_keeps_the_proof() -> None:
    tree = ScheduleTree()
    for seed in range(200):
        chooser = RandomChooser(seed, tree)
        chooser.record(run(bank(), chooser))
        if tree.exhausted:
            break
    assert tree.exhausted
    chooser = RandomChooser(999, tree)
    chooser.record(run(bank(), chooser))  # one more run, drawn like a plain walk
    assert tree.exhausted
