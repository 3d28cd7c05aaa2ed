"""Stateful search (loop/stateful.py): one visit per reachable program state.

The fingerprint must tell apart any two states that can behave differently
(a value held only on a suspended coroutine's stack included) and must not
tell apart two states that are the same heap reached in different orders.
The search must reach the same verdicts and properties as the stateless DFS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

import pytest
from test_loop_controlled import main_leaving_a_spinner
from test_loop_reduction import _explore

from sessionguard.loop import ControlledLoop, VisitedStates, explore_dfs, fingerprint, raised
from sessionguard.loop.stateful import check_support, frame_slots
from sessionguard.model.vocabulary import RUNNER_HANGS, RUNNER_RAISES, SEND_RAISES
from sessionguard.reference.fakes import FaultPlan
from sessionguard.reference.harness import scenario_run
from sessionguard.reference.scenarios import SCENARIOS

Factory = Callable[[], Coroutine[Any, Any, None]]


def test_this_interpreter_is_supported() -> None:
    check_support()  # raises UnsupportedState otherwise


def test_frame_slots_see_the_value_stack() -> None:
    marker = ["held on the stack"]

    class Pause:
        def __await__(self) -> Any:
            yield None

    async def holder(arg: str) -> object:
        return (arg, marker, await Pause())

    coro = holder("an argument")
    coro.send(None)
    try:
        assert coro.cr_frame is not None
        slots = frame_slots(coro.cr_frame)
    finally:
        coro.close()
    assert any(s is marker for s in slots), "a value on the stack, in no local variable"
    assert "an argument" in slots


def _each_state(factory: Factory, visit: Callable[[ControlledLoop, Any], None]) -> None:
    """Call ``visit(loop, path)`` at every step of every schedule of the program."""

    class Visit:
        def alternatives(self, node: Any, path: Any) -> range:
            return range(1, len(node.labels))

        def after_run(self, path: Any, result: Any) -> None:
            return None

        def first(self, node: Any, path: Any, may_deviate: bool) -> int:
            loop = asyncio.get_running_loop()
            assert isinstance(loop, ControlledLoop)
            visit(loop, path)
            return 0

    explore_dfs(factory, reduction=Visit(), stop_on_failure=False)


def _states_at(factory: Factory, step: int | None) -> dict[Hashable, list[tuple[int, ...]]]:
    """Every distinct fingerprint the program has just before loop step `step` (None: any), with its schedules."""
    seen: dict[Hashable, list[tuple[int, ...]]] = {}

    def record(loop: ControlledLoop, path: Any) -> None:
        if step is None or loop.steps == step:
            key, opaque = fingerprint(loop)
            assert not opaque
            seen.setdefault(key, []).append(tuple(n.choice for n in path))

    _each_state(factory, record)
    return seen


def two_writers(shared: bool) -> Factory:
    """Two tasks that each add one item, to one shared set or each to its own list."""

    async def main() -> None:
        box: set[str] = set()
        lists: dict[str, list[str]] = {"a": [], "b": []}

        async def writer(name: str) -> None:
            await asyncio.sleep(0)
            if shared:
                box.add(name)
            else:
                lists[name].append(name)
            await asyncio.sleep(0)

        tasks = [asyncio.create_task(writer("a")), asyncio.create_task(writer("b"))]
        await asyncio.gather(*tasks)

    return main


@pytest.mark.parametrize("shared", [False, True])
def test_independent_orders_reach_one_state(shared: bool) -> None:
    # After both writers wrote, whichever wrote first, the heap is the same
    # (a set's iteration order is not part of the state).
    exploration = explore_dfs(two_writers(shared), stop_on_failure=False)
    cached = VisitedStates()
    reduced = explore_dfs(two_writers(shared), reduction=cached, stop_on_failure=False)
    assert exploration.exhausted and reduced.exhausted
    assert cached.pruned > 0 and reduced.schedules < exploration.schedules


def test_different_heaps_stay_apart() -> None:
    # Just before step 3 the runs differ in which writer has run: different states.
    states = _states_at(two_writers(shared=False), 3)
    assert len(states) > 1


def stack_race() -> Factory:
    """A bug visible only through a value held on a suspended coroutine's stack.

    `reader` reads the box and keeps the value on its value stack across an
    await. Run FIFO, the writer writes first and the reader sees 1; the other
    order reads 0. After both steps the two runs have the same variables
    everywhere; only the reader's stack differs. Merge them and the bad order
    (reached second) would never be explored.
    """

    async def main() -> None:
        box = [0]
        out: list[int] = []

        async def writer() -> None:
            box[0] = 1

        async def one() -> int:
            await asyncio.sleep(0)
            return 1

        async def reader() -> None:
            out.append(box[0] + await one())

        w = asyncio.create_task(writer())
        r = asyncio.create_task(reader())
        await asyncio.gather(w, r)
        assert out == [2], f"the reader read the box before the writer wrote it: {out}"

    return main


def test_a_value_on_the_stack_keeps_states_apart() -> None:
    stateless = explore_dfs(stack_race(), is_failure=raised(AssertionError), stop_on_failure=False)
    assert stateless.found  # the race is real
    cached = VisitedStates()
    stateful = explore_dfs(stack_race(), reduction=cached, is_failure=raised(AssertionError), stop_on_failure=False)
    assert stateful.exhausted and stateful.found


def test_unbounded_search_ends_on_a_loop_that_never_settles() -> None:
    ex = explore_dfs(main_leaving_a_spinner, reduction=VisitedStates(), max_steps=40, stop_on_failure=False)
    assert ex.exhausted


def _two_spinners() -> Factory:
    async def main() -> None:
        async def spin() -> None:
            while True:
                await asyncio.sleep(0)

        await asyncio.gather(spin(), spin())

    return main


def test_a_run_that_comes_back_to_a_state_goes_on_to_the_step_limit() -> None:
    # Both spinners are back where they were after every round: the run is in
    # a cycle. It is neither cut (the stateless search would report it hung)
    # nor branched again at every repetition (2**40 schedules); and since a
    # run reached the step limit, the search claims no exhaustion.
    cached = VisitedStates()
    ex = explore_dfs(_two_spinners(), reduction=cached, max_steps=40, stop_on_failure=False)
    assert set(ex.verdicts) == {"hung"}
    assert not cached.complete and not ex.exhausted
    assert cached.paths() is None
    assert ex.schedules < 20


def test_states_reached_in_different_numbers_of_steps_are_one() -> None:
    # The order of a wake-up and a cancellation decides whether the woken
    # task spends a step of its own; the heap after both is the same.
    async def main() -> None:
        gate = asyncio.Event()

        async def waiter() -> None:
            await gate.wait()

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)

        async def opener() -> None:
            gate.set()

        async def stopper() -> None:
            task.cancel()

        await asyncio.gather(opener(), stopper())
        await asyncio.gather(task, return_exceptions=True)

    reached_at = [{len(schedule) for schedule in schedules} for schedules in _states_at(main, None).values()]
    assert any(len(steps) > 1 for steps in reached_at), "one state, reached after different numbers of steps"
    full = explore_dfs(main, stop_on_failure=False)
    cached = VisitedStates()
    ex = explore_dfs(main, reduction=cached, stop_on_failure=False)
    assert full.exhausted and ex.exhausted and cached.paths() == full.schedules
    assert cached.states < sum(len(steps) for steps in reached_at)


# --- the gateway's scenarios ------------------------------------------------------------

# Small enough to exhaust without any bound both ways (stateless is the slow side).
EXHAUSTIBLE = [
    ("prefix", "cancelled-task"),
    ("prefix", "dead-owner"),
    ("seed", "dead-owner-cancelled"),
    ("seed", "cancelled-task"),
    ("reference", "dead-owner"),
    ("reference", "send-hangs"),
]


@pytest.mark.parametrize(("design", "scenario"), EXHAUSTIBLE)
def test_same_verdicts_and_properties_as_stateless(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none")
    cached, cached_props = _explore(design, scenario, "stateful")
    assert full.exhausted and cached.exhausted
    assert cached_props == full_props
    assert set(cached.verdicts) == set(full.verdicts)
    assert cached.schedules < full.schedules
    if design == "reference":
        assert not full_props and set(full.verdicts) == {"ok"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("design", "scenario"),
    [("prefix", "send-hangs"), ("seed", "send-hangs"), ("seed", "cancel-followup"), ("reference", "cancel-followup")],
)
def test_same_verdicts_and_properties_as_stateless_slow(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none")
    cached, cached_props = _explore(design, scenario, "stateful")
    assert full.exhausted and cached.exhausted
    assert set(cached.verdicts) == set(full.verdicts) and cached_props == full_props


@pytest.mark.parametrize(("design", "scenario"), [("prefix", "stop-midrun"), ("seed", "double-stop")])
def test_same_properties_under_a_deviation_bound(design: str, scenario: str) -> None:
    full, full_props = _explore(design, scenario, "none", max_deviations=1)
    cached, cached_props = _explore(design, scenario, "stateful", max_deviations=1)
    assert full.exhausted and cached.exhausted
    assert cached_props == full_props and set(cached.verdicts) == set(full.verdicts)


def test_stateful_finds_the_11016_trap() -> None:
    _, violated = _explore("prefix", "dead-owner", "stateful", max_schedules=50)
    assert {"no-orphan-guard", "no-trapped-session"} <= violated


def test_cli_stateful_exhausts_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionguard.cli import main

    code = main(
        ["explore", "--design", "reference", "--scenario", "cancelled-task", "--strategy", "dfs", "--reduction", "stateful"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "reduction=stateful" in out and "exhausted" in out and "states" in out


@pytest.mark.parametrize(
    ("design", "scenario"), [("prefix", "dead-owner"), ("seed", "cancelled-task"), ("reference", "send-hangs")]
)
def test_the_state_graph_counts_the_stateless_schedules(design: str, scenario: str) -> None:
    # Every path of the explored state graph is one schedule of the stateless
    # search: if two different states had been merged, the counts would differ.
    full, _ = _explore(design, scenario, "none")
    cached = VisitedStates()
    explore_dfs(scenario_run(design, SCENARIOS[scenario]), reduction=cached, stop_on_failure=False)
    assert full.exhausted
    assert cached.paths() == full.schedules


def test_a_timer_made_already_due_puts_the_loops_batches_back_into_the_state() -> None:
    # Where the loop's current batch ends decides when a timer made with no
    # delay joins the queue: once a run makes one, the search starts over
    # with the batches in the state, and stays exact.
    def program(outcomes: set[tuple[str, ...]]) -> Factory:
        async def main() -> None:
            log: list[str] = []
            loop = asyncio.get_running_loop()

            async def early() -> None:
                loop.call_later(0, log.append, "timer")
                await asyncio.sleep(0)
                log.append("early")

            async def late() -> None:
                await asyncio.sleep(0)
                log.append("late")
                await asyncio.sleep(0)
                log.append("later")

            await asyncio.gather(early(), late())
            outcomes.add(tuple(log))

        return main

    everything: set[tuple[str, ...]] = set()
    full = explore_dfs(program(everything), stop_on_failure=False)
    seen: set[tuple[str, ...]] = set()
    cached = VisitedStates()
    ex = explore_dfs(program(seen), reduction=cached, stop_on_failure=False)
    assert cached.restarts == 1 and full.exhausted and ex.exhausted
    assert seen == everything and len(everything) > 1
    assert cached.paths() == full.schedules


@pytest.mark.parametrize("scenario", ["stop-midrun", "cancelled-task"])
def test_the_gateway_makes_no_timer_already_due(scenario: str) -> None:
    cached = VisitedStates()
    explore_dfs(scenario_run("reference", SCENARIOS[scenario]), reduction=cached, stop_on_failure=False)
    assert cached.restarts == 0 and cached.states > 0


def test_how_often_a_finished_task_was_cancelled_is_not_state() -> None:
    # Two stoppers cancel the same task; the second finds it still running or
    # already cancelled, depending on the order. Once it has finished, the two
    # histories leave the same state.
    async def main() -> None:
        async def work() -> None:
            await asyncio.sleep(3600)

        task = asyncio.create_task(work())
        await asyncio.sleep(0)

        async def stopper() -> None:
            task.cancel()

        await asyncio.gather(stopper(), stopper(), asyncio.gather(task, return_exceptions=True))

    ends: dict[int, set[Hashable]] = {}  # the worker's cancellation count -> states with it

    def at_the_end(loop: ControlledLoop, path: Any) -> None:
        main_task, *others = loop.tasks()
        if len(others) == 3 and all(t.done() for t in others) and not main_task.done():
            ends.setdefault(others[0].cancelling(), set()).add(fingerprint(loop)[0])

    _each_state(main, at_the_end)
    assert set(ends) == {1, 2}, "both histories must occur for this test to mean anything"
    assert ends[1] & ends[2]
    full = explore_dfs(main, stop_on_failure=False)
    cached = VisitedStates()
    explore_dfs(main, reduction=cached, stop_on_failure=False)
    assert cached.paths() == full.schedules


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["followup-error", "double-stop"])
def test_reference_is_exhausted_where_the_stateless_search_never_ends(scenario: str) -> None:
    # Billions of schedules (counted on the state graph), tens of thousands of
    # states: every one checked against the model, no mismatch, no violation.
    cached = VisitedStates()
    ex = explore_dfs(scenario_run("reference", SCENARIOS[scenario]), reduction=cached, stop_on_failure=False)
    assert ex.exhausted and cached.complete and not cached.opaque
    assert set(ex.verdicts) == {"ok"} and not ex.failure_count
    paths = cached.paths()
    assert paths is not None and paths > 1000 * (ex.schedules + cached.pruned)


def test_where_lanes_stand_in_the_ready_queue_is_not_state_without_a_bound() -> None:
    # Two wakers set two events in either order: the waiters' wake-ups stand
    # in the queue in the order the events were set, and nothing else differs.
    async def main() -> None:
        first, second = asyncio.Event(), asyncio.Event()

        async def wake(event: asyncio.Event) -> None:
            event.set()

        waiters = [
            asyncio.create_task(first.wait(), name="wait-first"),
            asyncio.create_task(second.wait(), name="wait-second"),
        ]
        await asyncio.sleep(0)
        for event in (first, second):
            asyncio.create_task(wake(event))  # noqa: RUF006  (nothing holds a finished waker)
        await asyncio.gather(*waiters)

    queue: dict[tuple[str, ...], set[str]] = {}  # the waiters' order in the queue -> states
    canonical: dict[tuple[str, ...], set[str]] = {}

    def both_woken(loop: ControlledLoop, path: Any) -> None:
        labels = [loop._label(h) for h in loop._ready if not h.cancelled()]  # type: ignore[attr-defined]
        lanes = tuple(label.partition(":")[2] for label in labels)
        if sorted(lanes) == ["wait-first", "wait-second"]:
            queue.setdefault(lanes, set()).add(fingerprint(loop)[0])
            canonical.setdefault(lanes, set()).add(fingerprint(loop, queue_order=False)[0])

    _each_state(main, both_woken)
    assert len(queue) == 2, "both queue orders must occur for this test to mean anything"
    one, other = queue.values()
    assert not one & other
    one, other = canonical.values()
    assert one & other
    full = explore_dfs(main, stop_on_failure=False)
    cached = VisitedStates()
    explore_dfs(main, reduction=cached, stop_on_failure=False)
    assert cached.paths() == full.schedules


def test_faults_armed_for_different_calls_in_either_order_are_one_state() -> None:
    def state(*armed: str) -> object:
        return FaultPlan(armed=list(armed)).__sessionguard_state__()

    # A runner call takes the first runner fault, a send the first send fault.
    assert state(RUNNER_RAISES, SEND_RAISES) == state(SEND_RAISES, RUNNER_RAISES)
    assert state(RUNNER_RAISES, RUNNER_HANGS) != state(RUNNER_HANGS, RUNNER_RAISES)
