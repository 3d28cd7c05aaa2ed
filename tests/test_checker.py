"""The checker: verdicts, shortest counterexamples that replay, symmetry, budgets, liveness."""

from __future__ import annotations

import itertools

import pytest

from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.checker import HOLDS, INCOMPLETE, VIOLATED, replay
from sessionguard.model.design import Design
from sessionguard.model.properties import Invariant, StepInvariant
from sessionguard.model.reference import Reference
from sessionguard.model.symmetry import canonical, permute
from sessionguard.model.vocabulary import (
    APPROVE,
    CLEANUP_CANCELLED,
    CLEANUP_RAISES,
    RUNNER_HANGS,
    SEND_HANGS,
    STOP,
    TEXT,
)
from sessionguard.model.world import World

DEFAULT = Bounds(messages=2, faults=1)


def verdicts(design: str, bounds: Bounds, **config: object) -> dict[str, object]:
    report = check(DESIGNS[design], bounds, CheckerConfig(**config))  # type: ignore[arg-type]
    return {v.prop.name: v for v in report.verdicts}


@pytest.fixture(scope="module")
def reference_3() -> dict[str, object]:
    return verdicts("reference", Bounds(messages=3, faults=1))


def test_reference_holds_every_property_at_the_default_bound():
    for name, v in verdicts("reference", DEFAULT).items():
        assert v.status == HOLDS, (name, v.condition)


def test_reference_holds_every_property_with_three_messages(reference_3):
    for name, v in reference_3.items():
        assert v.status == HOLDS, (name, v.condition)


def test_reference_holds_with_two_sessions_and_every_kind():
    b = Bounds(messages=2, faults=0, sessions=2, kinds=(TEXT, "photo", STOP, "/new", "/reset", APPROVE))
    for name, v in verdicts("reference", b).items():
        assert v.status == HOLDS, (name, v.condition)


# --- the two #11016 routes of SPEC section 6, in prefix ---------------------------------


@pytest.mark.parametrize("fault", [CLEANUP_RAISES, CLEANUP_CANCELLED])
def test_prefix_dead_owner_route(fault):
    """A cleanup fault ends the finally before it deletes G[k]: an orphan guard,
    and the next message is queued behind it forever."""
    v = verdicts("prefix", Bounds(messages=2, faults=1, fault_kinds=(fault,)))
    assert v["no-orphan-guard"].status == VIOLATED
    assert v["dead-lock-heals"].status == VIOLATED
    trace = v["no-orphan-guard"].trace
    assert len(trace) <= 12
    assert any(step.fault == fault for step in trace.steps)
    end = trace.states[-1]
    assert end.tasks == () and end.sessions[0].guard is not None


@pytest.mark.parametrize("fault", [RUNNER_HANGS, SEND_HANGS])
def test_prefix_wedged_owner_route(fault):
    """A hung call holds G[k]; /stop answers from the runner and never reaches the task."""
    v = verdicts("prefix", Bounds(messages=2, faults=1, fault_kinds=(fault,)))
    assert v["no-trapped-session"].status == VIOLATED
    assert "even after the user's /stop" in v["no-trapped-session"].condition
    assert v["no-orphan-guard"].status == HOLDS  # the guard has an owner: it is just wedged


def test_prefix_trap_at_the_default_bound_is_short_and_declared():
    report = check(DESIGNS["prefix"], DEFAULT)
    trap = {v.prop.name: v for v in report.verdicts}["no-orphan-guard"]
    assert trap.status == VIOLATED and len(trap.trace) <= 12 and trap.known


def test_seed_findings_are_all_declared():
    report = check(DESIGNS["seed"], Bounds(messages=3, faults=1))
    assert report.undeclared == []
    assert {v.prop.name for v in report.verdicts if v.status == VIOLATED} >= {
        "one-worker", "no-orphan-guard", "nothing-lost", "handoff", "no-trapped-session",
    }


# --- counterexamples ---------------------------------------------------------------------


