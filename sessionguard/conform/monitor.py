"""Judging an adapter we did not write: its observations, written as model states.

After every loop step the monitor reads what can be seen from outside the
adapter (through the binding: G[k] by identity, O[k], the messages in P[k];
from the world: runner calls, replies, hanging calls; from the loop: which
task ran the step and which task created which) and writes it as a model
`State`.  The model's own property predicates (`sessionguard.model.properties`)
then judge it, so a finding here means exactly what it means for the model,
with the same wording.

What cannot be seen is inferred, conservatively, from what can:

* **tasks of a session**: every task created, directly or through other
  tasks, by a `handle_message` call for that session.  A task counts as a
  *session task* (a model `Task`) once it holds a message or has called the
  runner with an ordinary message; helper tasks (a typing indicator) never
  do, so they are not mistaken for workers.
* **who holds a message**: a `handle_message` call holds its own message.  A
  message that leaves P[k], or the hands of the task that ran the step,
  without reaching the runner, passes to the tasks that step created, or
  stays with that task if it created none.  A message in P[k] is held by P[k].
* **how a message ended**: the runner finished on it (answered); or its last
  holder ended without passing it on: by shutdown (shut down), cancelled
  while a /stop, /new or /reset of its session was in flight or came after
  it, or ended by a reset-like command's own handling (discarded), cancelled
  or failing after an injected fault (aborted).  Any other end leaves it
  with no fate and no holder, which `nothing-lost` reports as dropped.
* **positions**: a session task that has not run yet is at ``start``; one
  inside the runner at ``P1:runner``; any other live one is "working".  A
  `handle_message` call still awaiting counts as a command in flight (it
  may be one, and counting it is the lenient choice for `no-orphan-guard`).

Its first step is the platform's delivery (the model's H: a heal and a
command's takeover may replace a guard there); later steps of a call act
as the handler ``H<m>`` and may only touch guards it saw or installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessionguard.model.narrative import task_name
from sessionguard.model.properties import INVARIANTS, STEP_INVARIANTS
from sessionguard.model.vocabulary import (
    ABORTED,
    ANSWERED,
    B_RUNNER,
    C_RUNNER,
    DEAD,
    DISCARDED,
    ORDINARY,
    REAP,
    RESET_LIKE,
    RUNNER,
    SEND_REPLY,
    SENT,
    SHUT_DOWN,
    START,
    Handler,
    Level,
    Message,
    Session,
    State,
    Step,
    Task,
)
from sessionguard.reference.refinement import Finding


@dataclass
class Delivery:
    """One handle_message call: the platform's task for one inbound message."""

    mid: int
    key: int
    kind: str
    started: bool = False
    known: list[int] = field(default_factory=list)  # guard tokens: the one it found, the ones it installed
    held: set[int] = field(default_factory=set)
    took_over: bool = False  # it installed a guard of its own (a handoff, as seed's C1)


@dataclass
class Tracked:
    """A task of the adapter, created (directly or not) by a delivery for `key`."""

    tid: int
    key: int
    started: bool = False
    ran_ordinary: bool = False
    named: tuple[int, ...] = ()  # the messages it first held: its name, T(m..)
    held: set[int] = field(default_factory=set)
    known: list[int] = field(default_factory=list)

    @property
    def session_task(self) -> bool:
        return bool(self.named) or self.ran_ordinary


@dataclass
class Observed:
    """What the world outside the adapter saw, by message id (arrival order).

    The harness keeps it up to date as the run goes (`ConformWorld`).
    """

    kinds: list[str] = field(default_factory=list)  # per message id
    keys: list[int] = field(default_factory=list)
    during: list[tuple[int, ...]] = field(default_factory=list)
    runs: dict[int, int] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)
    sent: set[int] = field(default_factory=set)
    last_run: dict[int, int] = field(default_factory=dict)
    runner: dict[int, asyncio.Task[Any] | None] = field(default_factory=dict)  # R[k]
    calls: list[tuple[asyncio.Task[Any] | None, int, tuple[int, ...]]] = field(default_factory=list)
    hanging: set[asyncio.Task[Any]] = field(default_factory=set)
    in_runner: set[asyncio.Task[Any]] = field(default_factory=set)
    faults_fired: int = 0
    stopped: bool = False


