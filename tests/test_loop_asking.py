"""When the loop asks a chooser: at decisions, at the steps it names in ``ask_at``, and what PCT makes of it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from test_loop_explore import bank

from sessionguard.loop import explore_pct, run
from sessionguard.loop.pct import PCTChooser


class Asked:
    """A decisions-only chooser that records the steps it is asked at (always FIFO)."""

    decisions_only = True

    def __init__(self, ask_at: Sequence[int]) -> None:
        self.ask_at = set(ask_at)
        self.asked: list[tuple[int, int]] = []

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        self.asked.append((step, len(lanes)))
        return 0


def test_a_decisions_only_chooser_is_also_asked_at_its_ask_at_steps() -> None:
    plain = Asked([])
    result = run(bank(noise=1), plain)
    single = [step for step, (choice, _) in enumerate(result.schedule.steps) if step not in dict(plain.asked)]
    assert single, "the scenario must have steps with a single lane ready"
    wanted = [single[0], single[-1]]
    named = Asked(wanted)
    again = run(bank(noise=1), named)
    assert again.schedule == result.schedule
    assert sorted(named.asked) == sorted(plain.asked + [(step, 1) for step in wanted])


class EveryStep(PCTChooser):
    """The same PCT run, asked at every step (the loop's old way of asking it)."""

    decisions_only = False


def test_pct_asked_only_at_decisions_and_change_points_makes_the_same_runs() -> None:
    differ = 0
    for seed in range(40):
        # k = 12 puts change points on single-lane steps as well as on decisions.
        fast = run(bank(noise=2), PCTChooser(seed, depth=3, k=12))
        full = run(bank(noise=2), EveryStep(seed, depth=3, k=12))
        assert fast.schedule == full.schedule and fast.verdict == full.verdict
        differ += any(choice for choice, _ in fast.schedule.steps)
    assert differ > 10  # the runs are not all FIFO: priorities and change points did act


def test_a_change_point_on_a_single_lane_step_demotes_that_lane() -> None:
    async def main() -> list[str]:
        order: list[str] = []
        started = asyncio.Event()

        async def worker(name: str) -> None:
            for i in range(3):
                order.append(name)
                if i == 1:
                    started.set()
                await asyncio.sleep(0)

        first = asyncio.get_running_loop().create_task(worker("b"), name="b")
        await started.wait()  # "b" runs alone until it sets the event
        await asyncio.gather(first, worker("c"))
        return order

    plain = Asked([])
    fifo = run(main, plain)
    decisions = {step for step, _ in plain.asked}
    alone = [step for step, (_, label) in enumerate(fifo.schedule.steps) if label == "T1:b" and step not in decisions]
    assert alone, "b must have a step with no other lane ready"
    for seed in range(4):
        chooser = PCTChooser(seed, depth=2, k=1)
        chooser._change = chooser.ask_at = {alone[0]: 1.0}  # demote "b" right there
        # Below every other lane, "b" runs its last step only when "c" is done,
        # whatever the random priorities.
        assert run(main, chooser).value == ["b", "b", "c", "c", "c", "b"]


def test_pct_exploration_still_finds_the_overdraft() -> None:
    found = explore_pct(bank(), runs=200, seed=3)
    assert found.found and found.first_failure is not None
