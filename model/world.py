"""A mutable working copy of a `State`, in which one rule runs.

A rule of a design is ordinary imperative code against a `World`: it reads and
writes `G[k]`, `O[k]`, `P[k]`, creates tasks, records fates.  `freeze()` turns
the result back into an immutable `State`, renaming guard tokens and task ids
in order of first appearance so that two states that differ only in the names
of their guards or tasks become one state.  That renaming is sound because the
designs only ever compare guards and tasks for identity, never by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .vocabulary import (
    ABORTED,
    DEAD,
    DROPPED,
    OWED,
    REAP,
    Handler,
    Level,
    Message,
    Session,
    State,
    Task,
)

# A record built with tuple.__new__ skips the Python-level __new__ that
# NamedTuple generates: about a microsecond saved per record, on every step.
new_record = tuple.__new__


class SessionW:
    """One session's records; every change of G[k] is logged for the step properties."""

    __slots__ = ("k", "_guard", "owner", "pending", "runner", "last_run", "_log", "_src")

    def __init__(self, k: int, s: Session, log: list[Effect]) -> None:
        self.k = k
        self._src = s
        self._guard, self.owner, self.pending, self.runner, self.last_run = s
        self._log = log

    @property
    def guard(self) -> int | None:
        return self._guard

    @guard.setter
    def guard(self, value: int | None) -> None:
        if value != self._guard:
            self._log.append(("guard", self.k, self._guard, value))
        self._guard = value

# What a step did that the step properties need to see, in the token space of
# the state the step started from: ("guard", k, old, new) and ("run", k, event).
Effect = tuple[Any, ...]


@dataclass(slots=True)
class TaskW:
    tid: int
    session: int
    pc: str
    levels: list[Level]
    cancel: str | None
    hung: bool
    unwind: str | None

    @property
    def top(self) -> Level:
        return self.levels[-1]

    def set_top(self, level: Level) -> None:
        self.levels[-1] = level


@dataclass(slots=True)
class HandlerW:
    mid: int
    session: int
    pc: str
    old: int | None
    cg: int | None
    target: int | None
    hung: bool


