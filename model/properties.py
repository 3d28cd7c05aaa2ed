"""The properties of SPEC section 5, as data.

Each property is a named object with a docstring that says which race it rules
out.  There are three shapes (after Stateright's always / eventually):

* `Invariant`: a predicate of one state; it must hold in every reachable state.
* `StepInvariant`: a predicate of one step (the state before, the step and its
  effects, the state after); it must hold on every reachable step.  Some
  properties speak of an event ("when /stop's reply goes out, ...") and are
  checked at that event.
* `Liveness`: checked on the whole reachable graph by the checker (see
  `checker.py`): from every reachable state the system can still settle.

A predicate returns None when the property holds and otherwise the exact
condition that failed, in words, naming the session, task and message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .narrative import actor_name, task_name
from .vocabulary import (
    BYPASS,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    DEAD,
    OK_FATES,
    ORDINARY,
    REAP,
    START,
    STOP,
    State,
    Step,
)


@dataclass(frozen=True)
class Property:
    name: str
    title: str
    number: int  # its number in SPEC section 5
    doc: str

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Invariant(Property):
    check: Callable[[State], str | None]


@dataclass(frozen=True)
class StepInvariant(Property):
    check: Callable[[State, Step, State], str | None]


@dataclass(frozen=True)
class Liveness(Property):
    pass


# --- helpers over a state ----------------------------------------------------------


def working(state: State, k: int) -> list[int]:
    """Tasks of session k that are processing: past their first step, not yet ended."""
    return [t.tid for t in state.tasks if t.session == k and t.pc not in (START, REAP)]


def commands_in_flight(state: State, k: int) -> list[int]:
    return [h.mid for h in state.handlers if h.session == k and h.pc in (C_RUNNER, C_AWAIT, C_SEND)]


def holders(state: State) -> set[int]:
    """Messages someone still holds: a pending slot, a task's event, a handler."""
    held: set[int] = set()
    for s in state.sessions:
        held.update(s.pending or ())
    for t in state.tasks:
        for lv in t.levels:
            held.update(lv.event)
            held.update(lv.popped or ())
    for h in state.handlers:
        held.add(h.mid)
    return held


def hung_sessions(state: State, bounded: frozenset[str] = frozenset()) -> list[int]:
    """Sessions with a call that hangs for good (a call hung at an await the
    design bounds with a timeout will end by itself, so it does not count)."""
    hung = {t.session for t in state.tasks if t.hung}
    hung |= {h.session for h in state.handlers if h.hung and h.pc not in bounded}
    return sorted(hung)


def _msgs(ids: tuple[int, ...] | list[int]) -> str:
    return ", ".join(f"m{m}" for m in ids)


# --- 1 to 8: safety ----------------------------------------------------------------


def _one_worker(state: State) -> str | None:
    for k in range(len(state.sessions)):
        tids = working(state, k)
        if len(tids) > 1:
            names = " and ".join(task_name(state, t) for t in tids)
            return f"{names} are both processing messages of session k{k}"
    return None


ONE_WORKER = Invariant(
    "one-worker",
    "One worker per session",
    1,
    """At most one task per session key is processing a message, from its call
    of the runner until its cleanup is done.  Rules out the race in which an
    old task's unwind frees the session while it still works, so that the next
    message starts a second task beside it: two agents then answer the same
    chat at once, interleaving replies and history.""",
    _one_worker,
)


def _no_unguarded_worker(state: State) -> str | None:
    if state.stopped:
        return None
    for k, s in enumerate(state.sessions):
        if s.guard is None:
            for tid in working(state, k):
                return f"{task_name(state, tid)} is processing for session k{k} but G[k{k}] is absent"
    return None


NO_UNGUARDED_WORKER = Invariant(
    "no-unguarded-worker",
    "No unguarded worker",
    2,
    """A live processing task always has a guard installed for its session.
    Rules out the state in which the guard was removed (by a heal, a command's
    release or another task's unwind) while a task still works: the next
    message then finds the session idle and starts a second worker.""",
    _no_unguarded_worker,
)


def _no_orphan_guard(state: State) -> str | None:
    if state.stopped:
        return None
    for k, s in enumerate(state.sessions):
        if s.guard is None:
            continue
        if any(t.session == k for t in state.tasks) or commands_in_flight(state, k):
            continue
        if s.owner == DEAD:
            continue  # the recorded owner finished: the next inbound message heals it
        return (
            f"G[k{k}] is present, but no task of k{k} is alive, no command is in "
            f"flight, and no finished owner is recorded to heal it"
        )
    return None


