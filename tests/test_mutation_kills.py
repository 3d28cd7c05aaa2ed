"""Tests that pin behaviour the rest of the suite left loose (found by benchmarks/mutation.py).

Each test here exists because a mutant of the session-guard logic (a flipped
comparison, a deleted assignment, ...) passed every other test; the docstring
says which behaviour it pins.  They are fast: the mutation runner puts this
file early in every kill suite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
    # Run counts stop at 2 ("twice or more"): 2 is the finding.
    twice = State(sessions=(Session(),), messages=(Message(TEXT, 0, runs=2, fate=ANSWERED),))
    assert BY_NAME["nothing-lost"].check(twice) == "m0 (text) was given to the runner twice"


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
    notices_failed = 0
    for before, step, after in reachable(design, bounds):
        for t in after.tasks:
            assert t.unwind is None or t.pc in (TYPING, HOOKS), (design, str(step), t)
        if step.rule == "E1:send-raised":
            # ... and a failed error notice does send its error through the finally
            # (to the outer level's `except`, when the activation is an inline one).
            position = [f"T{t.tid}" for t in before.tasks].index(step.actor)
            assert after.tasks[position].unwind == "error", (design, str(step))
            notices_failed += 1
    assert notices_failed


@pytest.mark.parametrize("design", list(DESIGNS))
def test_a_recovery_stop_goes_only_to_a_session_with_a_hung_call(design):
    """Beyond the message bound, the liveness check lets the user send /stop only where a
    call hangs for good (SPEC 9, 10): session k1's runner is wedged, k0 is idle."""
    from sessionguard.model.vocabulary import RUNNER, Level, Task

    state = State(
        sessions=(Session(), Session(guard=0)),
        tasks=(Task(0, 1, RUNNER, (Level((0,)),), hung=True),),
        messages=(Message(TEXT, 1, runs=1),),
        extra=1,
    )
    bounds = Bounds(messages=1, faults=0, sessions=2, kinds=(TEXT,), fault_kinds=())
    arrivals = [after for step, after in DESIGNS[design].successors(state, bounds) if step.actor == "platform"]
    assert [(m.kind, m.session) for m in (after.messages[-1] for after in arrivals)] == [(STOP, 1)]
    assert all(after.extra == 0 for after in arrivals)


@pytest.mark.parametrize("design", list(DESIGNS))
def test_a_reply_is_owed_exactly_while_a_task_is_about_to_send_it(design):
    """P2 marks the activation as about to send its reply; the send, or its failure,
    ends that.  A task that ends in between (a cancel) drops the reply: so in every
    reachable state the owed replies are exactly those of activations about to send,
    and an activation awaiting its send is marked."""
    from sessionguard.model.vocabulary import OWED, SEND_RAISES, SEND_REPLY, TASK_CANCELLED

    bounds = Bounds(messages=2, faults=1, kinds=(TEXT,), fault_kinds=(TASK_CANCELLED, SEND_RAISES))
    for _, step, after in reachable(design, bounds):
        owed = {m for m, msg in enumerate(after.messages) if msg.reply == OWED}
        about_to_send = {m for t in after.tasks for lv in t.levels if lv.reply for m in lv.event}
        assert owed == about_to_send, (design, str(step))
        assert all(t.levels[-1].reply for t in after.tasks if t.pc == SEND_REPLY), (design, str(step))


@pytest.mark.parametrize("design", list(DESIGNS))
def test_work_cut_short_by_shutdown_is_shut_down_and_by_a_cancel_aborted(design):
    """A message whose task is cancelled before the runner finished it ends as
    'shut-down' when the gateway is shutting down, as 'aborted' after a cancel fault:
    the fate a report gives the user for it."""
    from sessionguard.model.vocabulary import ABORTED, SHUT_DOWN, SHUTDOWN, TASK_CANCELLED

    bounds = Bounds(messages=2, faults=1, kinds=(TEXT,), fault_kinds=(TASK_CANCELLED, SHUTDOWN))
    seen = set()
    for before, step, after in reachable(design, bounds):
        for old, new in zip(before.messages, after.messages, strict=False):
            if old.fate is None and new.fate in (ABORTED, SHUT_DOWN):
                # One fault at most: the gateway stopped, or a task was cancelled.
                assert new.fate == (SHUT_DOWN if after.stopped else ABORTED), (design, str(step))
                seen.add(new.fate)
    assert seen == {ABORTED, SHUT_DOWN}


