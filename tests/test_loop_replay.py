"""Schedules: exact replay, divergence detection, Python-version guard, JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessionguard.loop import (
    ReplayDivergence,
    Schedule,
    ScheduleVersionError,
    python_version,
    replay,
    run,
)
from sessionguard.loop.random_walk import RandomChooser


async def three_workers() -> list[str]:
    log: list[str] = []

    async def worker(name: str) -> None:
        for i in range(3):
            log.append(f"{name}{i}")
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(n) for n in "abc"))
    return log


def test_replay_reproduces_a_random_schedule_exactly() -> None:
    first = run(three_workers, RandomChooser(5))
    assert first.schedule.deviations > 0
    again = replay(three_workers, first.schedule)
    assert again.verdict == "ok"
    assert again.value == first.value
    assert again.schedule == first.schedule


def test_schedule_json_round_trip() -> None:
    schedule = run(three_workers, RandomChooser(1), max_steps=500).schedule
    text = schedule.to_json()
    assert Schedule.from_json(text) == schedule
    assert f'"python": "{python_version()}"' in text
    assert replay(three_workers, Schedule.from_json(text)).verdict == "ok"
    with pytest.raises(ValueError, match="not a schedule"):
        Schedule.from_json("[1, 2]")


def test_replay_on_another_python_is_refused() -> None:
    schedule = run(three_workers).schedule
    foreign = Schedule(schedule.steps, python="3.99")
    with pytest.raises(ScheduleVersionError, match=r"recorded on Python 3\.99.*Replay it with"):
        replay(three_workers, foreign)


def test_divergence_names_step_expected_label_and_ready_lanes() -> None:
    flip = {"n": 0}

    async def main() -> None:
        flip["n"] += 1
        name = "left" if flip["n"] == 1 else "right"  # differs from one run to the next

        async def work() -> None:
            await asyncio.sleep(0)

        await asyncio.create_task(work(), name=name)

    recorded = run(main)
    result = replay(main, recorded.schedule)
    assert result.verdict == "divergence"
    problem = result.problem
    assert isinstance(problem, ReplayDivergence)
    assert problem.step == 1
    assert problem.expected == "T1:left"
    assert problem.ready == ("T1:right",)
    assert "step 1" in result.describe() and "'T1:left'" in result.describe()


def test_strict_replay_rejects_a_reordering_that_lenient_replay_follows() -> None:
    recorded = run(three_workers)
    steps = list(recorded.schedule.steps)
    # Pretend the lanes had been offered in another order at step 1.
    choice, label = steps[1]
    steps[1] = (choice + 1, label)
    edited = Schedule(tuple(steps))
    strict = replay(three_workers, edited)
    assert strict.verdict == "divergence"
    assert "different order" in strict.describe()
    lenient = replay(three_workers, edited, strict=False)
    assert lenient.verdict == "ok" and lenient.value == recorded.value


def test_run_ending_early_or_late_is_a_divergence() -> None:
    recorded = run(three_workers).schedule
    longer = Schedule(recorded.steps + ((0, "T9:ghost"),))
    assert replay(three_workers, longer).verdict == "divergence"
    shorter = Schedule(recorded.steps[:-3])
    result = replay(three_workers, shorter)
    assert result.verdict == "divergence"
    assert "schedule had ended" in result.describe()


def test_a_hung_run_replays_as_hung() -> None:
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    recorded = run(spin, RandomChooser(2), max_steps=300)
    assert recorded.verdict == "hung"
    assert replay(spin, recorded.schedule).verdict == "hung"


def _taskgroup_scenario(log: list[int]) -> Any:
    async def main() -> None:
        async def member(n: int) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append(n)
                raise

        async def boom() -> None:
            await asyncio.sleep(1)
            raise ValueError("boom")

        try:
            async with asyncio.TaskGroup() as tg:
                for n in range(4):
                    tg.create_task(member(n))
                tg.create_task(boom())
        except* ValueError:
            pass

    return main


def test_taskgroup_cancellation_order_is_deterministic() -> None:
    """TaskGroup cancels its tasks in set order. The loop's tasks hash by a
    per-loop number, so that order no longer changes from run to run."""
    first: list[int] = []
    recorded = run(_taskgroup_scenario(first))
    assert first == [0, 1, 2, 3]
    for _ in range(10):
        log: list[int] = []
        assert replay(_taskgroup_scenario(log), recorded.schedule).verdict == "ok"
        assert log == first


def test_taskgroup_with_address_hashed_tasks_diverges_instead_of_lying() -> None:
    """With a task factory of the user's own, tasks hash by address and the
    cancellation order varies; a replay must then say so, never run silently
    into a different schedule."""

    def plain_tasks(inner: Any) -> Any:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
            await inner()

        return main

    first: list[int] = []
    recorded = run(plain_tasks(_taskgroup_scenario(first)))
    outcomes = []
    for _ in range(10):
        log: list[int] = []
        result = replay(plain_tasks(_taskgroup_scenario(log)), recorded.schedule)
        assert result.verdict in ("ok", "divergence")
        if result.verdict == "ok":
            assert log == first  # a replay that passes is the same run
        outcomes.append(result.verdict)
    assert "divergence" in outcomes  # 4 tasks: the same set order 10 times is very unlikely