@pytest.mark.parametrize("design", ["prefix", "seed"])
def test_counterexamples_replay_to_the_violation(design):
    bounds = Bounds(messages=3, faults=1)
    report = check(DESIGNS[design], bounds, CheckerConfig(by_rule=True))
    checked = 0
    for v in report.verdicts:
        if v.status != VIOLATED:
            continue
        for trace in [v.trace, *v.by_rule.values()]:
            states = replay(DESIGNS[design], bounds, trace.steps)
            assert states == trace.states
            prop = v.prop
            if isinstance(prop, Invariant):
                assert prop.check(states[-1]) is not None
                assert all(prop.check(s) is None for s in states[:-1]) or trace is not v.trace
            elif isinstance(prop, StepInvariant):
                assert prop.check(states[-2], trace.steps[-1], states[-1]) is not None
            checked += 1
    assert checked >= 8


def _shortest_by_brute_force(design: Design, bounds: Bounds, prop: Invariant, limit: int) -> int | None:
    """Iterative deepening without any of the checker's machinery."""
    frontier = {design.initial(bounds)}
    seen = set(frontier)
    for depth in range(limit + 1):
        if any(prop.check(s) is not None for s in frontier):
            return depth
        nxt = set()
        for s in frontier:
            for _, t in design.successors(s, bounds):
                if t not in seen:
                    seen.add(t)
                    nxt.add(t)
        frontier = nxt
    return None


@pytest.mark.parametrize("design,name", [("prefix", "no-orphan-guard"), ("seed", "no-unguarded-worker")])
def test_counterexamples_are_the_shortest(design, name):
    prop = BY_NAME[name]
    assert isinstance(prop, Invariant)
    v = verdicts(design, DEFAULT)[name]
    assert _shortest_by_brute_force(DESIGNS[design], DEFAULT, prop, len(v.trace)) == len(v.trace)


def test_by_rule_keeps_a_counterexample_for_each_breaking_rule():
    v = verdicts("seed", Bounds(messages=3, faults=1), by_rule=True)["nothing-lost"]
    assert len(v.by_rule) >= 3
    assert any("heal" in rule for rule in v.by_rule)
    assert any("cleanup" in rule for rule in v.by_rule)


# --- symmetry ----------------------------------------------------------------------------


@pytest.mark.parametrize("design", ["prefix", "seed", "reference"])
def test_symmetry_preserves_verdicts(design):
    bounds = Bounds(messages=2, faults=1, sessions=2, kinds=(TEXT, STOP))
    on = check(DESIGNS[design], bounds, CheckerConfig(symmetry=True, merge_history=False))
    off = check(DESIGNS[design], bounds, CheckerConfig(symmetry=False, merge_history=False))
    both = check(DESIGNS[design], bounds)
    assert [v.status for v in on.verdicts] == [v.status for v in off.verdicts]
    assert [v.status for v in both.verdicts] == [v.status for v in off.verdicts]
    assert [len(v.trace or []) for v in on.verdicts] == [len(v.trace or []) for v in off.verdicts]
    assert on.stats.states < off.stats.states


def test_canonical_form_is_the_same_for_every_renaming_of_sessions():
    design = DESIGNS["seed"]
    bounds = Bounds(messages=3, faults=0, sessions=3)
    seen = 0
    frontier = [design.initial(bounds)]
    for _ in range(4):
        frontier = [t for s in frontier for _, t in design.successors(s, bounds)][:400]
        for s in frontier:
            for perm in itertools.permutations(range(3)):
                assert canonical(permute(s, list(perm))) == canonical(s)
            seen += 1
    assert seen > 100


# --- budgets and liveness ----------------------------------------------------------------


def test_a_state_budget_gives_incomplete_never_holds():
    report = check(DESIGNS["reference"], Bounds(messages=3, faults=1), CheckerConfig(max_states=500))
    assert not report.complete and report.stopped_by == "states"
    assert all(v.status == INCOMPLETE for v in report.verdicts)


