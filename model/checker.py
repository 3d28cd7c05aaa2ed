"""The explicit-state checker: breadth-first search over a design's states.

Breadth-first order makes every counterexample the shortest one: the first
time a property fails, no shorter path to a failing state or step exists.
The search keeps one parent per state, so a counterexample is rebuilt by
walking parents back and then replaying the steps forward through the rules,
which also proves that it is a real path.

Liveness (SPEC 9) is checked on the whole reachable graph: a state is
*settled* when nothing is left to do but wait for new input and every session
is open (a new message would be processed); every reachable state must still
be able to reach a settled one by internal steps alone (no new fault, no new
message).  A state that cannot, and in which some call hangs, gets the user's
way out: one recovery /stop per session, then internal steps again.

Every knob is one field of `CheckerConfig`.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .design import Design
from .properties import (
    PROPERTIES,
    Invariant,
    Liveness,
    Property,
    StepInvariant,
    holders,
    hung_sessions,
)
from .reduction import ample
from .symmetry import canonical, forget_history
from .vocabulary import TEXT, Bounds, Message, State, Step, Trace
from .world import World

HOLDS = "holds"
VIOLATED = "violated"
INCOMPLETE = "incomplete"


@dataclass(kw_only=True)
class CheckerConfig:
    """How the checker searches.

    max_states: stop with an "incomplete" verdict after this many states.
    max_seconds: stop with an "incomplete" verdict after this much time.
    symmetry: merge states that differ only by a renaming of session keys.
    merge_history: merge states that differ only in how finished messages
        ended (see `symmetry.forget_history`).
    by_rule: also keep the shortest counterexample for each rule whose step
        first broke a property (an easy bug then never hides a subtle one).
    por: partial-order reduction (see `reduction.py`): the same verdicts from
        fewer states, but a counterexample may be a step or two longer than
        the shortest one, so it is off by default.
    properties: the properties to check (all when None).
    progress: called about once a second with the statistics so far.
    """

    max_states: int = 5_000_000
    max_seconds: float = 600.0
    symmetry: bool = True
    merge_history: bool = True
    by_rule: bool = False
    por: bool = False
    properties: tuple[Property, ...] | None = None
    progress: Callable[[Stats], None] | None = None


@dataclass
class Stats:
    states: int = 0
    transitions: int = 0
    depth: int = 0
    seconds: float = 0.0

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Verdict:
    prop: Property
    status: str
    condition: str | None = None
    trace: Trace | None = None
    by_rule: dict[str, Trace] = field(default_factory=dict)
    known: str | None = None  # the design declares this violation, with the reason


@dataclass
class Report:
    design: str
    bounds: Bounds
    verdicts: list[Verdict]
    stats: Stats
    complete: bool
    stopped_by: str | None = None  # "states" or "seconds" when the search was cut short

    @property
    def undeclared(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == VIOLATED and v.known is None]


# An edge that broke a property: (source index, target index, the step's rule).
_Edge = tuple[int, int, str]


class _Graph:
    """The states found so far, each with one BFS parent."""

    def __init__(self, canon: Callable[[State], State]) -> None:
        self.canon = canon
        self.index: dict[State, int] = {}
        self.states: list[State] = []
        self.parent: list[int] = []
        self.depth: list[int] = []

    def add(self, state: State, parent: int) -> tuple[int, bool]:
        n = len(self.states)
        # One hash of the state, found or not (a state's hash walks all of it).
        i = self.index.setdefault(state, n)
        if i != n:
            return i, False
        self.states.append(state)
        self.parent.append(parent)
        self.depth.append(self.depth[parent] + 1 if parent >= 0 else 0)
        return i, True

    def path(self, i: int) -> list[int]:
        out = []
        while i >= 0:
            out.append(i)
            i = self.parent[i]
        return out[::-1]


def is_internal(step: Step) -> bool:
    """A step the system takes on its own: no new fault, no new inbound message."""
    return step.fault is None and step.message is None


def has_hang(state: State, bounded: frozenset[str] = frozenset()) -> bool:
    """Does some call hang for good? (See `properties.hung_sessions`.)"""
    return bool(hung_sessions(state, bounded))


def recovery_start(state: State, bounded: frozenset[str] = frozenset()) -> State:
    """The state with the user's way out: one /stop for each session with a hung call."""
    return state._replace(extra=len(hung_sessions(state, bounded)))


