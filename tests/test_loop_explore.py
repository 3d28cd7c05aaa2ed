"""Schedule exploration: a check-then-act race found by DFS, random search and PCT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sessionguard.loop import (
    Exploration,
    Node,
    RunResult,
    explore_dfs,
    explore_pct,
    explore_random,
    raised,
    replay,
    run,
    shrink,
)

Scenario = Callable[[], Coroutine[Any, Any, None]]


def bank(
    *, head_start: int = 1, noise: int = 0, observer_state: dict[str, int] | None = None
) -> Scenario:
    """Two withdrawals of 80 from 100. Each checks the balance, awaits, then acts.

    The second one starts ``head_start`` awaits later, so in FIFO order the
    first has already acted when the second checks: only a schedule that lets
    the second check in between the first's check and act overdraws.
    ``noise`` adds that many unrelated tasks that just yield a few times.
    """

    async def main() -> None:
        state = observer_state if observer_state is not None else {}
        state["balance"] = 100

        async def withdraw(amount: int, delay: int) -> None:
            for _ in range(delay):
                await asyncio.sleep(0)
            if state["balance"] >= amount:  # check ...
                await asyncio.sleep(0)  # ... an await in between ...
                state["balance"] -= amount  # ... act

        async def bystander() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        others = [bystander() for _ in range(noise)]
        await asyncio.gather(withdraw(80, 0), withdraw(80, head_start), *others)
        assert state["balance"] >= 0, f"overdrawn: {state['balance']}"

    return main


def _assert_found_and_replays(found: Exploration) -> RunResult:
    assert found.found, found.summary()
    failure = found.first_failure
    assert failure is not None
    assert failure.verdict == "error"
    assert isinstance(failure.exception, AssertionError)
    again = replay(bank(), failure.schedule)
    assert again.verdict == "error"
    # (pytest's assertion rewriting appends an explanation to the message)
    assert str(again.exception) == str(failure.exception)
    assert str(again.exception).startswith("overdrawn: -60")
    assert again.schedule == failure.schedule
    return failure


def test_fifo_order_does_not_overdraw() -> None:
    assert run(bank()).verdict == "ok"


def test_dfs_finds_the_race_with_one_deviation() -> None:
    found = explore_dfs(bank(), max_deviations=1, is_failure=raised(AssertionError))
    failure = _assert_found_and_replays(found)
    assert failure.schedule.deviations == 1
    assert found.schedules <= 5


def test_random_finds_the_race() -> None:
    found = explore_random(bank(), runs=200, seed=7, is_failure=raised(AssertionError))
    _assert_found_and_replays(found)


def test_pct_finds_the_race() -> None:
    found = explore_pct(bank(), runs=200, depth=2, seed=7, is_failure=raised(AssertionError))
    _assert_found_and_replays(found)


def test_exhaustive_dfs_covers_the_space_and_counts() -> None:
    found = explore_dfs(bank(), stop_on_failure=False)
    assert found.exhausted
    assert found.schedules == found.verdicts["ok"] + found.verdicts["error"]
    assert 0 < found.failure_count < found.schedules
    assert found.seconds > 0 and found.schedules_per_second > 0
    assert "exhausted" in found.summary()
    # The same space again: stateless DFS is deterministic.
    assert explore_dfs(bank(), stop_on_failure=False).schedules == found.schedules


def test_deviation_bound_limits_the_space() -> None:
    zero = explore_dfs(bank(), max_deviations=0, stop_on_failure=False)
    assert zero.exhausted and zero.schedules == 1 and not zero.found
    one = explore_dfs(bank(), max_deviations=1, stop_on_failure=False)
    full = explore_dfs(bank(), stop_on_failure=False)
    assert one.exhausted and 1 < one.schedules < full.schedules


def test_observer_flags_the_violation_at_the_step_it_happens() -> None:
    state: dict[str, int] = {}

    def observer_factory() -> Callable[[int, str], None]:
        def check(step: int, label: str) -> None:
            assert state.get("balance", 0) >= 0, "balance below zero"

        return check

    found = explore_dfs(
        bank(observer_state=state), observer_factory=observer_factory, max_deviations=1
    )
    failure = found.first_failure
    assert failure is not None and failure.verdict == "violation"
    assert failure.violation_step is not None and failure.violation_step < failure.steps - 1


def _all_schedules(explore: Callable[..., Exploration], **kwargs: Any) -> list[Any]:
    found = explore(
        bank(), is_failure=lambda r: True, stop_on_failure=False, keep_failures=10**6, **kwargs
    )
    return [r.schedule for r in found.failures]


@pytest.mark.parametrize("explore", [explore_random, explore_pct])
def test_same_seed_same_schedules(explore: Callable[..., Exploration]) -> None:
    first = _all_schedules(explore, runs=40, seed=3)
    assert first == _all_schedules(explore, runs=40, seed=3)
    assert first != _all_schedules(explore, runs=40, seed=4)
    assert len(set(first)) > 1


def test_budgets_stop_an_exploration() -> None:
    # With noise: far more than 25 schedules (the random walk would exhaust bank()'s 21).
    found = explore_random(bank(noise=2), runs=10**6, seed=0, stop_on_failure=False, max_schedules=25)
    assert found.schedules == 25 and not found.exhausted


def test_shrink_reaches_the_fewest_deviations() -> None:
    scenario = bank(head_start=2, noise=2)  # the second check must overtake two steps
    predicate = raised(AssertionError)
    assert not explore_dfs(scenario, max_deviations=1, is_failure=predicate).found
    assert explore_dfs(scenario, max_deviations=2, is_failure=predicate).found
    found = explore_random(scenario, runs=500, seed=11, is_failure=predicate)
    failure = found.first_failure
    assert failure is not None and failure.schedule.deviations > 2
    small = shrink(scenario, failure.schedule, predicate)
    assert small is not None
    assert small.schedule.deviations == 2
    assert replay(scenario, small.schedule).verdict == "error"


def test_dfs_reports_a_nondeterministic_scenario() -> None:
    runs = {"n": 0}

    async def main() -> None:
        runs["n"] += 1

        async def work() -> None:
            await asyncio.sleep(0)

        # A different number of tasks each run: replaying a prefix cannot work.
        await asyncio.gather(*(work() for _ in range(1 + runs["n"] % 2)))

    found = explore_dfs(main, stop_on_failure=False, max_schedules=50)
    assert found.divergences > 0
    failure = found.first_failure
    assert failure is not None and failure.verdict == "divergence"
    assert "not deterministic" in failure.describe()


def test_reduction_hook_prunes_alternatives() -> None:
    class FifoOnly:
        def alternatives(self, node: Node, path: Any) -> list[int]:
            return []

        def after_run(self, path: Any, result: RunResult) -> None:
            pass

    found = explore_dfs(bank(), reduction=FifoOnly(), stop_on_failure=False)
    assert found.exhausted and found.schedules == 1
