"""The checker's shortcuts give exactly what the plain way gives.

Each shortcut (the short path of `World.freeze()`, no more judging of a
property once it has its counterexample, the paused cycle collector) is a
speed-up only: these tests compare it with the plain way, on the steps of
real searches.
"""

from __future__ import annotations

import gc
from collections import deque

import pytest

from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model import world as world_module
from sessionguard.model.reference import Reference
from sessionguard.model.symmetry import canonical
from sessionguard.model.vocabulary import (
    NEW,
    STOP,
    TEXT,
    Handler,
    Level,
    Message,
    Session,
    State,
    Task,
)
from sessionguard.model.world import World


def _guard_numbers(w: World) -> dict[int, int]:
    """Guards in order of first use, numbered from 0 (what `freeze()` renames them to)."""
    order: dict[int, int] = {}
    guards = [s.guard for s in w.sessions]
    guards += [lv.guard for t in w._tasks for lv in t.levels]  # w.tasks would thaw them
    guards += [g for h in w.handlers for g in (h.old, h.cg)]
    for g in guards:
        if g is not None and g not in order:
            order[g] = len(order)
    return order


@pytest.mark.parametrize(
    "design, bounds",
    [
        ("prefix", Bounds(messages=3, faults=1, kinds=(TEXT, STOP))),
        ("seed", Bounds(messages=3, faults=1, kinds=(TEXT, STOP))),
        ("reference", Bounds(messages=3, faults=1, kinds=(TEXT, STOP))),
        ("seed", Bounds(messages=2, faults=1, sessions=2, kinds=(TEXT, STOP, NEW))),
    ],
)
def test_the_short_path_of_freeze_gives_the_general_result(design, bounds, monkeypatch):
    """Every world frozen in a search: the short path and the general one agree."""
    plain_freeze = World.freeze
    renames = {True: 0, False: 0}  # steps after which some guard or task is renamed, and the others

    def compared(w: World) -> State:
        numbers = _guard_numbers(w)
        positional = all(t.tid == i for i, t in enumerate(w._tasks))
        renames[any(g != n for g, n in numbers.items()) or not positional] += 1
        got = plain_freeze(w)
        assert got == w._freeze_renaming(numbers)
        # The records' types matter too: freeze() keeps a record only if it is one.
        assert {type(t) for t in got.tasks} <= {Task}
        assert {type(h) for h in got.handlers} <= {Handler}
        return got

    monkeypatch.setattr(world_module.World, "freeze", compared)
    d = DESIGNS[design]
    start = canonical(d.initial(bounds))
    seen = {start}
    todo = deque([start])
    while todo and len(seen) < 3000:
        for _, nxt in d.successors(todo.popleft(), bounds):
            c = canonical(nxt)
            if c not in seen:
                seen.add(c)
                todo.append(c)
    assert renames[True] > 100 and renames[False] > 1000, renames


def test_freeze_renames_what_the_short_path_cannot():
    """Guards out of first-use order, a dropped set flag, task ids that are not positions."""
    state = State(
        sessions=(Session(guard=5, owner=7, runner=3),),
        tasks=(Task(7, 0, "P1:runner", (Level((0,), guard=2),)),),
        handlers=(Handler(1, 0, "C2:await-owner", old=2, cg=5, target=3),),
        messages=(Message(TEXT, 0, runs=1), Message(STOP, 0, runs=1)),
        set_guards=frozenset({2, 9}),
    )
    frozen = World(state).freeze()
    assert frozen.sessions == (Session(guard=0, owner=0, runner=-1),)
    assert frozen.tasks == (Task(0, 0, "P1:runner", (Level((0,), guard=1),)),)
    assert frozen.handlers == (Handler(1, 0, "C2:await-owner", old=1, cg=0, target=-1),)
    assert frozen.set_guards == frozenset({1})


def test_a_reference_to_an_ended_task_becomes_dead_on_the_short_path():
    state = State(
        sessions=(Session(guard=0, owner=1, runner=1),),
        tasks=(Task(0, 0, "P1:runner", (Level((0,), guard=0),)),),
        handlers=(Handler(1, 0, "C2:await-owner", old=None, cg=0, target=1),),
        messages=(Message(TEXT, 0, runs=1), Message(STOP, 0, runs=1)),
    )
    frozen = World(state).freeze()
    assert frozen.sessions[0].owner == frozen.sessions[0].runner == frozen.handlers[0].target == -1


@pytest.mark.parametrize("design", list(DESIGNS))
def test_judging_a_decided_property_again_changes_nothing(design):
    """With by_rule on, every property is judged in every state and step to the end;
    without it, a property is no longer judged once it has a counterexample.  The
    verdicts and the counterexamples must be the same."""
    bounds = Bounds(messages=3, faults=1, kinds=(TEXT, STOP))
    fast = check(DESIGNS[design], bounds, CheckerConfig())
    full = check(DESIGNS[design], bounds, CheckerConfig(by_rule=True))
    assert (fast.stats.states, fast.stats.transitions) == (full.stats.states, full.stats.transitions)
    for a, b in zip(fast.verdicts, full.verdicts, strict=True):
        assert (a.prop.name, a.status, a.condition) == (b.prop.name, b.status, b.condition)
        if a.trace is not None:
            assert b.trace is not None
            assert [str(s) for s in a.trace.steps] == [str(s) for s in b.trace.steps]
            assert a.trace.states == b.trace.states


class _Failing(Reference):
    """A design whose rules raise: the search ends with an exception."""

    def successors(self, state, bounds, *, faults=True):
        raise ZeroDivisionError


@pytest.mark.parametrize("enabled", [True, False])
def test_check_leaves_the_cycle_collector_as_it_found_it(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        check(DESIGNS["reference"], Bounds(messages=1, faults=0), CheckerConfig())
        assert gc.isenabled() == enabled
        with pytest.raises(ZeroDivisionError):
            check(_Failing(), Bounds(messages=1, faults=0), CheckerConfig())
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
