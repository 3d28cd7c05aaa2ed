"""Refinement: every step of the running adapter must be a step of the model.

After each step of the controlled loop the running adapter is *observed*: its
guards (by identity), owners, pending slot, the runner's record R[k], where
each background task and each awaiting handler is suspended, which message
the runner was given and which reply went out (from the fakes' ledger).  The
observation is written as a model `State` in the model's own canonical form
(`World.freeze()` renames guards and tasks by first appearance), with the
fields no one outside the model can see set to fixed values: how a message
ended when it was not answered, why a task unwinds, what a level has popped.
`project()` puts a model state in the same form.

The check keeps the *set* of model states consistent with everything observed
so far.  After a loop step the new set is every successor (or the state
itself: a stutter, for loop steps the model does not see, such as a typing
indicator's own steps) whose projection equals the observation.  An empty set
is a mismatch, reported with the loop step, the model transitions that were
possible, and the fields in which the closest of them differed.

Properties are judged on the candidates: an invariant is violated when every
candidate state violates it, a step invariant when every matching transition
does.  Since all candidates agree on everything observed, a property of
observed fields is judged on the implementation itself.

Both the successor lists and the set-to-set transitions are memoised per
design and bounds: explorations run the same scenario thousands of times,
and the same model states come back every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sessionguard.model import Bounds, Design
from sessionguard.model.checker import unsettled
from sessionguard.model.properties import INVARIANTS, STEP_INVARIANTS
from sessionguard.model.vocabulary import (
    ANSWERED,
    DEAD,
    REAP,
    SENT,
    Handler,
    Level,
    Message,
    Session,
    State,
    Step,
    Task,
)
from sessionguard.model.world import World

if TYPE_CHECKING:
    from .harness import Rig



# --- the common form of observations and model states --------------------------------


def project(state: State, design: Design) -> State:
    """A model state as the implementation can be observed: unobservable fields normalised."""
    return State(
        state.sessions,
        tuple(
            Task(
                t.tid,
                t.session,
                t.pc,
                tuple(Level(lv.event, lv.guard) for lv in t.levels),
                "pending" if t.cancel is not None else None,
                t.hung,
            )
            for t in state.tasks
        ),
        tuple(h._replace(hung=h.hung and h.pc not in design.bounded_awaits) for h in state.handlers),
        tuple(
            Message(
                m.kind,
                m.session,
                m.runs,
                ANSWERED if m.fate == ANSWERED else None,
                SENT if m.reply == SENT else None,
            )
            for m in state.messages
        ),
        state.set_guards,
        0,
        state.stopped,
        0,
    )


def observe(rig: Rig, cancel_pending: set[asyncio.Task[None]]) -> State:
    """The running adapter, written as a (projected) model state."""
    adapter, ledger = rig.adapter, rig.ledger
    reference = adapter.design == "reference"
    live = [
        j
        for j in adapter.jobs
        if j.task is not None and (not j.task.done() or (reference and not j.finished))
    ]
    tids = {j.task: i for i, j in enumerate(live)}
    tokens: dict[asyncio.Event, int] = {}

    def tok(guard: asyncio.Event | None) -> int | None:
        if guard is None:
            return None
        return tokens.setdefault(guard, len(tokens))

    def tid(task: asyncio.Task[None] | None) -> int | None:
        if task is None:
            return None
        return tids.get(task, DEAD)

    ids = ledger.ids
    sessions = []
    for k in range(rig.sessions):
        p = adapter.pending.get(k)
        runner_task = rig.runner.active.get(k)
        sessions.append(
            Session(
                tok(adapter.guards.get(k)),
                tid(adapter.owners.get(k)),
                None if p is None else tuple(ids[m] for m in p.messages),
                tids.get(runner_task) if runner_task is not None else None,  # type: ignore[arg-type]
                ledger.last_run.get(k, -1),
            )
        )
    tasks = []
    for i, j in enumerate(live):
        assert j.task is not None
        done = j.task.done()
        tasks.append(
            Task(
                i,
                j.key,
                REAP if done else j.pc,
                tuple(Level(tuple(ids[m] for m in lv.event.messages), tok(lv.guard)) for lv in j.levels),
                "pending" if (not done and j.task in cancel_pending) else None,
                j.task in ledger.hanging,
            )
        )
    bounded = rig.design.bounded_awaits
    handlers = [
        Handler(
            ids[h.message],
            h.message.key,
            h.pc,
            tok(h.old),
            tok(h.cg),
            tid(h.target),
            h.task in ledger.hanging and h.pc not in bounded,
        )
        for h in adapter.handlings.values()
    ]
    messages = tuple(
        Message(
            m.kind,
            m.key,
            ledger.runs.get(m, 0),
            ANSWERED if m in ledger.answered else None,
            SENT if m in ledger.sent else None,
        )
        for m in ledger.accepted
    )
    set_guards = frozenset(t for g, t in tokens.items() if g.is_set())
    raw = State(tuple(sessions), tuple(tasks), tuple(handlers), messages, set_guards, 0, adapter.stopped, 0)
    return World(raw).freeze()


# --- differences, for a mismatch report -------------------------------------------------


def differences(model: State, impl: State) -> list[str]:
    """The observed fields in which a model state and the implementation differ."""
    out: list[str] = []
    names = ("guard", "owner", "pending", "runner", "last_run")
    for k, (a, b) in enumerate(zip(model.sessions, impl.sessions, strict=False)):
        for name, x, y in zip(names, a, b, strict=True):
            if x != y:
                out.append(f"session k{k} {name}: model {x!r}, implementation {y!r}")
    if len(model.tasks) != len(impl.tasks):
        out.append(
            f"tasks: model has {len(model.tasks)} ({_tasks(model)}), "
            f"implementation {len(impl.tasks)} ({_tasks(impl)})"
        )
    else:
        for ta, tb in zip(model.tasks, impl.tasks, strict=True):
            if ta != tb:
                out.append(f"task T{ta.tid}: model {_task(ta)}, implementation {_task(tb)}")
    if model.handlers != impl.handlers:
        out.append(f"handlers: model {list(model.handlers)}, implementation {list(impl.handlers)}")
    for m, (ma, mb) in enumerate(zip(model.messages, impl.messages, strict=False)):
        if ma != mb:
            out.append(f"message m{m}: model {_msg(ma)}, implementation {_msg(mb)}")
    if len(model.messages) != len(impl.messages):
        out.append(f"messages: model has {len(model.messages)}, implementation {len(impl.messages)}")
    if model.set_guards != impl.set_guards:
        out.append(f"set guards: model {sorted(model.set_guards)}, implementation {sorted(impl.set_guards)}")
    if model.stopped != impl.stopped:
        out.append(f"stopped: model {model.stopped}, implementation {impl.stopped}")
    return out


def _task(t: Task) -> str:
    levels = "/".join(f"{list(lv.event)}g{lv.guard}" for lv in t.levels)
    extra = (" cancel-pending" if t.cancel else "") + (" hung" if t.hung else "")
    return f"k{t.session} at {t.pc} on {levels}{extra}"


def _tasks(s: State) -> str:
    return "; ".join(_task(t) for t in s.tasks) or "none"


def _msg(m: Message) -> str:
    return f"{m.kind} k{m.session} runs={m.runs} fate={m.fate} reply={m.reply}"


# --- the memoised model side ----------------------------------------------------------


@dataclass
class Transition:
    """Where one observation leads from one set of candidate states."""

    target: int  # the new set's index, -1 for a mismatch
    edges: list[tuple[State, Step | None, State]]
    step_violations: dict[str, str]


class ModelIndex:
    """The model's side of refinement for one design and bounds, memoised across runs."""

    #: Above this many cached model states the caches are dropped (memory stays bounded
    #: on long random campaigns, where new states keep coming).
    max_cached_states = 50_000

    def __init__(self, design: Design, bounds: Bounds) -> None:
        self.design = design
        self.bounds = bounds
        self.generation = 0
        self._reset()

    def _reset(self) -> None:
        self._succ: dict[State, list[tuple[Step, State, State]]] = {}
        self._views: dict[State, State] = {}
        self._set_index: dict[frozenset[State], int] = {}
        self.sets: list[frozenset[State]] = []
        self._trans: dict[tuple[int, State], Transition] = {}
        self._state_bad: dict[int, dict[str, str]] = {}

    def view(self, state: State) -> State:
        v = self._views.get(state)
        if v is None:
            v = self._views[state] = project(state, self.design)
        return v

    def maybe_trim(self) -> None:
        """Drop every cache when it grows too big (runs re-intern their current set)."""
        if len(self._succ) > self.max_cached_states:
            self._reset()
            self.generation += 1

    def successors(self, state: State) -> list[tuple[Step, State, State]]:
        out = self._succ.get(state)
        if out is None:
            out = [(st, t, self.view(t)) for st, t in self.design.successors(state, self.bounds)]
            self._succ[state] = out
        return out

    def intern(self, states: Iterable[State]) -> int:
        key = frozenset(states)
        i = self._set_index.get(key)
        if i is None:
            i = self._set_index[key] = len(self.sets)
            self.sets.append(key)
        return i

    def initial(self) -> int:
        return self.intern([self.design.initial(self.bounds)])

    def advance(self, sid: int, obs: State) -> Transition:
        key = (sid, obs)
        tr = self._trans.get(key)
        if tr is not None:
            return tr
        edges: list[tuple[State, Step | None, State]] = []
        new: dict[State, None] = {}
        for s in self.sets[sid]:
            if self.view(s) == obs:
                edges.append((s, None, s))
                new[s] = None
            for step, t, v in self.successors(s):
                if v == obs:
                    edges.append((s, step, t))
                    new[t] = None
        step_violations: dict[str, str] = {}
        if edges:
            for p in STEP_INVARIANTS:
                whys = []
                for before, taken, after in edges:
                    why = None if taken is None else p.check(before, taken, after)
                    if why is None:
                        break
                    whys.append(why)
                else:
                    step_violations[p.name] = whys[0]
        tr = Transition(self.intern(new) if new else -1, edges, step_violations)
        self._trans[key] = tr
        return tr

    def state_violations(self, sid: int) -> dict[str, str]:
        """Invariants that every candidate state of the set violates."""
        bad = self._state_bad.get(sid)
        if bad is None:
            bad = {}
            states = self.sets[sid]
            for p in INVARIANTS:
                whys = [p.check(s) for s in states]
                if all(w is not None for w in whys):
                    bad[p.name] = whys[0] or ""
            self._state_bad[sid] = bad
        return bad

    def possible(self, sid: int) -> list[str]:
        """Every transition the model offered from the set, in words."""
        out = []
        for s in self.sets[sid]:
            for step, _t, _v in self.successors(s):
                fault = f" [fault: {step.fault}]" if step.fault else ""
                out.append(f"{step}{fault}")
        return sorted(set(out))