class World:
    """The state being changed by one rule.

    Tasks and handlers are copied on write: `task(tid)` and `handler(mid)`
    turn the immutable record into a mutable one the first time a rule asks
    for it, and `freeze()` reuses every record no rule touched.  Most steps
    change one task or one handler, so most of a state is shared with the
    state it came from.
    """

    __slots__ = (
        "log", "sessions", "_tasks", "handlers", "messages", "_set_guards",
        "faults_used", "stopped", "extra", "_next_guard", "_next_task",
    )

    def __init__(self, state: State) -> None:
        sessions, tasks, handlers, messages, set_guards, faults_used, stopped, extra = state
        log: list[Effect] = []
        self.log = log
        self.sessions = [SessionW(k, s, log) for k, s in enumerate(sessions)]
        self._tasks: list[Task | TaskW] = list(tasks)
        # Read-only iteration works on either kind of record; mutate only what
        # `handler(mid)` returns.
        self.handlers: list[Handler | HandlerW] = list(handlers)
        self.messages = list(messages)
        self._set_guards: frozenset[int] | set[int] = set_guards
        self.faults_used = faults_used
        self.stopped = stopped
        self.extra = extra
        self._next_guard: int | None = None  # computed when first needed
        self._next_task: int | None = None

    # --- guards ---------------------------------------------------------------

    def _guards_in_use(self) -> list[int]:
        out = [s.guard for s in self.sessions if s.guard is not None]
        for t in self._tasks:
            out += [lv.guard for lv in t.levels if lv.guard is not None]
        for h in self.handlers:
            out += [g for g in (h.old, h.cg) if g is not None]
        return out

    def new_guard(self) -> int:
        """A fresh Event: a token no one holds yet, not set."""
        if self._next_guard is None:
            # Fresh tokens never collide with a token still in use, nor with
            # one whose "set" flag is still recorded.
            self._next_guard = 1 + max([*self._guards_in_use(), *self._set_guards], default=-1)
        g = self._next_guard
        self._next_guard += 1
        return g

    @property
    def set_guards(self) -> frozenset[int] | set[int]:
        return self._set_guards

    def is_set(self, guard: int | None) -> bool:
        return guard is not None and guard in self._set_guards

    def set_guard(self, guard: int | None) -> None:
        if guard is not None and guard not in self._set_guards:
            self._set_guards = set(self._set_guards) | {guard}

    def clear_guard(self, guard: int | None) -> None:
        if guard is not None and guard in self._set_guards:
            self._set_guards = set(self._set_guards) - {guard}

    # --- tasks and handlers -----------------------------------------------------

    @property
    def tasks(self) -> list[TaskW]:
        """Every task, all made mutable (for rules that change many at once)."""
        for i, t in enumerate(self._tasks):
            if isinstance(t, Task):
                self._tasks[i] = _thaw(t)
        return self._tasks  # type: ignore[return-value]

    def create_task(self, k: int, event: tuple[int, ...], guard: int | None = None) -> int:
        """asyncio.create_task(process(event)): it runs its first step later."""
        if self._next_task is None:
            self._next_task = 1 + max((t.tid for t in self._tasks), default=-1)
        tid = self._next_task
        self._next_task += 1
        self._tasks.append(TaskW(tid, k, "start", [Level(event, guard)], None, False, None))
        return tid

    def task(self, tid: int) -> TaskW | None:
        for i, t in enumerate(self._tasks):
            if t.tid == tid:
                if isinstance(t, Task):
                    t = self._tasks[i] = _thaw(t)
                return t
        return None

    def end_task(self, task: TaskW) -> None:
        """The task is done: it leaves the world; O[k] may still name it (as DEAD)."""
        self._tasks.remove(task)
        s = self.sessions[task.session]
        if s.owner == task.tid:
            s.owner = DEAD
        if s.runner == task.tid:
            s.runner = None
        # A reply it was about to send is lost with it.
        for lv in task.levels:
            if lv.reply:
                for m in lv.event:
                    self.set_reply(m, DROPPED)

    def running(self, tid: int | None) -> TaskW | None:
        """The task, if it has not finished (a done task awaiting its callback has)."""
        if tid is None or tid == DEAD:
            return None
        t = self.task(tid)
        return t if t is not None and t.pc != REAP else None

    def handler(self, mid: int) -> HandlerW:
        for i, h in enumerate(self.handlers):
            if h.mid == mid:
                if isinstance(h, Handler):
                    h = self.handlers[i] = HandlerW(*h)
                return h
        raise KeyError(mid)

    # --- messages -------------------------------------------------------------

    # Messages are rebuilt field by field rather than with `_replace`, which
    # costs several times more; these three run on most steps.

    def run_messages(self, k: int, event: tuple[int, ...], ordinary: frozenset[str]) -> None:
        """The runner is called with `event`: count the call and note the order."""
        s = self.sessions[k]
        self.log.append(("run", k, event))
        for m in event:
            msg = self.messages[m]
            self.messages[m] = new_record(Message, (msg[0], msg[1], min(2, msg[2] + 1), msg[3], msg[4], msg[5]))
            if msg.kind in ordinary:
                s.last_run = max(s.last_run, m)

    def set_fate(self, m: int, fate: str) -> None:
        msg = self.messages[m]
        if msg.fate is None:
            self.messages[m] = new_record(Message, (msg[0], msg[1], msg[2], fate, msg[4], msg[5]))

    def set_reply(self, m: int, reply: str) -> None:
        msg = self.messages[m]
        if (reply == OWED or msg.reply == OWED) and msg.reply != reply:
            self.messages[m] = new_record(Message, (msg[0], msg[1], msg[2], msg[3], reply, msg[5]))

    def abort(self, event: tuple[int, ...], fate: str = ABORTED) -> None:
        for m in event:
            self.set_fate(m, fate)

    # --- back to an immutable state -------------------------------------------

    def freeze(self) -> State:
        """The canonical immutable state: guards and tasks renamed by first use.

        Guards are numbered in order of first use (sessions, then each task's
        levels, then handlers) and tasks by position; a reference to a task
        that has ended becomes DEAD.  Every record whose content does not
        change is kept as it is, so most of a state is shared with the state
        it came from.

        Most steps rename nothing: the guards in use are already numbered
        0, 1, ... in order of first use and every task id is its position.
        Those take the short path below, which only rebuilds the records a
        rule changed; `_freeze_renaming` does the general case.
        """
        sessions_w = self.sessions
        tasks_w = self._tasks
        handlers_w = self.handlers
        gmap: dict[int, int] = {}
        renamed = False  # does some guard get a new number?
        for s in sessions_w:
            x = s._guard
            if x is not None and x not in gmap:
                renamed = renamed or x != len(gmap)
                gmap[x] = len(gmap)
        positional = True  # is every task id its position?
        for i, t in enumerate(tasks_w):
            if t.tid != i:
                positional = False
            for lv in t.levels:
                x = lv[1]
                if x is not None and x not in gmap:
                    renamed = renamed or x != len(gmap)
                    gmap[x] = len(gmap)
        for h in handlers_w:
            x = h.old
            if x is not None and x not in gmap:
                renamed = renamed or x != len(gmap)
                gmap[x] = len(gmap)
            x = h.cg
            if x is not None and x not in gmap:
                renamed = renamed or x != len(gmap)
                gmap[x] = len(gmap)
        set_guards = self._set_guards
        if set_guards and not renamed:
            # A set flag of a guard no one holds any more is dropped: that is a renaming too.
            renamed = not set_guards <= gmap.keys()
        if renamed or not positional:
            return self._freeze_renaming(gmap)

        # Nothing is renamed, but a reference to a task that ended becomes DEAD:
        # with task ids equal to positions, that is any id outside 0..n-1.
        n = len(tasks_w)
        sessions: list[Session] = []
        for s in sessions_w:
            owner, runner = s.owner, s.runner
            if owner is not None and not DEAD <= owner < n:
                owner = DEAD
            if runner is not None and not DEAD <= runner < n:
                runner = DEAD
            fields = (s._guard, owner, s.pending, runner, s.last_run)
            src = s._src
            sessions.append(src if fields == src else new_record(Session, fields))
        tasks: list[Task] = []
        for i, t in enumerate(tasks_w):
            if type(t) is Task:
                tasks.append(t)
            else:
                tasks.append(new_record(Task, (i, t.session, t.pc, tuple(t.levels), t.cancel, t.hung, t.unwind)))
        handlers: list[Handler] = []
        for h in handlers_w:
            target = h.target
            if target is not None and not DEAD <= target < n:
                target = DEAD
            if type(h) is Handler and target == h.target:
                handlers.append(h)
            else:
                handlers.append(new_record(Handler, (h.mid, h.session, h.pc, h.old, h.cg, target, h.hung)))
        if type(set_guards) is not frozenset:
            set_guards = frozenset(set_guards)
        return self._state(sessions, tasks, handlers, set_guards)

    def _state(self, sessions: list[Any], tasks: list[Any], handlers: list[Any], set_guards: frozenset[int]) -> State:
        """The frozen state: the parts both ways of freezing build, and the rest as it is."""
        return new_record(State, (
            tuple(sessions),
            tuple(tasks),
            tuple(handlers),
            tuple(self.messages),
            set_guards,
            self.faults_used,
            self.stopped,
            self.extra,
        ))

    def _freeze_renaming(self, gmap: dict[int, int]) -> State:
        """`freeze()` for a step after which guards or tasks get new numbers."""
        tmap = {t.tid: i for i, t in enumerate(self._tasks)}

        def tid(x: int | None) -> int | None:
            if x is None or x == DEAD:
                return x
            return tmap.get(x, DEAD)

        sessions = []
        for s in self.sessions:
            guard = None if s._guard is None else gmap[s._guard]
            owner, runner = tid(s.owner), tid(s.runner)
            src = s._src
            if (
                guard == src[0]
                and owner == src[1]
                and s.pending == src[2]
                and runner == src[3]
                and s.last_run == src[4]
            ):
                sessions.append(src)
            else:
                sessions.append(new_record(Session, (guard, owner, s.pending, runner, s.last_run)))
        tasks = []
        for i, t in enumerate(self._tasks):
            levels: tuple[Level, ...] | list[Level] = t.levels
            renamed: list[Level] | None = None
            for j, lv in enumerate(levels):
                x = lv[1]
                if x is not None and gmap[x] != x:
                    if renamed is None:
                        renamed = list(levels)
                    renamed[j] = new_record(Level, (lv[0], gmap[x], lv[2], lv[3]))
            if renamed is None and i == t.tid and type(t) is Task:
                tasks.append(t)
            else:
                levels = tuple(renamed if renamed is not None else levels)
                tasks.append(new_record(Task, (i, t.session, t.pc, levels, t.cancel, t.hung, t.unwind)))
        handlers = []
        for h in self.handlers:
            old = None if h.old is None else gmap[h.old]
            cg = None if h.cg is None else gmap[h.cg]
            target = tid(h.target)
            if type(h) is Handler and old == h.old and cg == h.cg and target == h.target:
                handlers.append(h)
            else:
                handlers.append(new_record(Handler, (h.mid, h.session, h.pc, old, cg, target, h.hung)))
        set_guards = self._set_guards
        if type(set_guards) is not frozenset or any(gmap.get(x) != x for x in set_guards):
            set_guards = frozenset([gmap[x] for x in set_guards if x in gmap])
        return self._state(sessions, tasks, handlers, set_guards)


def _thaw(t: Task) -> TaskW:
    return TaskW(t.tid, t.session, t.pc, list(t.levels), t.cancel, t.hung, t.unwind)