def session_open(design: Design, state: State, k: int) -> bool:
    """Would a new text message for session k be processed (not queued as busy)?"""
    w = World(state)
    m = len(w.messages)
    w.messages.append(Message(TEXT, k))
    design.inbound(w, k, m)
    return m not in (w.sessions[k].pending or ())


def unsettled(design: Design, state: State, quiescent: bool) -> str | None:
    """None if the state is settled; otherwise what is still wrong in it."""
    if not quiescent:
        return "work is still in progress"
    why = stranded_work(state)
    if why is not None:
        return why
    if not state.stopped:
        for k in range(len(state.sessions)):
            if not session_open(design, state, k):
                return f"session k{k} stays busy: every new message would be answered as busy"
    return None


def stranded_work(state: State) -> str | None:
    """In a quiet state: a follow-up nothing will run, or a message that never reached a fate."""
    held_by_hung: set[int] = set()
    for t in state.tasks:
        if t.hung:
            for lv in t.levels:
                held_by_hung.update(lv.event)
    for h in state.handlers:
        if h.hung:
            held_by_hung.add(h.mid)
    for k, s in enumerate(state.sessions):
        if s.pending:
            names = ", ".join(f"m{m}" for m in s.pending)
            return f"P[k{k}] still holds {names} and nothing will ever run them"
    for m, msg in enumerate(state.messages):
        if msg.fate is None and m not in held_by_hung:
            return f"m{m} ({msg.kind}) never reached a fate"
    return None


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector, and restore it as it was.

    A search allocates millions of records but never a reference cycle (they
    are tuples that refer to older tuples), so reference counting frees all
    it drops and the cycle collector finds nothing.  Yet each of its full
    passes walks every state stored so far, so the larger the search, the
    more it costs: paused, `seed` at 4 messages (text, /stop) takes about a
    third less time (docs/spin.md).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check(design: Design, bounds: Bounds, config: CheckerConfig | None = None) -> Report:
    """Explore every state of `design` within `bounds`; judge every property."""
    with _no_cycle_collection():
        return _check(design, bounds, config or CheckerConfig())