def test_a_command_waits_for_the_earlier_commands_of_its_own_session_only():
    """reference R5: handoffs complete in arrival order within a session; a command
    in flight in another session holds nobody up."""
    from sessionguard.model.vocabulary import C_AWAIT

    def ready(sessions_of_commands: tuple[int, ...]) -> set[str]:
        handlers = tuple(Handler(mid, k, C_AWAIT, cg=mid) for mid, k in enumerate(sessions_of_commands))
        state = State(sessions=(Session(guard=0), Session(guard=1)), handlers=handlers,
                      messages=tuple(Message(STOP, k, runs=1) for k in sessions_of_commands))
        bounds = Bounds(messages=2, faults=0, sessions=2, kinds=(STOP,), fault_kinds=())
        return {step.actor for step, _ in DESIGNS["reference"].successors(state, bounds)}

    assert ready((0, 1)) == {"H0", "H1"}
    assert ready((0, 0)) == {"H0"}


def test_an_arrival_that_heals_names_the_heal_then_the_usual_rule():
    """reference R6: a message that finds a dead owner's callback pending finishes it
    first; its rule reads 'H:<heal>; <the rule it would have taken anyway>'."""
    arrivals = {step.rule for _, step, _ in reachable("reference", CLI_DEFAULT) if step.actor == "platform"}
    plain = {rule.removeprefix("H:") for rule in arrivals if "; " not in rule}
    healed = [rule for rule in arrivals if "; " in rule]
    assert healed and all(rule.startswith("H:") for rule in arrivals)
    for rule in healed:
        heal, rest = rule.removeprefix("H:").split("; ", 1)
        assert rest in plain and "H:" not in heal, rule


def test_a_hung_command_or_bypass_call_makes_its_session_hung():
    """A session is hung (the user may send a recovery /stop, SPEC 9, 10) when a task's
    call or an inbound handler's call hangs for good; not when the handler's await
    is one the design bounds with a timeout, which ends by itself."""
    from sessionguard.model.properties import hung_sessions

    state = State(sessions=(Session(), Session()), handlers=(Handler(0, 1, B_RUNNER, hung=True),),
                  messages=(Message(APPROVE, 1, runs=1),))
    assert hung_sessions(state) == [1]
    assert hung_sessions(state, frozenset({B_RUNNER})) == []
    waiting = state._replace(handlers=(Handler(0, 1, B_RUNNER),))
    assert hung_sessions(waiting) == []


def test_release_by_owner_judges_tasks_by_the_guards_of_their_levels():
    """A task may remove a guard one of its activations holds, and no other (prefix's
    unconditional `del` in the finally is the rule this catches)."""
    from sessionguard.model.vocabulary import HOOKS, Level, Task

    def task_releases(holds: int) -> tuple[State, Step, State]:
        messages = (Message(TEXT, 0, runs=1, fate=ANSWERED),)
        task = Task(0, 0, HOOKS, (Level((0,), guard=holds),))
        before = State(sessions=(Session(guard=1),), tasks=(task,), messages=messages)
        after = State(sessions=(Session(),), tasks=(task,), messages=messages)
        return before, Step("T0", "F2:delete", effects=(("guard", 0, 1, None),)), after

    assert BY_NAME["release-by-owner"].check(*task_releases(holds=1)) is None
    assert BY_NAME["release-by-owner"].check(*task_releases(holds=0)) == (
        "T(m0) removed G[k0], a guard it neither installed nor was handed"
    )


def test_order_judges_each_runner_call_by_its_ordinary_messages():
    """Property 6 on runner calls built by hand (no design breaks it): an event must
    list its texts and photos in arrival order (an /approve is not queued, so its
    place does not count), and none may be older than what the session's runner
    already got.  The finding names the messages as the runner got them."""
    order = BY_NAME["order"]

    def call(event: tuple[int, ...], last_run: int = -1, kinds: tuple[str, ...] = (TEXT, TEXT, TEXT)) -> str | None:
        state = State(sessions=(Session(last_run=last_run),), messages=tuple(Message(k, 0, runs=1) for k in kinds))
        return order.check(state, Step("T0", "P1:call-runner", effects=(("run", 0, event),)), state)

    assert call((0, 1)) is None
    assert call((1, 0)) == "the runner got m1, m0 out of arrival order"
    assert call((2, 1, 0), kinds=(TEXT, APPROVE, TEXT)) == "the runner got m2, m0 out of arrival order"
    assert call((1, 0), kinds=(APPROVE, TEXT, TEXT)) is None
    assert call((2,), last_run=1) is None
    assert call((0,), last_run=1) == "the runner got m0 after the later m1 of session k0"


