"""Tests that pin behaviour the rest of the suite left loose (found by benchmarks/mutation.py).

Each test here exists because a mutant of the session-guard logic (a flipped
comparison, a deleted assignment, ...) passed every other test; the docstring
says which behaviour it pins.  They are fast: the mutation runner puts this
file early in every kill suite.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, State, Step, check
from sessionguard.model.checker import HOLDS, VIOLATED
from sessionguard.model.properties import Invariant, Liveness, StepInvariant
from sessionguard.model.vocabulary import (
    ANSWERED,
    APPROVE,
    B_RUNNER,
    C_SEND,
    DEAD,
    FAULTS,
    KINDS,
    SENT,
    STOP,
    TEXT,
    Handler,
    Message,
    Session,
)

ROOT = Path(__file__).resolve().parents[1]
#: `sessionguard check`'s default bound: two messages of every kind, one fault of every kind.
CLI_DEFAULT = Bounds(messages=2, faults=1, sessions=1, kinds=KINDS, fault_kinds=FAULTS)


def readme_verdicts() -> dict[str, dict[str, str]]:
    """The verdict table of the README ('What `sessionguard check` tells you'): design -> property -> cell."""
    block = (ROOT / "README.md").read_text().split("## What `sessionguard check` tells you", 1)[1]
    table = block.split("```", 2)[1].strip().splitlines()
    designs = table[0].split()[1:]
    out: dict[str, dict[str, str]] = {d: {} for d in designs}
    for row in table[1:]:
        m = re.match(r"\s*\d+ (\S+)\s+(.*)$", row)
        assert m, row
        cells = re.findall(r"holds|VIOLATED \(\d+ steps\)(?: known)?", m.group(2))
        assert len(cells) == len(designs), row
        for design, cell in zip(designs, cells, strict=True):
            out[design][m.group(1)] = cell
    return out


def readme_default_figures() -> dict[str, tuple[int, int]]:
    """The README's figures at the default bound: design -> (states, transitions)."""
    out: dict[str, tuple[int, int]] = {}
    rows = (ROOT / "README.md").read_text().split("## Figures", 1)[1].splitlines()
    in_default = False
    for row in rows:
        if row.startswith("| default"):
            in_default = True
        elif row.startswith("| ") and not row.startswith("| |"):
            in_default = False
        if in_default:
            cells = [c.strip() for c in row.strip("|").split("|")]
            out[cells[1]] = (int(cells[2].replace(",", "")), int(cells[3].replace(",", "")))
    return out


@pytest.fixture(scope="module")
def default_reports():
    # The budget is ten times what the default bound needs: a rule that makes the state
    # space unbounded (a counter that never runs out) fails fast as incomplete.
    budget = CheckerConfig(max_states=60_000, max_seconds=120)
    return {name: check(design, CLI_DEFAULT, budget) for name, design in DESIGNS.items()}


def test_check_at_the_default_bound_gives_the_readme_table(default_reports):
    """Every verdict, counterexample length and 'known' tag of the README's table.

    A rule mutated in any design shows up as a verdict or a shortest
    counterexample that differs from the documented one.
    """
    table = readme_verdicts()
    assert set(table) == set(DESIGNS)
    for name, report in default_reports.items():
        for v in report.verdicts:
            if v.status == HOLDS:
                cell = "holds"
            else:
                assert v.status == VIOLATED and v.trace is not None
                cell = f"VIOLATED ({len(v.trace)} steps)" + (" known" if v.known else "")
            assert cell == table[name][v.prop.name], (name, v.prop.name, v.condition)


def test_check_at_the_default_bound_visits_the_documented_state_space(default_reports):
    """The states and transitions of the README's figures: a rule that enables a
    step too many or too few changes them even when no verdict changes."""
    figures = readme_default_figures()
    assert set(figures) == set(DESIGNS)
    for name, report in default_reports.items():
        assert report.complete
        assert (report.stats.states, report.stats.transitions) == figures[name], name


# --- the properties, judged on states built by hand -------------------------------------------