def _check(design: Design, bounds: Bounds, config: CheckerConfig) -> Report:
    props = config.properties or PROPERTIES
    invariants = [p for p in props if isinstance(p, Invariant)]
    step_invariants = [p for p in props if isinstance(p, StepInvariant)]
    liveness = [p for p in props if isinstance(p, Liveness)]
    canon = _canonicalizer(config, bounds)

    graph = _Graph(canon)
    stats = Stats()
    started = time.perf_counter()
    last_progress = started
    first: dict[str, _Edge] = {}  # property -> the first edge that broke it
    per_rule: dict[tuple[str, str], _Edge] = {}
    bad_state: list[frozenset[str]] = []  # invariants failing in each state
    rev: list[list[int]] = []  # internal edges, reversed (for liveness)
    quiescent: list[bool] = []
    # The properties still to judge.  A property's verdict is its first broken
    # edge in BFS order (the shortest counterexample): once it has one, judging
    # it in later states and steps cannot change anything, so it leaves these
    # lists, unless `by_rule` asks for one counterexample per rule.
    open_invariants = list(invariants)
    open_step_invariants = list(step_invariants)
    no_invariant_broken: frozenset[str] = frozenset()

    def judge_state(s: State) -> None:
        bad = [p.name for p in open_invariants if p.check(s) is not None]
        bad_state.append(frozenset(bad) if bad else no_invariant_broken)
        rev.append([])
        quiescent.append(True)

    def broke(name: str, edge: _Edge, step: Step) -> None:
        first.setdefault(name, edge)
        if config.by_rule:
            per_rule.setdefault((name, _rule_group(step)), edge)

    init = canon(design.initial(bounds))
    graph.add(init, -1)
    judge_state(init)
    for p in invariants:
        if p.name in bad_state[0]:
            first[p.name] = (-1, 0, "initial")

    # Breadth-first: states are expanded in the order they were found, which is
    # their index, so the queue is the range of indexes not yet expanded.
    i = -1
    pruned_at = 0  # how many properties were decided when the open lists were last pruned
    stopped_by: str | None = None
    while i + 1 < len(graph.states):
        i += 1
        s = graph.states[i]
        successors = design.successors(s, bounds)
        if config.por:
            successors = ample(s, bounds, successors)
        stats.transitions += len(successors)
        bad_i = bad_state[i]
        for step, nxt in successors:
            c = canon(nxt)
            j, new = graph.add(c, i)
            if new:
                judge_state(c)
            if step.fault is None and step.message is None:  # is_internal(step), inlined
                quiescent[i] = False
                rev[j].append(i)
            bad_j = bad_state[j]
            # Most states break no invariant: skip building an empty difference.
            if bad_j:
                for name in bad_j - bad_i:
                    broke(name, (i, j, step.rule), step)
            for sp in open_step_invariants:
                if sp.check(s, step, nxt) is not None:
                    broke(sp.name, (i, j, step.rule), step)
        if len(first) > pruned_at and not config.by_rule:
            pruned_at = len(first)
            open_invariants = [p for p in open_invariants if p.name not in first]
            open_step_invariants = [p for p in open_step_invariants if p.name not in first]
        stats.states = len(graph.states)
        now = time.perf_counter()
        if now - last_progress >= 1.0:
            last_progress = now
            stats.depth = graph.depth[i]
            stats.seconds = now - started
            if config.progress:
                config.progress(stats)
            if stats.seconds > config.max_seconds:
                stopped_by = "seconds"
                break
        if stats.states >= config.max_states:
            stopped_by = "states"
            break

    stats.states = len(graph.states)
    stats.depth = max(graph.depth)
    complete = stopped_by is None

    live_failure: int | None = None
    if liveness and complete:
        live_failure = _check_liveness(design, bounds, graph, rev, quiescent)
        if live_failure is None and time.perf_counter() - started > config.max_seconds:
            complete, stopped_by = False, "seconds"
    stats.seconds = time.perf_counter() - started

    verdicts = []
    prop: Property
    for prop in props:
        v = Verdict(prop, HOLDS, known=None)
        if prop.name in first:
            v.status = VIOLATED
            v.trace, v.condition = _counterexample(design, bounds, graph, prop, first[prop.name])
            for (name, _group), edge in sorted(per_rule.items()):
                if name == prop.name:
                    trace, _ = _counterexample(design, bounds, graph, prop, edge)
                    v.by_rule.setdefault(edge[2], trace)
        elif isinstance(prop, Liveness) and live_failure is not None:
            v.status = VIOLATED
            v.trace = _trace_to(design, bounds, graph, live_failure)
            tail, why = _why_stuck(design, bounds, v.trace.states[-1])
            for step, st in tail:
                v.trace.steps.append(step)
                v.trace.states.append(st)
            v.condition = why
        elif not complete:
            v.status = INCOMPLETE
        if v.status == VIOLATED:
            v.known = design.known.get(prop.name)
        verdicts.append(v)
    return Report(design.name, bounds, verdicts, stats, complete, stopped_by)


def _canonicalizer(config: CheckerConfig, bounds: Bounds) -> Callable[[State], State]:
    # With one session there is no renaming to undo: symmetry is the identity then.
    symmetry = config.symmetry and bounds.sessions > 1
    if symmetry and config.merge_history:
        return canonical
    if symmetry:
        return lambda s: canonical(s, merge_history=False)
    if config.merge_history:
        return forget_history
    return lambda s: s


def _rule_group(step: Step) -> str:
    """The rule a counterexample is grouped by: its name up to the first detail."""
    return step.rule.split(" (")[0].split(",")[0]