def test_a_new_guard_is_one_no_one_holds():
    """A fresh Event is a token no one holds yet: not a session's G[k], not a guard an
    activation took in P1, not a command's own or replaced guard, not one whose "set"
    flag is recorded.  A reused token would pass the identity check of another owner."""
    from sessionguard.model.vocabulary import C_SEND, HOOKS, Level, Task
    from sessionguard.model.world import World

    held = {"session": 0, "task": 1, "old": 2, "command": 3, "set": 4}
    state = State(
        sessions=(Session(guard=held["session"]), Session()),
        tasks=(Task(0, 1, HOOKS, (Level((0,), guard=held["task"]),)),),
        handlers=(Handler(1, 1, C_SEND, old=held["old"], cg=held["command"]),),
        messages=(Message(TEXT, 1, runs=1), Message(STOP, 1, runs=1)),
        set_guards=frozenset({held["set"]}),
    )
    for holder in held:
        # Each holder alone holds the highest token: the fresh one is above it.
        top = max(held.values()) + 1
        alone = {**held, holder: top}
        tweaked = state._replace(
            sessions=(Session(guard=alone["session"]), Session()),
            tasks=(Task(0, 1, HOOKS, (Level((0,), guard=alone["task"]),)),),
            handlers=(Handler(1, 1, C_SEND, old=alone["old"], cg=alone["command"]),),
            set_guards=frozenset({alone["set"]}),
        )
        w = World(tweaked)
        fresh = {w.new_guard(), w.new_guard()}
        assert len(fresh) == 2 and not fresh & set(alone.values()), holder


@pytest.mark.parametrize("design", list(DESIGNS))
def test_a_task_that_ends_leaves_another_tasks_runner_call_alone(design):
    """R[k] names the task whose runner call is in flight.  When an older task of the
    session finishes its finally (after /stop let a newer one start), the newer
    task's call is still in flight."""
    from sessionguard.model.vocabulary import RUNNER

    bounds = Bounds(messages=3, faults=0, kinds=(TEXT, STOP), fault_kinds=())
    seen = 0
    for before, step, after in reachable(design, bounds):
        if len(after.tasks) < len(before.tasks) and step.actor.startswith("T"):
            ended = next(t for t in before.tasks if f"T{t.tid}" == step.actor)
            runner = before.sessions[ended.session].runner
            if runner is not None and runner != ended.tid:
                assert after.sessions[ended.session].runner is not None, (design, str(step))
                seen += 1
        for k, s in enumerate(after.sessions):
            # ... and names nothing else: no task, or one of this session at its runner call.
            assert s.runner is None or any(t.tid == s.runner and t.session == k and t.pc == RUNNER
                                           for t in after.tasks), (design, str(step))
    assert seen


def test_a_fate_or_a_reply_changes_only_that_field_of_the_message():
    """set_fate and set_reply rebuild the message record field by field: kind, session,
    runs, the other of fate and reply, and the arrival context stay as they were."""
    from sessionguard.model.vocabulary import OWED
    from sessionguard.model.world import World

    msg = Message(TEXT, 0, runs=1, reply=OWED, during=(7,))
    w = World(State(sessions=(Session(),), messages=(msg,)))
    w.set_fate(0, ANSWERED)
    assert w.freeze().messages[0] == msg._replace(fate=ANSWERED)
    w.set_reply(0, SENT)
    assert w.freeze().messages[0] == msg._replace(fate=ANSWERED, reply=SENT)


def test_freezing_numbers_guards_in_order_of_first_use():
    """The canonical state numbers guards 0, 1, ... in order of first use: sessions,
    then each task's levels, then handlers; a session without a guard takes no
    number, and a recorded "set" flag follows its guard's new number."""
    from sessionguard.model.vocabulary import RUNNER, Level, Task
    from sessionguard.model.world import World

    state = State(
        sessions=(Session(), Session(guard=7)),
        tasks=(Task(0, 0, RUNNER, (Level((0,), guard=3),)),),
        handlers=(Handler(1, 1, C_SEND, old=7, cg=9),),
        messages=(Message(TEXT, 0, runs=1), Message(STOP, 1, runs=1)),
        set_guards=frozenset({9}),
    )
    frozen = World(state).freeze()
    assert [s.guard for s in frozen.sessions] == [None, 0]
    assert frozen.tasks[0].levels[0].guard == 1
    assert (frozen.handlers[0].old, frozen.handlers[0].cg) == (0, 2)
    assert frozen.set_guards == frozenset({2})
    # A guard held by one holder alone is renumbered wherever it is.
    alone = State(sessions=(Session(),), tasks=(Task(0, 0, RUNNER, (Level((0,)),)),),
                  handlers=(Handler(1, 0, C_SEND),), messages=state.messages)
    for holder in ("session", "level", "old", "cg"):
        tweaked = alone._replace(
            sessions=(Session(guard=5 if holder == "session" else None),),
            tasks=(Task(0, 0, RUNNER, (Level((0,), guard=5 if holder == "level" else None),)),),
            handlers=(Handler(1, 0, C_SEND, **{holder: 5}) if holder in ("old", "cg") else Handler(1, 0, C_SEND),),
        )
        frozen = World(tweaked).freeze()
        held = {frozen.sessions[0].guard, frozen.tasks[0].levels[0].guard, frozen.handlers[0].old,
                frozen.handlers[0].cg} - {None}
        assert held == {0}, holder