NO_ORPHAN_GUARD = Invariant(
    "no-orphan-guard",
    "No orphan guard",
    3,
    """A guard is present only while a task of its session is alive, a command
    for it is in flight, or its recorded owner has finished (so that the next
    inbound message heals it).  A guard that nobody owns and nothing will heal
    is the #11016 trap: every message is answered "Interrupting current
    task..." and queued behind a task that does not exist.""",
    _no_orphan_guard,
)


def _known_guards(state: State, actor: str) -> set[int] | None:
    """The guards an actor installed or was handed; None for platform/environment."""
    if actor.startswith("T"):
        tid = int(actor[1:])
        for t in state.tasks:
            if t.tid == tid:
                return {lv.guard for lv in t.levels if lv.guard is not None}
        return set()
    if actor.startswith("H"):
        mid = int(actor[1:])
        for h in state.handlers:
            if h.mid == mid:
                return {g for g in (h.old, h.cg) if g is not None}
        return set()
    return None


def _release_by_owner(before: State, step: Step, after: State) -> str | None:
    known = _known_guards(before, step.actor)
    if known is None:
        return None  # H's heal and C1's takeover are the designed ways to replace a guard
    for effect in step.effects:
        if effect[0] == "guard":
            _, k, old, new = effect
            if old is not None and old not in known:
                what = "removed" if new is None else "replaced"
                who = actor_name(before, step.actor)
                return f"{who} {what} G[k{k}], a guard it neither installed nor was handed"
    return None


RELEASE_BY_OWNER = StepInvariant(
    "release-by-owner",
    "Release by owner only",
    4,
    """A task or command removes (or replaces) only a guard it installed or was
    handed.  Rules out the unwind of an old task deleting the guard of a newer
    owner (prefix's unconditional delete), and a command's final step
    overwriting the guard of a task or command that came after it.""",
    _release_by_owner,
)


def _nothing_lost(state: State) -> str | None:
    held = holders(state)
    for m, msg in enumerate(state.messages):
        if msg.runs > 1:
            return f"m{m} ({msg.kind}) was given to the runner twice"
        if msg.fate is None and m not in held:
            return f"m{m} ({msg.kind}) was dropped silently: no one holds it and it never ran"
        if msg.fate is not None and msg.fate not in OK_FATES:
            return f"m{m} ({msg.kind}) ended as {msg.fate}"
    return None


NOTHING_LOST = Invariant(
    "nothing-lost",
    "Nothing lost, nothing twice",
    5,
    """Every accepted message ends in exactly one fate: answered by the runner
    once (alone or merged into a later event), discarded by an explicit /stop,
    /new or /reset, or lost to a fault of its own task.  Rules out silent drops
    (a pending follow-up thrown away by a heal, or popped by a task that then
    dies) and double processing (the same follow-up run by two tasks).""",
    _nothing_lost,
)


def _order(before: State, step: Step, after: State) -> str | None:
    for effect in step.effects:
        if effect[0] != "run":
            continue
        _, k, event = effect
        ordinary = [m for m in event if after.messages[m].kind in ORDINARY]
        if ordinary != sorted(ordinary):
            return f"the runner got {_msgs(ordinary)} out of arrival order"
        last = before.sessions[k].last_run
        if ordinary and ordinary[0] < last:
            return f"the runner got m{ordinary[0]} after the later m{last} of session k{k}"
    return None


ORDER = StepInvariant(
    "order",
    "Order",
    6,
    """Follow-ups reach the runner in arrival order, and a merge keeps order.
    Rules out a stranded pending slot being picked up by a later task after a
    newer message, and two drains racing so that the second message is
    answered before the first.""",
    _order,
)


def _handoff(before: State, step: Step, after: State) -> str | None:
    for effect in step.effects:
        if effect[0] != "run":
            continue
        _, k, event = effect
        for m in event:
            if after.messages[m].kind not in ORDINARY:
                continue
            for c in after.messages[m].during:
                if any(h.mid == c for h in after.handlers):
                    return (
                        f"m{m} arrived while the command m{c} was in flight and reached "
                        f"the runner before that command completed"
                    )
    return None


HANDOFF = StepInvariant(
    "handoff",
    "Command handoff",
    7,
    """For /stop, /new and /reset, follow-ups that arrive while the command is
    in flight start only after the command is complete (its reply out, the old
    task gone), in arrival order.  Rules out the old task picking up a
    follow-up inline while the command still runs, after which the command
    cancels the very follow-up the user sent after /stop.""",
    _handoff,
)