# --- liveness ---------------------------------------------------------------------------


def _check_liveness(
    design: Design,
    bounds: Bounds,
    graph: _Graph,
    rev: list[list[int]],
    quiescent: list[bool],
) -> int | None:
    """The first (shallowest) state from which no settled state can be reached."""
    n = len(graph.states)
    good = [False] * n
    todo = deque(
        i for i in range(n) if unsettled(design, graph.states[i], quiescent[i]) is None
    )
    for i in todo:
        good[i] = True
    while todo:
        j = todo.popleft()
        for i in rev[j]:
            if not good[i]:
                good[i] = True
                todo.append(i)
    bad = [i for i in range(n) if not good[i]]
    if not bad:
        return None
    bounded = design.bounded_awaits
    stuck: set[State] | None = None
    for i in sorted(bad, key=lambda i: graph.depth[i]):
        s = graph.states[i]
        if not has_hang(s, bounded):
            return i
        if stuck is None:
            # Hung states get the user's recovery: one /stop per session, explored
            # in one graph for all of them, since their futures overlap.  That
            # search is the costly part, so it runs only when a hung state is the
            # shallowest candidate left.
            hung = [graph.states[j] for j in bad if has_hang(graph.states[j], bounded)]
            recovery = _Recovery(design, bounds, len(graph.states[0].sessions), graph.canon)
            stuck = recovery.stuck_all(hung)
        if s in stuck:
            return i
    return None


def _why_stuck(design: Design, bounds: Bounds, state: State) -> tuple[list[tuple[Step, State]], str]:
    """How a stuck state ends up, told as the steps that follow it."""
    if has_hang(state, design.bounded_awaits):
        found = _Recovery(design, bounds, len(state.sessions)).stuck(state)
        if found is not None:
            return found
    return _witness(design, bounds, state)


def _witness(design: Design, bounds: Bounds, state: State) -> tuple[list[tuple[Step, State]], str]:
    """Internal steps from `state` to the nearest quiescent state, and what is wrong there."""
    parent: dict[State, tuple[State, Step] | None] = {state: None}
    todo = deque([state])
    while todo:
        s = todo.popleft()
        nxt = [(st, t) for st, t in design.successors(s, bounds, faults=False) if is_internal(st)]
        if not nxt:
            why = unsettled(design, s, True) or "it cannot settle"
            tail: list[tuple[Step, State]] = []
            cur: State = s
            while (link := parent[cur]) is not None:
                prev, step = link
                tail.append((step, cur))
                cur = prev
            return tail[::-1], "no continuation without new faults or messages settles: " + why
        for st, t in nxt:
            if t not in parent:
                parent[t] = (s, st)
                todo.append(t)
    return [], "it cannot settle"


class _Recovery:
    """Explores hung states after the user sends /stop: can they settle then?"""

    def __init__(
        self,
        design: Design,
        bounds: Bounds,
        sessions: int,
        canon: Callable[[State], State] = lambda s: s,
    ) -> None:
        self.design, self.bounds, self.sessions, self.canon = design, bounds, sessions, canon

    def _explore(
        self, starts: list[State]
    ) -> tuple[dict[State, tuple[State, Step] | None], list[State], dict[State, list[State]], set[State]]:
        parent: dict[State, tuple[State, Step] | None] = {s: None for s in starts}
        order = list(parent)
        edges: dict[State, list[State]] = {}
        settled: set[State] = set()
        todo = deque(order)
        while todo:
            s = todo.popleft()
            succ = self.design.successors(s, self.bounds, faults=False)
            succ = [(st, self.canon(t)) for st, t in succ]
            edges[s] = [t for _, t in succ]
            if unsettled(self.design, s, not any(is_internal(st) for st, _ in succ)) is None:
                settled.add(s)
            for st, t in succ:
                if t not in parent:
                    parent[t] = (s, st)
                    order.append(t)
                    todo.append(t)
        return parent, order, edges, settled

    def stuck_all(self, states: list[State]) -> set[State]:
        """The given states from which even the recovery /stops cannot settle."""
        bounded = self.design.bounded_awaits
        starts = {s: self.canon(recovery_start(s, bounded)) for s in states}
        _, order, edges, settled = self._explore(list(set(starts.values())))
        good = _can_reach(order, edges, settled)
        return {s for s, r in starts.items() if r not in good}

    def stuck(self, state: State) -> tuple[list[tuple[Step, State]], str] | None:
        """If `state` cannot settle even after the recovery: how it ends up."""
        start = recovery_start(state, self.design.bounded_awaits)
        parent, order, edges, settled = self._explore([start])
        if start in _can_reach(order, edges, settled):
            return None
        end = next((s for s in order if not edges[s]), order[-1])
        tail: list[tuple[Step, State]] = []
        cur = end
        while (link := parent[cur]) is not None:
            prev, step = link
            tail.append((step, cur))
            cur = prev
        why = unsettled(self.design, end, True) or "it cannot settle"
        return tail[::-1], "even after the user's /stop, the session cannot settle: " + why