class Monitor:
    """The observer: `monitor(step, label)` after every loop step; findings in `findings`.

    `sessions(k)` reads one session through the binding as (guard object,
    owner object, pending message ids or None).
    """

    def __init__(
        self,
        loop: Any,
        sessions: int,
        read: Callable[[int], tuple[object | None, object | None, tuple[int, ...] | None]],
        world: Observed,
    ) -> None:
        self.loop = loop
        self.nsessions = sessions
        self.read = read
        self.world = world
        self.deliveries: dict[asyncio.Task[Any], Delivery] = {}
        self.tracked: dict[asyncio.Task[Any], Tracked] = {}
        self.harness: set[asyncio.Task[Any]] = set()
        self._incoming: set[asyncio.Task[Any]] = set()
        self._reaping: set[asyncio.Task[Any]] = set()
        self.fates: dict[int, str] = {}
        self.findings: dict[str, Finding] = {}
        self.trace: list[tuple[int, str, State, Step | None]] = []
        self.steps_checked = 0
        self._tokens: dict[int, int] = {}
        self._keep: list[object] = []  # guards stay alive, so that their ids are not reused
        self._state = self._build(None)

    # --- bookkeeping the harness calls --------------------------------------------

    def delivery(self, task: asyncio.Task[Any], mid: int, key: int, kind: str) -> None:
        self.deliveries[task] = Delivery(mid, key, kind, held={mid})

    def during(self, key: int) -> tuple[int, ...]:
        """The /stop, /new and /reset of session `key` whose handoff is under way: a
        message arriving now must not reach the runner before they complete (SPEC 7).

        As in the model, a command is in flight for the handoff once it has
        taken the session over with a guard of its own; an adapter with no
        handoff (prefix's bypass) makes no such promise."""
        return tuple(
            d.mid
            for t, d in self.deliveries.items()
            if not t.done() and d.key == key and d.kind in RESET_LIKE and d.took_over
        )

    def harness_task(self, task: asyncio.Task[Any]) -> None:
        self.harness.add(task)

    def incoming(self, task: asyncio.Task[Any]) -> None:
        """A delivery task, before its first step (`delivery` registers it then)."""
        self._incoming.add(task)

    def session_of(self, task: asyncio.Task[Any]) -> int | None:
        """The session whose delivery created `task`, through any chain of tasks."""
        seen = 0
        current: asyncio.Task[Any] | None = task
        while current is not None and seen < 10_000:
            if current in self.deliveries:
                return self.deliveries[current].key
            if current in self.tracked:
                return self.tracked[current].key
            if current in self.harness:
                return None
            current = self.loop.parent_of(current)
            seen += 1
        return None

    @property
    def state(self) -> State:
        return self._state

    # --- one step ------------------------------------------------------------------

    def __call__(self, step: int, label: str) -> None:
        before = self._state
        actor = self.loop.task_by_label(label)
        self._adopt_new_tasks()
        guards_before = [s.guard for s in before.sessions]
        pending_before = [set(s.pending or ()) for s in before.sessions]
        first_step = False
        if actor in self.deliveries:
            d = self.deliveries[actor]
            first_step = not d.started
            if first_step and guards_before[d.key] is not None:
                d.known.append(guards_before[d.key])  # type: ignore[arg-type]
            d.started = True
        if actor in self.tracked:
            self.tracked[actor].started = True
        created = [t for t, info in self.tracked.items() if info.tid >= self._next_tid_before]
        views = [self.read(k) for k in range(self.nsessions)]
        self._reaping = self._find_reaping([owner for _, owner, _ in views])
        guards_after = [self._token(g) for g, _, _ in views]
        pending_after = [set(p or ()) for _, _, p in views]
        for k in range(self.nsessions):
            installed = guards_after[k]
            if installed is not None and installed != guards_before[k]:
                self._know(actor, installed)
            for t in created:
                info = self.tracked[t]
                if info.key == k and installed is not None and installed not in info.known:
                    info.known.append(installed)  # handed: the guard in place when it was made
        self._move_messages(actor, created, pending_before, pending_after)
        for caller, _, mids in self.world.calls:
            if caller in self.tracked and any(self.world.kinds[m] in ORDINARY for m in mids):
                info = self.tracked[caller]
                info.ran_ordinary = True
                if not info.named:
                    info.named = mids  # it got its work some way we did not see: name it by its first run
        self._settle_finished()
        after = self._build(views)
        effects: list[tuple[Any, ...]] = [
            ("guard", k, guards_before[k], guards_after[k])
            for k in range(self.nsessions)
            if guards_before[k] != guards_after[k]
        ]
        effects += [("run", key, mids) for _, key, mids in self.world.calls]
        self.world.calls.clear()
        st = self._step(actor, first_step, before, effects)
        self._state = after
        self.steps_checked += 1
        self.trace.append((step, label, after, st))
        if after == before and not effects:
            return
        for prop in STEP_INVARIANTS:
            if prop.name not in self.findings:
                why = prop.check(before, st, after)
                if why:
                    self.findings[prop.name] = Finding(prop.name, step, label, why)
        for inv in INVARIANTS:
            if inv.name not in self.findings:
                why = inv.check(after)
                if why:
                    self.findings[inv.name] = Finding(inv.name, step, label, why)

    def note(self, prop: str, step: int, label: str, why: str) -> None:
        self.findings.setdefault(prop, Finding(prop, step, label, why))

    # --- the inference ---------------------------------------------------------------

    _next_tid_before = 0

    def _adopt_new_tasks(self) -> None:
        """Track every task the adapter made since the last step (with its session)."""
        self._next_tid_before = len(self.tracked)
        for task in self.loop.tasks():
            if task in self.tracked or task in self.deliveries or task in self.harness or task in self._incoming:
                continue
            key = self.session_of(task)
            if key is None:
                self.harness.add(task)  # made by the harness, or by the adapter outside any message
                continue
            self.tracked[task] = Tracked(len(self.tracked), key)

    def _token(self, guard: object | None) -> int | None:
        if guard is None:
            return None
        ident = id(guard)
        if ident not in self._tokens:
            self._tokens[ident] = len(self._tokens)
            self._keep.append(guard)
        return self._tokens[ident]

    def _know(self, actor: asyncio.Task[Any] | None, guard: int) -> None:
        who: Delivery | Tracked | None = self.deliveries.get(actor) if actor else None  # type: ignore[arg-type]
        if who is None and actor is not None:
            who = self.tracked.get(actor)
        if who is not None and guard not in who.known:
            who.known.append(guard)
            if isinstance(who, Delivery):
                who.took_over = True

    def _find_reaping(self, owners: list[object | None]) -> set[asyncio.Task[Any]]:
        """Finished tasks still to be finished by a done-callback (the model's REAP).

        A task whose body has ended but which is still O[k], with a done-callback
        queued: the callback is where its guard will be released or handed on,
        so until it runs the session is not dead."""
        queued = self.loop.callbacks_pending()
        return {t for t in self.tracked if t.done() and t in queued and any(o is t for o in owners)}

    def _holders(self) -> list[Delivery | Tracked]:
        return [*self.deliveries.values(), *self.tracked.values()]

    def _holder(self, task: asyncio.Task[Any] | None) -> Delivery | Tracked | None:
        if task is None:
            return None
        return self.deliveries.get(task) or self.tracked.get(task)

    def _move_messages(
        self,
        actor: asyncio.Task[Any] | None,
        created: list[asyncio.Task[Any]],
        pending_before: list[set[int]],
        pending_after: list[set[int]],
    ) -> None:
        in_pending = set().union(*pending_after) if pending_after else set()
        for holder in self._holders():
            holder.held -= in_pending
        from_pending: set[int] = set().union(*pending_before) - in_pending if pending_before else set()
        me = self._holder(actor)
        mine: set[int] = set()
        if me is not None and (isinstance(me, Delivery) or (actor is not None and actor.done())):
            mine = set(me.held)  # a delivery hands its message on; an ending task leaves it
        finished = {m for m in self.world.runs if self.world.runs[m] > 0} | set(self.fates)
        from_pending -= finished
        mine -= finished
        # The first task the step created is the one that runs what was taken
        # (a start, a drain); later ones are helpers (a typing indicator).
        heir = self.tracked[created[0]] if created else None
        if heir is not None:
            heir.held |= from_pending | mine
            if me is not None:
                me.held -= mine
            if not heir.named and heir.held:
                heir.named = tuple(sorted(heir.held))
        elif me is not None and not (isinstance(me, Tracked) and actor is not None and actor.done()):
            me.held |= from_pending
            if isinstance(me, Tracked) and not me.named and me.held:
                me.named = tuple(sorted(me.held))
        elif self.world.stopped:
            for m in from_pending:
                self.fates[m] = SHUT_DOWN  # shutdown cleared P[k]
        # else: a callback, a timer or a task in its last step took it out of
        # P[k] and passed it to no one: nobody holds it now (dropped).

    def _settle_finished(self) -> None:
        """Messages whose last holder has ended: their fate, from how it ended."""
        alive_held: set[int] = set()
        finished: list[tuple[asyncio.Task[Any], Delivery | Tracked]] = []
        holders: list[tuple[asyncio.Task[Any], Delivery | Tracked]] = [*self.deliveries.items(), *self.tracked.items()]
        for task, holder in holders:
            if task.done() and holder.held:
                finished.append((task, holder))
            else:
                alive_held |= holder.held
        for task, holder in finished:
            reaping = task in self._reaping
            for m in sorted(holder.held):
                if m in alive_held or m in self.fates or m in self.world.answered:
                    continue
                if reaping and not self.world.runs.get(m, 0):
                    continue  # its done-callback may still pass it on
                fate = self._fate_at_end(task, holder, m)
                if fate is not None:
                    self.fates[m] = fate
            keep = self.world.answered | ({m for m in holder.held if not self.world.runs.get(m, 0)} if reaping else set())
            holder.held &= keep

    def _fate_at_end(self, task: asyncio.Task[Any], holder: Delivery | Tracked, m: int) -> str | None:
        world = self.world
        key = world.keys[m]
        if world.stopped:
            return SHUT_DOWN
        if isinstance(holder, Delivery) and holder.kind in RESET_LIKE and holder.mid != m:
            return DISCARDED  # a /stop, /new or /reset discarding what waited
        later_reset = any(
            world.kinds[c] in RESET_LIKE and world.keys[c] == key for c in range(m + 1, len(world.kinds))
        )
        if task.cancelled():
            return DISCARDED if later_reset else ABORTED
        if world.faults_fired and task.exception() is not None:
            return ABORTED
        return None  # ended without passing it on: dropped

    # --- writing the model state --------------------------------------------------

    def _build(self, views: list[tuple[object | None, object | None, tuple[int, ...] | None]] | None) -> State:
        world = self.world
        live = {t: info for t, info in self.tracked.items() if info.session_task and (not t.done() or t in self._reaping)}
        tid_of = {t: info.tid for t, info in live.items()}
        sessions = []
        for k in range(self.nsessions):
            guard, owner, pending = views[k] if views is not None else (None, None, None)
            if owner is None:
                owner_id = None
            elif owner in tid_of:
                owner_id = tid_of[owner]  # type: ignore[index]
            elif callable(getattr(owner, "done", None)) and owner.done():  # type: ignore[attr-defined]
                owner_id = DEAD
            else:
                owner_id = None
            runner_task = world.runner.get(k)
            sessions.append(
                Session(
                    self._token(guard),
                    owner_id,
                    pending,
                    tid_of.get(runner_task) if runner_task is not None else None,  # type: ignore[arg-type]
                    world.last_run.get(k, -1),
                )
            )
        tasks = []
        for t, info in sorted(live.items(), key=lambda kv: kv[1].tid):
            guards = info.known or [None]  # type: ignore[list-item]
            if t.done():  # at REAP: finished; what it still holds is passed on by the callback
                unrun = tuple(sorted(m for m in info.held if not world.runs.get(m, 0) and m not in info.named))
                reaped = (Level(info.named, guards[0]), Level(unrun, None))
                tasks.append(Task(info.tid, info.key, REAP, reaped, None, False))
                continue
            # The first level names the task (T(m0)) and stays; what it took
            # on later (follow-ups it runs inline) is held one level down.
            levels = [Level(info.named, guards[0])]
            later = tuple(sorted(info.held - set(info.named)))
            levels += [Level(later if i == 0 else (), g) for i, g in enumerate(guards[1:] or [None])]
            if not info.started:
                pc = START
            else:
                pc = RUNNER if t in world.in_runner else SEND_REPLY
            tasks.append(Task(info.tid, info.key, pc, tuple(levels), None, t in world.hanging))
        handlers = []
        for t, d in self.deliveries.items():
            if t.done() or not d.started:
                continue
            old = d.known[0] if d.known else None
            cg = d.known[-1] if len(d.known) > 1 else None
            pc = C_RUNNER if d.kind in RESET_LIKE or d.kind in ORDINARY else B_RUNNER
            handlers.append(Handler(d.mid, d.key, pc, old, cg, None, t in world.hanging))
        messages = tuple(
            Message(
                world.kinds[m],
                world.keys[m],
                world.runs.get(m, 0),
                ANSWERED if m in world.answered else self.fates.get(m),
                SENT if m in world.sent else None,
                world.during[m],
            )
            for m in range(len(world.kinds))
        )
        set_guards = frozenset(
            tok
            for g, _, _ in (views or [])
            if g is not None and callable(getattr(g, "is_set", None)) and g.is_set()  # type: ignore[attr-defined]
            and (tok := self._token(g)) is not None
        )
        return State(tuple(sessions), tuple(tasks), tuple(handlers), messages, set_guards, 0, world.stopped, 0)

    def _step(self, actor: asyncio.Task[Any] | None, first_step: bool, before: State, effects: list[tuple[Any, ...]]) -> Step:
        if actor in self.deliveries:
            d = self.deliveries[actor]  # type: ignore[index]
            if first_step:
                return Step("platform", "handle_message", f"m{d.mid} {d.kind} for k{d.key}", message=d.mid, effects=tuple(effects))
            return Step(f"H{d.mid}", "handle_message", effects=tuple(effects))
        if actor in self.tracked:
            info = self.tracked[actor]  # type: ignore[index]
            if any(t.tid == info.tid for t in before.tasks):
                return Step(f"T{info.tid}", "process", effects=tuple(effects))
            # Not a session task before this step (it had not run or held
            # anything): the guards it may touch are the ones it was handed.
            return Step("environment", "task", effects=tuple(effects))
        return Step("environment", "callback", effects=tuple(effects))

    def name(self, tid: int) -> str:
        return task_name(self._state, tid)