_INDEXES: dict[tuple[str, Bounds], ModelIndex] = {}


def model_index(design: Design, bounds: Bounds) -> ModelIndex:
    key = (design.name, bounds)
    index = _INDEXES.get(key)
    if index is None or index.design is not design:
        index = _INDEXES[key] = ModelIndex(design, bounds)
    return index


# --- findings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A property the running adapter violated, where, and the condition that failed."""

    prop: str
    step: int
    label: str
    why: str

    def __str__(self) -> str:
        return f"{self.prop} at loop step {self.step} ({self.label}): {self.why}"


class RefinementMismatch(Exception):
    """A loop step that is neither a model transition nor a stutter."""

    def __init__(self, step: int, label: str, possible: list[str], diffs: list[str], observed: State) -> None:
        self.step = step
        self.label = label
        self.possible = possible
        self.diffs = diffs
        self.observed = observed
        lines = [
            f"refinement mismatch at loop step {step} ({label}): no model transition "
            f"(nor a stutter) leads to what the implementation did",
            "  closest model state differs in:",
            *(f"    {x}" for x in diffs),
            "  model transitions that were possible:",
            *(f"    {x}" for x in possible[:40]),
        ]
        super().__init__("\n".join(lines))


@dataclass
class Refinement:
    """The observer: call it after every loop step with (step, label)."""

    rig: Rig
    index: ModelIndex
    current: int = -1
    findings: dict[str, Finding] = field(default_factory=dict)
    steps_checked: int = 0
    _delivered: dict[asyncio.Task[None], int] = field(default_factory=dict)
    _labels: dict[asyncio.Task[None], str] = field(default_factory=dict)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    #: When a list: (loop step, label, the model rules it matched) for every step.
    trace: list[tuple[int, str, list[str]]] | None = None
    _last: State | None = None
    _set: frozenset[State] = frozenset()
    _generation: int = 0

    def __post_init__(self) -> None:
        self.index.maybe_trim()
        self.current = self.index.initial()
        self._set = self.index.sets[self.current]
        self._generation = self.index.generation

    def __sessionguard_state__(self) -> tuple[object, ...]:
        """What can change a later verdict (for stateful search, loop/stateful.py).

        Not the shared model index (a cache), the trace (a report), the step
        count (a statistic), the cancellations seen by finished tasks, nor when
        each property was first found: which properties were found is enough
        for a verdict.
        """
        # Cancellations delivered to finished tasks are never looked at again.
        # The order the tasks entered the dict is history: a set of pairs.
        delivered = frozenset((task, n) for task, n in self._delivered.items() if not task.done())
        return (self._set, self._last, frozenset(self.findings), delivered, self._pending)

    def _track_cancels(self, label: str) -> None:
        """A cancellation is pending from the step that requests it until the task's next step."""
        loop = asyncio.get_running_loop()
        for job in self.rig.adapter.jobs:
            task = job.task
            if task is None or task.done():
                self._pending.discard(task)  # type: ignore[arg-type]
                continue
            name = self._labels.get(task)
            if name is None:
                name = self._labels[task] = loop.task_label(task)  # type: ignore[attr-defined]
            count = task.cancelling()
            if name == label:
                self._delivered[task] = count
                self._pending.discard(task)
            elif count > self._delivered.get(task, 0):
                self._pending.add(task)

    def __call__(self, step: int, label: str) -> None:
        self._track_cancels(label)
        obs = observe(self.rig, self._pending)
        self.steps_checked += 1
        if obs == self._last:
            # Nothing observable changed: a stutter (a typing indicator's step,
            # an asyncio callback).  The model is not consulted: every model
            # step changes something observable, so none can hide in here.
            if self.trace is not None:
                self.trace.append((step, label, []))
            return
        self._last = obs
        index = self.index
        if index.generation != self._generation:
            self.current = index.intern(self._set)
            self._generation = index.generation
        tr = index.advance(self.current, obs)
        if tr.target < 0:
            raise self.mismatch(step, label, obs)
        self.current = tr.target
        self._set = index.sets[tr.target]
        if self.trace is not None:
            rules = sorted({f"{st}" + (f" [fault: {st.fault}]" if st.fault else "") for _, st, _ in tr.edges if st is not None})
            stutter = any(st is None for _, st, _ in tr.edges)
            self.trace.append((step, label, [] if stutter and not rules else rules))
        for name, why in tr.step_violations.items():
            self.findings.setdefault(name, Finding(name, step, label, why))
        for name, why in self.index.state_violations(tr.target).items():
            self.findings.setdefault(name, Finding(name, step, label, why))

    def mismatch(self, step: int, label: str, obs: State) -> RefinementMismatch:
        best: list[str] | None = None
        for s in self.index.sets[self.current]:
            for cand in [self.index.view(s)] + [v for _, _, v in self.index.successors(s)]:
                diffs = differences(cand, obs)
                if best is None or len(diffs) < len(best):
                    best = diffs
        return RefinementMismatch(step, label, self.index.possible(self.current), best or [], obs)

    def allow_recovery(self, stops: int) -> None:
        """The user may send `stops` more /stop messages beyond the bound (SPEC 9, 10)."""
        states = [s._replace(extra=s.extra + stops) for s in self._set]
        self.current = self.index.intern(states)
        self._set = self.index.sets[self.current]
        self._generation = self.index.generation
        self._last = None

    def settle(self, step: int) -> None:
        """At the end of a run (the loop is quiet): can the session still settle? (SPEC 9)"""
        whys = [unsettled(self.index.design, s, True) for s in self.index.sets[self.current]]
        if whys and all(w is not None for w in whys):
            self.findings.setdefault(
                "no-trapped-session", Finding("no-trapped-session", step, "end of run", whys[0] or "")
            )

    def candidates(self) -> frozenset[State]:
        return self.index.sets[self.current]