def test_each_property_has_the_number_and_kind_of_the_readme_table():
    """The numbers are SPEC 5's, printed in every report and used by `prove` and `explain`."""
    rows = re.findall(r"^\| (\d+) \| ([a-z-]+) \| (state|step|liveness) \|", (ROOT / "README.md").read_text(), re.M)
    assert len(rows) == len(BY_NAME)
    classes = {"state": Invariant, "step": StepInvariant, "liveness": Liveness}
    for number, name, kind in rows:
        assert BY_NAME[name].number == int(number), name
        assert isinstance(BY_NAME[name], classes[kind]), name


def test_nothing_lost_names_a_fate_that_is_no_fate():
    """A message that ended in anything but one of the fates of SPEC 5 is a finding."""
    state = State(sessions=(Session(),), messages=(Message(TEXT, 0, runs=1, fate="vanished"),))
    assert BY_NAME["nothing-lost"].check(state) == "m0 (text) ended as vanished"
    fine = State(sessions=(Session(),), messages=(Message(TEXT, 0, runs=1, fate=ANSWERED),))
    assert BY_NAME["nothing-lost"].check(fine) is None


def _stop_replied(owner: int | None) -> tuple[State, Step, State]:
    """/stop m1's handler H1 sends its reply; the guard G[k0] stays, and no task is left."""
    messages = (Message(TEXT, 0, runs=1, fate=ANSWERED), Message(STOP, 0, runs=1, fate=ANSWERED, reply=SENT))
    before = State(sessions=(Session(guard=0, owner=owner),), handlers=(Handler(1, 0, C_SEND, cg=0),),
                   messages=messages)
    after = State(sessions=(Session(guard=0, owner=owner),), messages=messages)
    return before, Step("H1", "C3:reply-sent"), after


def test_stop_works_catches_a_guard_left_with_no_one_to_release_it():
    """After /stop's reply the session must not stay busy (prefix's wedged-owner route),
    unless its finished owner is recorded, so that the next message heals it."""
    assert BY_NAME["stop-works"].check(*_stop_replied(owner=None)) == (
        "/stop m1 replied, but G[k0] stays with no one to release it"
    )
    assert BY_NAME["stop-works"].check(*_stop_replied(owner=DEAD)) is None
    # Another message's handler still in flight (an /approve) changes nothing.
    before, step, after = _stop_replied(owner=None)
    approve = Message(APPROVE, 0, runs=1)
    after = after._replace(handlers=(Handler(2, 0, B_RUNNER),), messages=(*after.messages, approve))
    assert BY_NAME["stop-works"].check(before, step, after) is not None


def _command_releases(cg: int) -> tuple[State, Step, State]:
    """Command handler H1, whose own guard is `cg`, removes G[k0] = guard 0."""
    messages = (Message(TEXT, 0, runs=1), Message(STOP, 0, runs=1))
    before = State(sessions=(Session(guard=0),), handlers=(Handler(1, 0, C_SEND, cg=cg),), messages=messages)
    after = State(sessions=(Session(),), messages=messages)
    return before, Step("H1", "C4:release", effects=(("guard", 0, 0, None),)), after


def test_release_by_owner_judges_command_handlers_too():
    """A command may remove the guard it installed, and no other (seed's C4 overwrite)."""
    assert BY_NAME["release-by-owner"].check(*_command_releases(cg=0)) is None
    assert "neither installed nor was handed" in BY_NAME["release-by-owner"].check(*_command_releases(cg=1))


# --- the rules, over every reachable state ------------------------------------------------------


def reachable(design_name: str, bounds: Bounds):
    """Every (state, step, next state) reachable from the initial state (no reduction)."""
    design = DESIGNS[design_name]
    start = design.initial(bounds)
    seen = {start}
    todo = [start]
    while todo:
        state = todo.pop()
        for step, nxt in design.successors(state, bounds):
            yield state, step, nxt
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)


@pytest.mark.parametrize("design", list(DESIGNS))
def test_every_fault_spends_exactly_one_unit_of_the_budget(design):
    """The fault budget counts faults, one each, shutdown included: a bounded wait may
    still time out after shutdown only while the budget lasts."""
    bounds = Bounds(messages=2, faults=2, kinds=(TEXT, STOP), fault_kinds=FAULTS)
    steps = 0
    for before, step, after in reachable(design, bounds):
        spent = after.faults_used - before.faults_used
        assert spent == (1 if step.fault is not None else 0), (design, str(step))
        steps += 1
    assert steps > 1000