@pytest.mark.parametrize("renaming", [False, True], ids=["short-path", "renaming"])
def test_freezing_keeps_any_change_to_a_session_whatever_the_other_fields(renaming):
    """freeze() reuses a session's record only when no field changed, on both of its
    paths (a step that renames no guard, and one that does: here a task's guard 5
    must become a small number).  Every combination of old values and one changed
    field, including a new value that equals another field's old value."""
    import itertools

    from sessionguard.model.vocabulary import RUNNER, Level, Task
    from sessionguard.model.world import World

    values = {"guard": (None, 0), "owner": (None, DEAD, 0), "pending": (None, (0,)), "runner": (None, 0),
              "last_run": (-1, 0)}
    task = Task(0, 0, RUNNER, (Level((0,), guard=5 if renaming else None),))
    for old in itertools.product(*values.values()):
        session = Session(*old)
        for field, choices in values.items():
            for new in choices:
                if new == getattr(session, field):
                    continue
                w = World(State(sessions=(session,), tasks=(task,), messages=(Message(TEXT, 0, runs=1),)))
                setattr(w.sessions[0], field, new)
                assert w.freeze().sessions[0] == session._replace(**{field: new}), (old, field, new)


@pytest.mark.parametrize("design", list(DESIGNS))
def test_an_adapter_acknowledges_a_text_that_interrupts(design):
    """A text that finds its session busy is answered "Interrupting current task..."
    (the platform's busy_ack) as it requests the interrupt: at most once for each of
    the two follow-ups, and at least once over a few schedules."""
    from sessionguard.loop import explore_random
    from sessionguard.reference.harness import scenario_run
    from sessionguard.reference.scenarios import SCENARIOS

    rigs = []
    explore_random(scenario_run(design, SCENARIOS["followups"], on_rig=rigs.append), runs=8, seed=1)
    acks = [rig.ledger.busy_acks for rig in rigs]
    assert 0 < max(acks) <= 2, acks


def test_stop_works_looks_only_at_the_tasks_of_the_stopped_session():
    """/stop in k0 has nothing to say about a task of k1 still working on an older message."""
    from sessionguard.model.vocabulary import RUNNER, Level, Task

    messages = (Message(TEXT, 1, runs=1), Message(STOP, 0, runs=1, fate=ANSWERED, reply=SENT))
    other = (Task(0, 1, RUNNER, (Level((0,), guard=0),)),)
    before = State(sessions=(Session(), Session(guard=0)), tasks=other,
                   handlers=(Handler(1, 0, C_SEND),), messages=messages)
    after = before._replace(handlers=())
    assert BY_NAME["stop-works"].check(before, Step("H1", "C3:reply-sent"), after) is None


def test_the_typing_indicator_runs_until_it_is_cancelled():
    """The typing task shows "typing..." for as long as the message is processed: it
    never ends by itself, only when the finally (F1) cancels it, so that cancel is an
    await the processing task really suspends at."""
    import asyncio
    import contextlib

    from sessionguard.reference.adapter import ReferenceAdapter
    from sessionguard.reference.fakes import FaultPlan, Ledger, ScriptedPlatform, ScriptedRunner

    async def lifetime() -> tuple[bool, bool]:
        ledger = Ledger()
        faults = FaultPlan()
        adapter = ReferenceAdapter(ScriptedRunner(ledger, faults), ScriptedPlatform(ledger, faults))
        typing = adapter._start_typing(0)
        for _ in range(5):
            await asyncio.sleep(0)
        still_up = not typing.done()
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
        return still_up, typing.cancelled()

    assert asyncio.run(lifetime()) == (True, True)