def _control_never_waits(state: State) -> str | None:
    for k, s in enumerate(state.sessions):
        for m in s.pending or ():
            if state.messages[m].kind in BYPASS:
                return f"the control input m{m} ({state.messages[m].kind}) waits in P[k{k}]"
    return None


CONTROL_NEVER_WAITS = Invariant(
    "control-never-waits",
    "Control inputs never wait",
    8,
    """Control inputs (/stop, /new, /reset, /approve, ...) are answered directly
    and never queued behind the run: an agent blocked waiting for /approve must
    be able to receive it.  Rules out the deadlock in which the approval sits
    in the pending slot of the very run that waits for it.""",
    _control_never_waits,
)


# --- 9 to 11: liveness, and the events they speak of --------------------------------


NO_TRAPPED_SESSION = Liveness(
    "no-trapped-session",
    "No trapped session (#11016)",
    9,
    """If no call hangs, every accepted message reaches its fate and every
    session returns to a state in which the next message is processed, with no
    action from the user.  If calls hang, one /stop per session is enough to get
    there.  Checked on the whole reachable graph, not up to a depth: from every
    reachable state a settled state must still be reachable, using no new
    fault and no new message (beyond those recovery /stops).  Rules out the
    #11016 trap in both its forms (a dead owner and a wedged one).""",
)


def _stop_works(before: State, step: Step, after: State) -> str | None:
    if not step.actor.startswith("H") or after.stopped:
        return None
    mid = int(step.actor[1:])
    msg = after.messages[mid]
    if msg.kind != STOP or msg.reply != "sent" or any(h.mid == mid for h in after.handlers):
        return None
    k = msg.session
    for t in after.tasks:
        if t.session != k or t.pc == REAP:
            continue  # a task at REAP has finished: it works on nothing any more
        for lv in t.levels:
            old = [m for m in lv.event if m < mid and after.messages[m].runs > 0]
            if old:
                who = task_name(after, t.tid)
                return f"/stop m{mid} replied, but {who} still works on the older {_msgs(old)}"
    s = after.sessions[k]
    if s.guard is not None and not any(t.session == k for t in after.tasks):
        if not commands_in_flight(after, k) and s.owner != DEAD:
            return f"/stop m{mid} replied, but G[k{k}] stays with no one to release it"
    return None


STOP_WORKS = StepInvariant(
    "stop-works",
    "/stop works",
    10,
    """When /stop's reply goes out and its handling ends, no task of the session
    still works on a message the runner had started before the /stop, and the
    session is not left busy with nobody to free it.  Rules out #11016's
    "/stop says No active task to stop" while the adapter's task goes on.""",
    _stop_works,
)


def _dead_lock_heals(before: State, step: Step, after: State) -> str | None:
    if step.message is None:
        return None
    m = step.message
    msg = after.messages[m]
    if msg.kind not in ORDINARY:
        return None
    k = msg.session
    s = before.sessions[k]
    dead = (
        s.guard is not None
        and not any(t.session == k for t in before.tasks)
        and not commands_in_flight(before, k)
    )
    if dead and m in (after.sessions[k].pending or ()):
        return f"m{m} was queued behind the dead guard of session k{k} instead of processed"
    return None


DEAD_LOCK_HEALS = StepInvariant(
    "dead-lock-heals",
    "A dead lock heals",
    11,
    """If the owner ended without releasing its guard, the next inbound message
    for the session is processed, not queued.  Rules out the dead-owner form of
    #11016, in which a task's finally ended early and the guard it left behind
    answers every later message as busy.""",
    _dead_lock_heals,
)


PROPERTIES: tuple[Property, ...] = (
    ONE_WORKER,
    NO_UNGUARDED_WORKER,
    NO_ORPHAN_GUARD,
    RELEASE_BY_OWNER,
    NOTHING_LOST,
    ORDER,
    HANDOFF,
    CONTROL_NEVER_WAITS,
    NO_TRAPPED_SESSION,
    STOP_WORKS,
    DEAD_LOCK_HEALS,
)
BY_NAME = {p.name: p for p in PROPERTIES}
INVARIANTS = tuple(p for p in PROPERTIES if isinstance(p, Invariant))
STEP_INVARIANTS = tuple(p for p in PROPERTIES if isinstance(p, StepInvariant))
