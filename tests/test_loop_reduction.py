"""Partial-order reduction of the exhaustive DFS (loop/reduction.py).

On small programs whose number of Mazurkiewicz traces is known, and on the
gateway's scenarios, where the verdicts and the violated properties must be
the same with and without reduction.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sessionguard.commands.explore import make_reduction
from sessionguard.loop import (
    DPOR,
    Exploration,
    RunResult,
    SleepSets,
    explore_dfs,
    raised,
)
from sessionguard.reference.harness import findings_of, scenario_run
from sessionguard.reference.scenarios import SCENARIOS

Factory = Callable[[], Coroutine[Any, Any, None]]
WORKER = "independent.<locals>.main.<locals>.worker"


def independent(tasks: int, steps: int) -> Factory:
    """`tasks` tasks of `steps` + 1 steps each that share nothing: one trace."""

    async def main() -> None:
        async def worker() -> None:
            for _ in range(steps):
                await asyncio.sleep(0)

        loop = asyncio.get_running_loop()
        for _ in range(tasks):
            loop.create_task(worker())
        await asyncio.sleep(1)  # until every worker is done

    return main


def bank() -> Factory:
    """The check-then-act race of the loop package's docstring."""

    async def main() -> None:
        state = {"balance": 100}

        async def withdraw(delay: int) -> None:
            for _ in range(delay):
                await asyncio.sleep(0)
            if state["balance"] >= 80:  # check
                await asyncio.sleep(0)  # another task may run here
                state["balance"] -= 80  # act

        await asyncio.gather(withdraw(0), withdraw(1))
        assert state["balance"] >= 0

    return main


@pytest.mark.parametrize(("tasks", "steps"), [(2, 2), (3, 2), (2, 3)])
@pytest.mark.parametrize("make", [SleepSets, DPOR])
def test_independent_tasks_take_one_schedule(tasks: int, steps: int, make: Any) -> None:
    full = explore_dfs(independent(tasks, steps), stop_on_failure=False)
    # The workers' steps interleave freely: a multinomial number of schedules.
    assert full.exhausted and full.schedules == math.factorial(tasks * (steps + 1)) // math.factorial(steps + 1) ** tasks
    reduced = explore_dfs(independent(tasks, steps), reduction=make([WORKER]), stop_on_failure=False)
    assert reduced.exhausted and reduced.schedules == 1


def test_undeclared_code_is_assumed_to_share_state() -> None:
    # Without the declaration the workers' steps all touch "shared": nothing is pruned.
    full = explore_dfs(independent(2, 2), stop_on_failure=False)
    reduced = explore_dfs(independent(2, 2), reduction=DPOR(), stop_on_failure=False)
    assert reduced.schedules == full.schedules


@pytest.mark.parametrize("make", [SleepSets, DPOR])
def test_check_then_act_race_is_still_found(make: Any) -> None:
    predicate = raised(AssertionError)
    full = explore_dfs(bank(), is_failure=predicate, stop_on_failure=False)
    reduced = explore_dfs(bank(), reduction=make(), is_failure=predicate, stop_on_failure=False)
    assert full.found and reduced.found and reduced.exhausted
    assert set(reduced.verdicts) == set(full.verdicts) == {"ok", "error"}
    # And with stop at the first failure, the failure replays.
    first = explore_dfs(bank(), reduction=make(), is_failure=predicate).first_failure
    assert first is not None and isinstance(first.exception, AssertionError)


def test_footprints_of_a_gateway_run() -> None:
    """The typing indicator is local, asyncio's wait callback and sleep's timer are plumbing."""
    reduction = make_reduction("dpor")
    explore_dfs(scenario_run("reference", SCENARIOS["followups"]), reduction=reduction, max_schedules=1)
    kinds = {(v.current.partition(":")[2].partition("(")[0] or v.current, v.footprint.kind) for v in reduction.visits if v.footprint}
    assert ("typing-k0", "local") in kinds
    assert ("cb", "plumbing") in kinds  # asyncio.wait's _on_completion
    assert ("T0#1", "plumbing") in kinds  # the timer of main's sleep(QUIET)
    assert all(kind == "shared" for lane, kind in kinds if lane.startswith("process") or lane.startswith("deliver"))


# --- the gateway's scenarios ------------------------------------------------------------


def _explore(design: str, scenario: str, reduction: str, **options: Any) -> tuple[Exploration, set[str]]:
    violated: set[str] = set()

    def judge(result: RunResult) -> bool:
        violated.update(findings_of(result))
        return result.verdict != "ok"

    ex = explore_dfs(
        scenario_run(design, SCENARIOS[scenario]),
        reduction=make_reduction(reduction),
        is_failure=judge,
        stop_on_failure=False,
        **options,
    )
    return ex, violated


# Small enough to exhaust without any bound, with and without reduction (a few seconds each).
EXHAUSTIBLE = [
    ("prefix", "cancelled-task"),
    ("prefix", "dead-owner"),
    ("seed", "dead-owner-cancelled"),
    ("seed", "cancelled-task"),
    ("reference", "dead-owner"),
]


@pytest.mark.parametrize(("design", "scenario"), EXHAUSTIBLE)
def test_same_verdicts_and_properties_unbounded(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none")
    reduced, reduced_props = _explore(design, scenario, "dpor")
    assert full.exhausted and reduced.exhausted
    assert set(reduced.verdicts) == set(full.verdicts)
    assert reduced_props == full_props
    assert reduced.schedules < full.schedules
    if design == "reference":
        assert not full_props and set(full.verdicts) == {"ok"}


@pytest.mark.parametrize(("design", "scenario"), [("prefix", "stop-midrun"), ("seed", "double-stop")])
def test_same_verdicts_and_properties_bounded(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none", max_deviations=1)
    reduced, reduced_props = _explore(design, scenario, "dpor", max_deviations=1)
    assert full.exhausted and reduced.exhausted
    assert reduced_props == full_props and set(reduced.verdicts) == set(full.verdicts)


@pytest.mark.parametrize("scenario", ["cancelled-task", "dead-owner"])
def test_reduction_finds_the_11016_trap(scenario: str) -> None:
    ex, violated = _explore("prefix", scenario, "dpor", max_schedules=50)
    assert {"no-orphan-guard", "no-trapped-session"} <= violated


@pytest.mark.slow
@pytest.mark.parametrize(
    ("design", "scenario"),
    [("prefix", "send-hangs"), ("seed", "send-hangs"), ("reference", "cancel-followup"), ("seed", "cancel-followup")],
)
def test_same_verdicts_and_properties_unbounded_slow(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none")
    reduced, reduced_props = _explore(design, scenario, "dpor")
    assert full.exhausted and reduced.exhausted
    assert set(reduced.verdicts) == set(full.verdicts) and reduced_props == full_props


def test_cli_refuses_reduction_without_dfs(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionguard.cli import main

    code = main(["explore", "--scenario", "dead-owner", "--strategy", "random", "--reduction", "dpor"])
    err = capsys.readouterr().err
    assert code == 2 and "--strategy dfs" in err and "Traceback" not in err


def test_cli_dpor_exhausts_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionguard.cli import main

    code = main(["explore", "--design", "reference", "--scenario", "dead-owner", "--strategy", "dfs", "--reduction", "dpor"])
    out = capsys.readouterr().out
    assert code == 0 and "reduction=dpor" in out and "exhausted" in out