@pytest.mark.parametrize("design", ["seed", "reference"])
def test_starting_a_session_returns_its_new_owner(design):
    """start(e, k) returns the task it created, the one recorded as O[k]: the hook a
    subclass of the adapter builds on (tests/test_reference_explore.py wraps it)."""
    import asyncio

    from sessionguard.reference.adapter import ReferenceAdapter, SeedAdapter
    from sessionguard.reference.fakes import (
        Event,
        FaultPlan,
        Ledger,
        ScriptedPlatform,
        ScriptedRunner,
    )
    from sessionguard.reference.fakes import Message as Inbound

    async def start() -> bool:
        ledger, faults = Ledger(), FaultPlan()
        cls = ReferenceAdapter if design == "reference" else SeedAdapter
        adapter = cls(ScriptedRunner(ledger, faults), ScriptedPlatform(ledger, faults))
        task = adapter._start(0, Event(0, (Inbound(0, TEXT),)))
        owner = adapter.owners[0]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task is owner

    assert asyncio.run(start())


def test_the_seed_adapter_heal_drops_the_pending_slot_with_the_dead_lock():
    """seed's heal (as merged): a message that finds G[k] held by a finished owner
    removes the guard, the owner record and the pending slot, then starts afresh with
    only itself; the follow-ups that waited are dropped (the flaw the model reports)."""
    import asyncio

    from sessionguard.reference.adapter import SeedAdapter
    from sessionguard.reference.fakes import (
        Event,
        FaultPlan,
        Ledger,
        ScriptedPlatform,
        ScriptedRunner,
    )
    from sessionguard.reference.fakes import Message as Inbound

    async def heal() -> tuple[object, object, bool]:
        ledger, faults = Ledger(), FaultPlan()
        adapter = SeedAdapter(ScriptedRunner(ledger, faults), ScriptedPlatform(ledger, faults))

        async def finished() -> None:
            return None

        dead = asyncio.get_running_loop().create_task(finished())
        await dead
        waiting = Inbound(0, TEXT, "m0")
        adapter.guards[0], adapter.owners[0], adapter.pending[0] = asyncio.Event(), dead, Event(0, (waiting,))
        await adapter.handle_message(Inbound(0, TEXT, "m1"))
        result = (adapter.pending.get(0), adapter.owners.get(0), adapter.owners.get(0) is dead)
        for job in adapter.jobs:
            assert job.task is not None
            job.task.cancel()
        await asyncio.gather(*(job.task for job in adapter.jobs if job.task), return_exceptions=True)
        return result

    pending, owner, still_dead = asyncio.run(heal())
    assert pending is None and owner is not None and not still_dead


def test_a_command_s_wait_for_nothing_is_one_bare_yield():
    """C2 always suspends once, as the model's await does, but only for one turn of the
    loop when there is no owner and no earlier command to wait for: not a timer."""
    import asyncio

    from sessionguard.reference.adapter import ReferenceAdapter

    async def turns() -> int:
        waiting = asyncio.get_running_loop().create_task(ReferenceAdapter._after(None, []))
        for turn in range(1, 5):
            await asyncio.sleep(0)
            if waiting.done():
                return turn
        waiting.cancel()
        return 0

    assert asyncio.run(turns()) == 2


def test_the_decision_table_names_a_taken_over_session_and_a_command_guard_not_ours():
    """F2 in reference, when G[k] is no longer the task's own guard: "taken-over" (a
    command will hand the session on); seed's C-error when G[k] is no longer the
    command's guard: "not-ours" (touch nothing).  Their callers and contracts.py
    switch on these names."""
    from sessionguard.reference import decisions as d

    for has_pending in (False, True):
        assert d.finish_action(d.REFERENCE, has_pending, False) == d.TAKEN_OVER
    for has_owner in (False, True):
        for has_old in (False, True):
            assert d.command_error_action(False, has_owner, has_old) == "not-ours"


def test_reference_task_ending_after_a_shutdown_raises_nothing() -> None:
    # A shutdown clears O[k] and cancels the running task; that task's F2
    # then finds no owner record of its own to drop, and must not fail there
    # (it would end with a KeyError instead of its cancellation).
    from sessionguard.loop import explore_dfs
    from sessionguard.reference.harness import scenario_run
    from sessionguard.reference.scenarios import SCENARIOS

    errors: list[str] = []

    def judge(result: Any) -> bool:
        errors.extend(str(e) for e in result.errors)
        return result.verdict != "ok" or bool(result.errors)

    ex = explore_dfs(
        scenario_run("reference", SCENARIOS["shutdown"]), max_deviations=1, is_failure=judge, stop_on_failure=False
    )
    assert ex.exhausted and ex.schedules > 1
    assert not errors and ex.failure_count == 0