def _can_reach(
    order: list[State], edges: dict[State, list[State]], targets: set[State]
) -> set[State]:
    """The states (of `order`) from which some state of `targets` is reachable."""
    rev: dict[State, list[State]] = {}
    for s in order:
        for t in edges[s]:
            rev.setdefault(t, []).append(s)
    good = set(targets)
    todo = deque(good)
    while todo:
        t = todo.popleft()
        for s in rev.get(t, ()):
            if s not in good:
                good.add(s)
                todo.append(s)
    return good


# --- counterexamples -------------------------------------------------------------------


def _trace_to(design: Design, bounds: Bounds, graph: _Graph, target: int) -> Trace:
    """Replay the BFS path to `target` through the rules, as concrete steps."""
    path = graph.path(target)
    concrete = design.initial(bounds)
    trace = Trace(states=[concrete], steps=[])
    for a, b in zip(path, path[1:], strict=False):
        want = graph.states[b]
        for step, nxt in design.successors(concrete, bounds):
            if graph.canon(nxt) == want:
                trace.steps.append(step)
                trace.states.append(nxt)
                concrete = nxt
                break
        else:  # pragma: no cover - would mean the rules are not deterministic
            raise AssertionError(f"cannot replay the path at state {a}")
    return trace


def _counterexample(
    design: Design, bounds: Bounds, graph: _Graph, prop: Property, edge: _Edge
) -> tuple[Trace, str]:
    i, j, _ = edge
    if i < 0:
        return Trace(states=[graph.states[j]]), _state_condition(prop, graph.states[j])
    trace = _trace_to(design, bounds, graph, i)
    before = trace.states[-1]
    for step, nxt in design.successors(before, bounds):
        if graph.canon(nxt) != graph.states[j]:
            continue
        if isinstance(prop, StepInvariant):
            why = prop.check(before, step, nxt)
        else:
            why = _state_condition(prop, nxt)
        if why is not None:
            trace.steps.append(step)
            trace.states.append(nxt)
            return trace, why
    raise AssertionError(f"cannot replay the violating step of {prop.name}")  # pragma: no cover


def _state_condition(prop: Property, state: State) -> str:
    assert isinstance(prop, Invariant)
    return prop.check(state) or ""


def replay(design: Design, bounds: Bounds, steps: Iterable[Step]) -> list[State]:
    """Follow recorded steps through the rules; raises if one is not enabled."""
    state = design.initial(bounds)
    out = [state]
    for want in steps:
        for step, nxt in design.successors(state, bounds):
            if (step.actor, step.rule, step.detail, step.fault) == (
                want.actor,
                want.rule,
                want.detail,
                want.fault,
            ):
                state = nxt
                out.append(state)
                break
        else:
            raise ValueError(f"step not enabled: {want}")
    return out


__all__ = [
    "CheckerConfig",
    "Report",
    "Stats",
    "Verdict",
    "check",
    "replay",
    "holders",
    "HOLDS",
    "VIOLATED",
    "INCOMPLETE",
]