def test_reference_adapter_forgets_each_command_once_it_completes():
    """The handoff list of each session holds only commands in flight: a completed /stop,
    /new or /reset must leave it, or a long-running gateway grows it for ever (and every
    later command would wait on it again)."""
    from sessionguard.loop import explore_random
    from sessionguard.reference.harness import scenario_run
    from sessionguard.reference.scenarios import SCENARIOS

    rigs = []
    for name in ("stop-midrun", "double-stop", "new-midrun", "reset-midrun"):
        factory = scenario_run("reference", SCENARIOS[name], on_rig=rigs.append)
        ex = explore_random(factory, runs=5, seed=1)
        assert ex.verdicts == {"ok": 5}, name
    assert len(rigs) == 20
    for rig in rigs:
        assert rig.adapter.handlings == {}
        assert all(not waiting for waiting in rig.adapter.commands.values()), rig.adapter.commands


# --- the working copy a rule edits -------------------------------------------------------------


def test_running_a_message_counts_the_call_and_touches_nothing_else():
    """run_messages only counts runner calls, "2" meaning twice or more (which keeps the
    state space finite), and leaves kind, session, fate, reply and arrival context alone."""
    from sessionguard.model.vocabulary import ORDINARY
    from sessionguard.model.world import World

    msg = Message(TEXT, 0, during=(7,))
    w = World(State(sessions=(Session(),), messages=(msg,)))
    for calls in (1, 2, 3):
        w.run_messages(0, (0,), ORDINARY)
        after = w.freeze().messages[0]
        assert after == msg._replace(runs=min(calls, 2)), calls
    assert w.sessions[0].last_run == 0


def test_a_missing_guard_is_never_set_nor_cleared():
    """set_guard(None) and clear_guard(None) (an interrupt asked of a session without
    a guard) change nothing: None is no guard, and never an event to set."""
    from sessionguard.model.world import World

    w = World(State(sessions=(Session(guard=0),), set_guards=frozenset({0})))
    w.set_guard(None)
    w.clear_guard(None)
    assert set(w.set_guards) == {0}
    w.set_guard(0)
    assert set(w.set_guards) == {0}
    w.clear_guard(0)
    assert set(w.set_guards) == set()


def test_a_reply_state_moves_only_to_or_from_owed():
    """A reply is owed first, then sent, stale, failed or dropped; only a new reply owed
    (a later event that includes the message) changes it after that: a sent reply
    cannot later become dropped or stale."""
    from sessionguard.model.vocabulary import DROPPED, OWED, STALE
    from sessionguard.model.world import World

    w = World(State(sessions=(Session(),), messages=(Message(TEXT, 0, runs=1),)))
    w.set_reply(0, SENT)
    assert w.messages[0].reply is None  # nothing was owed
    w.set_reply(0, OWED)
    w.set_reply(0, SENT)
    for later in (DROPPED, STALE):
        w.set_reply(0, later)
    assert w.freeze().messages[0].reply == SENT
    w.set_reply(0, OWED)
    assert w.freeze().messages[0].reply == OWED


@pytest.mark.parametrize("field,value", [("last_run", 0), ("pending", (0,))])
def test_freezing_keeps_a_change_to_any_one_field_of_a_session(field, value):
    """freeze() reuses a session's record only when nothing in it changed (the session
    holds guard 0, so a comparison with the wrong field cannot pass by luck)."""
    from sessionguard.model.world import World

    w = World(State(sessions=(Session(guard=0),), messages=(Message(TEXT, 0),)))
    setattr(w.sessions[0], field, value)
    assert getattr(w.freeze().sessions[0], field) == value


@pytest.mark.parametrize("design", list(DESIGNS))
def test_every_step_names_its_rule_in_words(design):
    """Rules name the branch taken ('F2:drain', 'C1:runner-replied (fresh conversation)'):
    they are the counterexamples' vocabulary and the keys of --by-rule."""
    rules = set()
    for _, step, _ in reachable(design, CLI_DEFAULT):
        assert isinstance(step.rule, str) and "None" not in step.rule, str(step)
        rules.add(step.rule)
    # What the runner said to each command, as the rules tell it.
    said = {r.split("(", 1)[1].split(")", 1)[0] for r in rules if "runner-replied (" in r}
    assert said == {"No active task to stop", "stopped", "fresh conversation", "answered"}