def test_a_time_budget_gives_incomplete():
    report = check(DESIGNS["reference"], Bounds(messages=4, faults=1), CheckerConfig(max_seconds=0.5))
    assert not report.complete and report.stopped_by == "seconds"
    assert {v.status for v in report.verdicts} == {INCOMPLETE}


def test_violations_found_before_a_budget_ends_are_still_reported():
    report = check(DESIGNS["prefix"], Bounds(messages=3, faults=1), CheckerConfig(max_states=3000))
    v = {v.prop.name: v for v in report.verdicts}
    assert v["no-orphan-guard"].status == VIOLATED
    assert v["no-trapped-session"].status == INCOMPLETE  # liveness needs the whole graph


def test_liveness_is_not_a_depth_cut_off():
    """In this trap every state has successors for ever (new messages keep
    arriving), so no depth limit would flag it; the graph check does."""
    v = verdicts("prefix", Bounds(messages=3, faults=1, fault_kinds=(CLEANUP_RAISES,)))
    live = v["no-trapped-session"]
    assert live.status == VIOLATED
    assert "stays busy" in live.condition


class _NoHandoffRelease(Reference):
    """A broken reference: the command never releases its guard (C4 does nothing)."""

    name = "broken"

    def command_end(self, w: World, h: object) -> str:  # type: ignore[override]
        return "C4:forgot"


def test_a_broken_design_is_caught():
    report = check(_NoHandoffRelease(), DEFAULT)
    broken = {v.prop.name for v in report.verdicts if v.status == VIOLATED}
    assert "no-orphan-guard" in broken and "no-trapped-session" in broken
    assert report.undeclared


class _QueuesApprovals(Reference):
    """A broken reference: /approve while busy waits in the pending slot."""

    name = "queues-approvals"

    def bypass(self, w: World, k: int, m: int) -> str:
        self.merge_pending(w, k, m)
        return "H:queued-bypass"


def test_control_never_waits_can_fail():
    v = verdicts("reference", DEFAULT)
    assert v["control-never-waits"].status == HOLDS
    report = check(_QueuesApprovals(), DEFAULT)
    assert {v.prop.name: v.status for v in report.verdicts}["control-never-waits"] == VIOLATED


@pytest.mark.parametrize("design", ["prefix", "seed", "reference"])
def test_canonical_states_have_the_same_future_and_the_same_verdicts(design):
    """The reductions are sound only if merging states commutes with the rules:
    the successors of a state and of its representative merge to the same set,
    and every invariant judges the two alike."""
    d = DESIGNS[design]
    bounds = Bounds(messages=3, faults=1, sessions=2, kinds=(TEXT, STOP, APPROVE))
    invariants = [p for p in BY_NAME.values() if isinstance(p, Invariant)]
    start = d.initial(bounds)
    seen, todo = {start}, [start]
    while todo and len(seen) < 4000:
        x = todo.pop()
        cx = canonical(x)
        assert {canonical(t) for _, t in d.successors(x, bounds)} == {
            canonical(t) for _, t in d.successors(cx, bounds)
        }
        assert [p.check(x) is None for p in invariants] == [p.check(cx) is None for p in invariants]
        for _, t in d.successors(x, bounds):
            if t not in seen:
                seen.add(t)
                todo.append(t)


class _NoIdentityCheck(Reference):
    """docs/model.md's example: hand the session on whatever guard is there."""

    name = "no-identity-check"

    def hand_on(self, w: World, k: int, guard: int | None) -> str:
        return super().hand_on(w, k, w.sessions[k].guard)


def test_the_identity_check_is_what_keeps_reference_correct():
    report = check(_NoIdentityCheck(), Bounds(messages=3, faults=1))
    broken = {v.prop.name for v in report.verdicts if v.status == VIOLATED}
    assert {"release-by-owner", "no-unguarded-worker", "nothing-lost"} <= broken