def test_property_kinds_are_the_json_report_vocabulary():
    """`check --format json` prints each property's kind; readers switch on these names."""
    assert {p.kind for p in BY_NAME.values()} == {"Invariant", "StepInvariant", "Liveness"}


@pytest.mark.parametrize("design", ["prefix", "seed"])
def test_p1_installs_a_guard_when_none_is_there(design):
    """P1: g = G.get(k) or a new guard; G[k] = g; the task holds that very guard."""
    from sessionguard.model.vocabulary import START, Level, Task

    state = State(sessions=(Session(),), tasks=(Task(0, 0, START, (Level((0,)),)),),
                  messages=(Message(TEXT, 0),))
    p1 = [(s, n) for s, n in DESIGNS[design].successors(state, CLI_DEFAULT) if s.actor == "T0" and s.fault is None]
    assert p1
    for _, after in p1:
        guard = after.sessions[0].guard
        assert guard is not None and after.tasks[0].levels[0].guard == guard


@pytest.mark.parametrize("design", list(DESIGNS))
def test_after_shutdown_only_a_timed_wait_can_still_fault(design):
    """Shutdown ends fault injection; only a hang inside a timeout (reference's bounded
    waits) may still be seen after it, while the budget lasts."""
    from sessionguard.model.vocabulary import HANGS

    bounds = Bounds(messages=2, faults=2, kinds=(TEXT, STOP, APPROVE), fault_kinds=FAULTS)
    timed = DESIGNS[design].bounded_awaits
    for before, step, _ in reachable(design, bounds):
        if before.stopped and step.fault is not None:
            assert step.fault in HANGS and timed, (design, str(step))


def test_a_command_in_flight_covers_only_its_own_session():
    """A command handoff in session k1 does not excuse an orphan guard in session k0."""
    from sessionguard.model.vocabulary import C_AWAIT

    state = State(sessions=(Session(guard=0), Session(guard=1)), handlers=(Handler(0, 1, C_AWAIT, cg=1),),
                  messages=(Message(STOP, 1, runs=1),))
    assert BY_NAME["no-orphan-guard"].check(state) is not None
    covered = state._replace(sessions=(Session(), Session(guard=1)))
    assert BY_NAME["no-orphan-guard"].check(covered) is None


def test_a_new_task_gets_an_id_no_live_task_has():
    """Task ids compare by identity within a step: a fresh one must not be in use."""
    from sessionguard.model.vocabulary import START, Level, Task
    from sessionguard.model.world import World

    tasks = tuple(Task(i, 0, START, (Level((i,)),)) for i in range(3))
    w = World(State(sessions=(Session(),), tasks=tasks, messages=tuple(Message(TEXT, 0) for _ in range(4))))
    fresh = [w.create_task(0, (3,)), w.create_task(0, (3,))]
    assert len(set(fresh)) == 2 and not set(fresh) & {0, 1, 2}


@pytest.mark.parametrize("design", ["prefix", "seed"])
def test_an_exception_is_in_flight_only_inside_a_finally(design):
    """A task carries an exception (`unwind`) only in its finally's awaits: once an inner
    activation's error has been caught by the outer level's `except` (an error notice
    is owed), the outer level is not unwinding.  Inline follow-ups nest the levels; a
    cleanup that raises, or an error notice that fails, sends an error to the outer one."""
    from sessionguard.model.vocabulary import (
        CLEANUP_RAISES,
        HOOKS,
        RUNNER_RAISES,
        SEND_RAISES,
        TYPING,
    )

    bounds = Bounds(messages=3, faults=2, kinds=(TEXT,), fault_kinds=(RUNNER_RAISES, SEND_RAISES, CLEANUP_RAISES))
    for _, step, after in reachable(design, bounds):
        for t in after.tasks:
            assert t.unwind is None or t.pc in (TYPING, HOOKS), (design, str(step), t)
