"""The abstract transition relation of the three designs, written once for two backends.

The model (`sessionguard.model`) describes a session with Python objects whose
number grows with the input: one `Message` per message, a tuple per pending
slot, a guard token per `Event`.  z3 needs a fixed vocabulary, so this module
describes ONE session by a fixed set of named fields (see `FIELDS`):

* integers for everything that grows without bound: message ids (`nmsg` is
  the next one), guard identities (`ng` is the next fresh token, 0 is "no
  guard"), the counter of faults, the number of commands in flight;
* a holder summary instead of a list of messages: the pending slot and each
  task's event are `(lo, hi)` id ranges (a merge appends the newest id, so a
  holder is always sorted), with the facts the properties read: whether it
  holds a control input, its fate (0 none, 1 all fated, 2 mixed), whether the
  runner already saw it, and `dmax`, the newest command that was in flight
  when one of its messages arrived (-1: none);
* two task slots (in creation order, as `World.freeze` numbers tasks), each
  with at most two levels of `process()`; finished `reference` tasks that only
  wait for their done-callback and no longer own anything are *inert* and
  are counted (`ninert`, `ninu` for those holding an unfated message);
* the commands in flight as the earliest one `A`, the latest one `Z` and
  counters for those in between (`mrun`, `maw0..2`); bypass handlers as
  counters (`nbr`, `nbs`, `nbh`) and one slot `bs` for a bypass /stop (prefix);
* sticky ghost facts for what the model can only see in its message list:
  `lost` (a message with no fate that nobody holds) and `twice`;
* step facts `v_*`, set by a transition that breaks a step property
  (release-by-owner, order, handoff, stop-works, dead-lock-heals).

The rules below are the model's rules (model/design.py, prefix.py, seed.py,
reference.py) rewritten against those fields.  A rule is ordinary Python that
branches with `branch(s, cond)`: on concrete values (ints, bools) it follows
the one branch that holds, so the rules run as a fast interpreter of the
abstract system; on z3 terms it follows both branches and records the path
condition, so the same code yields the symbolic transition relation (one
disjunct per path).  `tests/test_proofs_agreement.py` shows that, from every
state the explicit checker reaches at the default bound, these rules and the
model give the same successor states after abstraction (`abstraction.py`),
with z3 model enumeration confirming the symbolic relation on the same states.

Soundness of the abstraction.  Each field is a function of the model state
(`abstraction.alpha`).  The rules compute exactly the abstraction of the
model's successor whenever the state fits (at most two live tasks, two levels
per task, one bypass /stop, and, outside `reference`, two commands in flight);
a successor that does not fit is the single state `ovf`, which has no
successors and satisfies no property claim (the proofs show `ovf`
unreachable for `reference`).  The only place where an abstract transition
allows more than the concrete ones is a command in the middle of three or
more: its message id is not kept, so when it becomes the earliest command, or
cancels the owner, the rules let it have any id between `A` and `Z` and either
kind (`choice` variables).  More behaviours can only make a proof harder, never
wrong: every concrete run maps to an abstract run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import z3

from ..model.vocabulary import (
    APPROVE,
    FAULTS,
    KINDS,
    NEW,
    PHOTO,
    RESET,
    STOP,
    TEXT,
)

# --- codes ---------------------------------------------------------------------------

# task positions (0 = empty slot)
NOTASK, START, RUNNER, SEND_REPLY, INBAND, SEND_ERROR, TYPING, HOOKS, REAP = range(9)
PC_NAMES = ["-", "start", "P1:runner", "P2:send", "P3:cleanup", "E1:send-error", "F1:typing", "F1:hooks", "done:callback"]
# pending cancellation of a task
C_NONE, C_FAULT, C_SHUTDOWN, C_COMMAND = range(4)
# exception unwinding through a finally
U_NONE, U_CANCEL, U_ERROR = range(3)
# O[k] and a command's target: none, a finished task, task slot 0, task slot 1
O_NONE, O_DEAD, O_T0, O_T1 = range(4)
# command handler positions (0 = no command)
H_NONE, H_RUNNER, H_AWAIT, H_SEND = range(4)
# bypass /stop handler positions
B_NONE, B_RUNNER, B_SEND = range(3)
# level fates
F_NONE, F_ALL, F_MIXED = range(3)

SLOTS = (0, 1)
LEVELS = (0, 1)

ORDINARY_KINDS = frozenset({TEXT, PHOTO})
BYPASS_KINDS = frozenset({STOP, NEW, RESET, APPROVE})
RESET_LIKE_KINDS = frozenset({STOP, NEW, RESET})

Val = Any  # an int or bool, or a z3 term of that sort

# --- the fields ----------------------------------------------------------------------

_LEVEL_FIELDS = [
    ("lo", int), ("hi", int), ("ord", bool), ("fate", int), ("ran", bool), ("dmax", int),
    ("g", int), ("gs", bool), ("pop", bool), ("plo", int), ("phi", int), ("pdmax", int),
]
_TASK_FIELDS = [("pc", int), ("cancel", int), ("crel", int), ("hung", bool), ("unwind", int), ("nlev", int)]
_CMD_FIELDS = [
    ("pc", int), ("mid", int), ("old", int), ("olds", bool), ("cg", int), ("cgs", bool),
    ("tgt", int), ("hung", bool), ("kstop", bool),
]


def _fields() -> list[tuple[str, type]]:
    out: list[tuple[str, type]] = [
        ("ovf", bool), ("stop", bool), ("nmsg", int), ("nf", int), ("ng", int), ("lastrun", int),
        ("lost", bool), ("twice", bool),
        ("G", int), ("gset", bool), ("O", int),
        ("p", bool), ("plo", int), ("phi", int), ("pctl", bool), ("pdmax", int),
        ("ninert", int), ("ninu", int),
        ("nbr", int), ("nbs", int), ("nbh", int), ("bs_pc", int), ("bs_hung", bool), ("bs_mid", int),
        ("nc", int), ("mrun", int), ("maw0", int), ("maw1", int), ("maw2", int),
    ]
    for i in SLOTS:
        out += [(f"t{i}_{n}", t) for n, t in _TASK_FIELDS]
        for j in LEVELS:
            out += [(f"t{i}_l{j}_{n}", t) for n, t in _LEVEL_FIELDS]
    for c in ("A", "Z"):
        out += [(f"{c}_{n}", t) for n, t in _CMD_FIELDS]
    return out


FIELDS: list[tuple[str, type]] = _fields()
FIELD_TYPES: dict[str, type] = dict(FIELDS)
#: Step facts: set by a transition that breaks the step property of that name.
STEP_FLAGS = ("v_release", "v_order", "v_handoff", "v_stop", "v_heal")
STEP_PROPERTY = {
    "v_release": "release-by-owner",
    "v_order": "order",
    "v_handoff": "handoff",
    "v_stop": "stop-works",
    "v_heal": "dead-lock-heals",
}
#: Fields that hold guard tokens, with the field that says whether that token is set.
TOKEN_FIELDS: list[tuple[str, str]] = (
    [("G", "gset")]
    + [(f"t{i}_l{j}_g", f"t{i}_l{j}_gs") for i in SLOTS for j in LEVELS]
    + [(f"{c}_{n}", f"{c}_{n}s") for c in ("A", "Z") for n in ("old", "cg")]
)


def default_state() -> dict[str, Val]:
    """The abstraction of the initial state (and the zero of every absent object)."""
    s: dict[str, Val] = {n: (False if t is bool else 0) for n, t in FIELDS}
    s["lastrun"] = -1
    s["ng"] = 1
    s["pdmax"] = -1
    return s


def ovf_state() -> dict[str, Val]:
    s = default_state()
    s["ovf"] = True
    return s


# --- backend-neutral connectives -------------------------------------------------------


def _is_z3(*xs: Val) -> bool:
    return any(isinstance(x, z3.ExprRef) for x in xs)


def NOT(x: Val) -> Val:
    return z3.Not(x) if _is_z3(x) else not x


def AND(*xs: Val) -> Val:
    """Conjunction, partially evaluated: constant operands are folded away."""
    if any(x is False for x in xs if not isinstance(x, z3.ExprRef)):
        return False
    rest = [x for x in xs if isinstance(x, z3.ExprRef)]
    if not rest:
        return True
    return rest[0] if len(rest) == 1 else z3.And(*rest)


def OR(*xs: Val) -> Val:
    """Disjunction, partially evaluated: constant operands are folded away."""
    if any(x is True or (x is not False and not isinstance(x, z3.ExprRef) and bool(x)) for x in xs):
        return True
    rest = [x for x in xs if isinstance(x, z3.ExprRef)]
    if not rest:
        return False
    return rest[0] if len(rest) == 1 else z3.Or(*rest)


#: The sort of integer fields while symbolic rules are being built (Int or a BitVec).
INT_SORT: list[z3.SortRef] = []


def _lift(x: Val) -> Val:
    if isinstance(x, bool) or isinstance(x, z3.ExprRef) or not INT_SORT:
        return x
    sort = INT_SORT[-1]
    return z3.BitVecVal(x, sort.size()) if isinstance(sort, z3.BitVecSortRef) else z3.IntVal(x)


def _identical(a: Val, b: Val) -> bool:
    if isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef):
        return bool(a.eq(b))
    if isinstance(a, z3.ExprRef) or isinstance(b, z3.ExprRef):
        return False
    return type(a) is type(b) and a == b


def ITE(c: Val, a: Val, b: Val) -> Val:
    if _is_z3(c):
        if _identical(a, b):
            return a
        return z3.If(c, _lift(a), _lift(b))
    return a if c else b


def MAX(a: Val, b: Val) -> Val:
    return ITE(a >= b, a, b)


# --- a path through a rule --------------------------------------------------------------


@dataclass
class Sym:
    """One path through a rule: the values so far, the branch conditions, a label."""

    v: dict[str, Val]
    cond: list[Val] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    choices: list[z3.ExprRef] = field(default_factory=list)

    def __getitem__(self, name: str) -> Val:
        return self.v[name]

    def __setitem__(self, name: str, value: Val) -> None:
        assert name in self.v, name
        self.v[name] = value

    def copy(self) -> Sym:
        return Sym(dict(self.v), list(self.cond), list(self.label), list(self.choices))

    def say(self, text: str) -> None:
        self.label.append(text)

    def flag(self, name: str, value: Val) -> None:
        self.v[name] = OR(self.v[name], value)


class Nondeterministic(Exception):
    """A concrete evaluation reached a choice the abstraction leaves open."""


def branch(s: Sym, c: Val) -> list[tuple[Sym, bool]]:
    """Split a path on a condition: one branch on concrete values, two on z3 terms."""
    if not _is_z3(c):
        return [(s, bool(c))]
    t = s.copy()
    t.cond.append(c)
    f = s.copy()
    f.cond.append(z3.Not(c))
    return [(t, True), (f, False)]


def choice_int(s: Sym, name: str, low: Val, high: Val) -> Val:
    """A value the abstraction does not know, strictly between low and high."""
    if not _is_z3(s["nmsg"]):
        raise Nondeterministic(name)
    x = z3.FreshConst(s["nmsg"].sort(), name)
    s.choices.append(x)
    s.cond.append(z3.And(x > low, x < high))
    return x


def choice_bool(s: Sym, name: str) -> Val:
    if not _is_z3(s["nmsg"]):
        raise Nondeterministic(name)
    x = z3.FreshBool(name)
    s.choices.append(x)
    return x


Rule = Callable[[Sym], list[Sym]]


def fork(paths: Iterable[Sym], cond: Callable[[Sym], Val], then: Rule, other: Rule) -> list[Sym]:
    out: list[Sym] = []
    for s in paths:
        for t, b in branch(s, cond(s)):
            out += then(t) if b else other(t)
    return out


def keep(s: Sym) -> list[Sym]:
    return [s]


def cases(s: Sym, expr: Val, values: Iterable[int]) -> list[tuple[Sym, int]]:
    """One path per value `expr` may take (concrete: just its value)."""
    if not _is_z3(expr):
        return [(s, expr)] if expr in values else []
    out = []
    for v in values:
        t = s.copy()
        t.cond.append(expr == v)
        out.append((t, v))
    return out


def T(i: int, n: str) -> str:
    return f"t{i}_{n}"


def L(i: int, j: int, n: str) -> str:
    return f"t{i}_l{j}_{n}"


def H(c: str, n: str) -> str:
    return f"{c}_{n}"


_LEVEL_NAMES = [n for n, _ in _LEVEL_FIELDS]
_TASK_NAMES = [n for n, _ in _TASK_FIELDS]
_CMD_NAMES = [n for n, _ in _CMD_FIELDS]


def _zero(t: type) -> Val:
    return False if t is bool else 0


@dataclass(frozen=True)
class Env:
    """What the environment may do: None = unbounded (the proofs)."""

    messages: int | None = None
    faults: int | None = None
    kinds: tuple[str, ...] = KINDS
    fault_kinds: tuple[str, ...] = FAULTS
    #: Only the system's own steps: no arrival, no fault (the liveness question).
    internal: bool = False


#: Weakenings of `reference`, each a documented way to break one proof (tests, docs).
MUTATIONS: dict[str, str] = {
    "no-identity-check": "F2 releases or hands on the guard without checking it is still the task's own",
    "no-owner-wait": "C2 does not wait for the cancelled owner to end before the command completes",
    "queue-approve": "/approve is queued in the pending slot while the session is busy",
}


class Rules:
    """The abstract rules of one design (optionally weakened by one mutation)."""

    def __init__(self, design: str, env: Env | None = None, mutation: str | None = None) -> None:
        if design not in ("prefix", "seed", "reference"):
            raise ValueError(f"unknown design {design!r}")
        if mutation is not None and mutation not in MUTATIONS:
            raise ValueError(f"unknown mutation {mutation!r}; known: {', '.join(MUTATIONS)}")
        self.design = design
        self.env = env or Env()
        self.mutation = mutation
        self.ref = design == "reference"
        self.prefix = design == "prefix"
        self.swallows = frozenset() if self.ref else frozenset({INBAND, TYPING})
        self.levels = (0,) if self.ref else LEVELS

    # --- entry point ------------------------------------------------------------------

    def successors(self, pre: dict[str, Val]) -> list[Sym]:
        """Every path of every rule from `pre`, each ending in a normalized state."""
        s0 = Sym(dict(pre))
        for f in STEP_FLAGS:
            s0.v[f] = False
        s0.cond.append(NOT(pre["ovf"]))
        if s0.cond[-1] is False:
            return []
        out: list[Sym] = []
        out += self._arrivals(s0.copy())
        for i in SLOTS:
            out += self._task_steps(s0.copy(), i)
        out += self._inert_steps(s0.copy())
        out += self._handler_steps(s0.copy())
        out += self._environment(s0.copy())
        final: list[Sym] = []
        for s in out:
            final += self.normalize(s)
        return [s for s in final if all(c is not False for c in s.cond)]

    # --- small helpers -------------------------------------------------------------------

    def can_fault(self, s: Sym) -> Val:
        if self.env.internal:
            return False
        if self.env.faults is None:
            return NOT(s["stop"])
        return AND(NOT(s["stop"]), s["nf"] < self.env.faults)

    def fault_paths(self, s: Sym, kinds: Iterable[str]) -> list[tuple[Sym, str]]:
        out = []
        for k in kinds:
            if k not in self.env.fault_kinds:
                continue
            for t, ok in branch(s.copy(), self.can_fault(s)):
                if ok:
                    t["nf"] = t["nf"] + 1
                    t.say(f"[fault: {k}]")
                    out.append((t, k))
        return out

    def new_guard(self, s: Sym) -> Val:
        g = s["ng"]
        s["ng"] = g + 1
        return g

    def set_token(self, s: Sym, tok: Val) -> None:
        for f, sf in TOKEN_FIELDS:
            s[sf] = OR(s[sf], AND(s[f] == tok, tok != 0))

    def clear_token(self, s: Sym, tok: Val) -> None:
        for f, sf in TOKEN_FIELDS:
            s[sf] = AND(s[sf], NOT(AND(s[f] == tok, tok != 0)))

    def write_G(self, s: Sym, new: Val, new_set: Val, known: list[Val] | None) -> None:
        """G[k] = new; a task or command changing a guard it does not know breaks property 4."""
        old = s["G"]
        if known is not None:
            s.flag("v_release", AND(old != new, old != 0, *[old != k for k in known]))
        s["G"] = new
        s["gset"] = AND(new != 0, new_set)

    def task_known(self, s: Sym, i: int) -> list[Val]:
        return [s[L(i, j, "g")] for j in self.levels]

    def cmd_known(self, s: Sym, c: str) -> list[Val]:
        return [s[H(c, "old")], s[H(c, "cg")]]

    def tops(self, s: Sym, i: int) -> list[tuple[Sym, int]]:
        if self.ref:
            return [(s, 0)]
        return [(t, 1 if b else 0) for t, b in branch(s, s[T(i, "nlev")] == 2)]

    def any_task(self, s: Sym) -> Val:
        return OR(s[T(0, "pc")] != NOTASK, s["ninert"] > 0)

    def inflight(self, s: Sym, d: Val) -> Val:
        """Is the command with message id `d` still in flight?"""
        return OR(
            AND(s["nc"] >= 1, s[H("A", "mid")] == d),
            AND(s["nc"] >= 2, s[H("Z", "mid")] == d),
            AND(s["nc"] >= 3, s[H("A", "mid")] < d, d < s[H("Z", "mid")]),
        )

    def overflow(self, s: Sym, why: str) -> list[Sym]:
        s["ovf"] = True
        s.say(f"overflow: {why}")
        return [s]

    def clear_pending(self, s: Sym) -> None:
        s["p"], s["plo"], s["phi"], s["pctl"], s["pdmax"] = False, 0, 0, False, -1

    def run_level(self, s: Sym, i: int, j: int) -> None:
        """The runner is called with the level's event: order, handoff and twice facts."""
        ordinary = s[L(i, j, "ord")]
        s.flag("v_order", AND(ordinary, s[L(i, j, "lo")] < s["lastrun"]))
        s["lastrun"] = ITE(ordinary, MAX(s["lastrun"], s[L(i, j, "hi")]), s["lastrun"])
        dmax = s[L(i, j, "dmax")]
        s.flag("v_handoff", AND(ordinary, dmax >= 0, self.inflight(s, dmax)))
        s["twice"] = OR(s["twice"], s[L(i, j, "ran")])
        s[L(i, j, "ran")] = True

    # --- tasks: creation and removal -------------------------------------------------

    def new_task(self, s: Sym, lo: Val, hi: Val, ordinary: Val, dmax: Val, guard: Val) -> list[tuple[Sym, int]]:
        """create_task(process(event)): the next free slot (-1: the abstraction overflows)."""
        out: list[tuple[Sym, int]] = []
        for t, free0 in branch(s, s[T(0, "pc")] == NOTASK):
            if free0:
                out.append((t, 0))
                continue
            for u, free1 in branch(t, s[T(1, "pc")] == NOTASK):
                out.append((u, 1 if free1 else -1))
        for t, i in out:
            if i < 0:
                self.overflow(t, "a third live task")
                continue
            t[T(i, "pc")] = START
            t[T(i, "nlev")] = 1
            t[L(i, 0, "lo")], t[L(i, 0, "hi")], t[L(i, 0, "ord")] = lo, hi, ordinary
            t[L(i, 0, "dmax")] = dmax
            t[L(i, 0, "g")] = guard
        return out

    def clear_level(self, s: Sym, i: int, j: int) -> None:
        for n, ty in _LEVEL_FIELDS:
            s[L(i, j, n)] = _zero(ty)

    def level_unfated(self, s: Sym, i: int, j: int) -> Val:
        return OR(s[L(i, j, "fate")] != F_ALL, s[L(i, j, "pop")])

    def remove_slot(self, s: Sym, i: int, owner_to: int) -> list[Sym]:
        """The task in slot i leaves the world; later slots move up (World.freeze order)."""
        code = O_T0 + i
        s["O"] = ITE(s["O"] == code, owner_to, s["O"])
        for c in ("A", "Z"):
            s[H(c, "tgt")] = ITE(s[H(c, "tgt")] == code, O_DEAD, s[H(c, "tgt")])
        if i == 0:
            s["maw1"] = s["maw1"] + s["maw2"]
            s["maw2"] = 0
        for n, ty in _TASK_FIELDS:
            s[T(i, n)] = _zero(ty)
        for j in LEVELS:
            self.clear_level(s, i, j)
        if i == 1:
            return [s]
        out = []
        for t, shift in branch(s, s[T(1, "pc")] != NOTASK):
            if shift:
                for n, _ in _TASK_FIELDS:
                    t[T(0, n)] = t[T(1, n)]
                for j in LEVELS:
                    for n, _ in _LEVEL_FIELDS:
                        t[L(0, j, n)] = t[L(1, j, n)]
                for n, ty in _TASK_FIELDS:
                    t[T(1, n)] = _zero(ty)
                for j in LEVELS:
                    self.clear_level(t, 1, j)
                t["O"] = ITE(t["O"] == O_T1, O_T0, t["O"])
                for c in ("A", "Z"):
                    t[H(c, "tgt")] = ITE(t[H(c, "tgt")] == O_T1, O_T0, t[H(c, "tgt")])
            out.append(t)
        return out

    def end_task(self, s: Sym, i: int) -> list[Sym]:
        for j in self.levels:
            present = s[T(i, "nlev")] > j
            s["lost"] = OR(s["lost"], AND(present, self.level_unfated(s, i, j)))
        return self.remove_slot(s, i, O_DEAD)

    def normalize(self, s: Sym) -> list[Sym]:
        """Canonical form: an overflow is the single state `ovf`; inert tasks are counted."""
        if s.v["ovf"] is True:
            s.v = {**ovf_state(), **{f: False for f in STEP_FLAGS}}
            return [s]
        if not self.ref:
            return [s]
        out = [s]
        for i in (1, 0):  # slot 1 first, so that a move up never skips a slot
            nxt: list[Sym] = []
            for t in out:
                inert = AND(
                    t[T(i, "pc")] == REAP,
                    t["O"] != O_T0 + i,
                    OR(t["G"] == 0, t["G"] != t[L(i, 0, "g")]),
                )
                for u, b in branch(t, inert):
                    if b:
                        u["ninert"] = u["ninert"] + 1
                        u["ninu"] = u["ninu"] + ITE(self.level_unfated(u, i, 0), 1, 0)
                        nxt += self.remove_slot(u, i, u["O"])
                    else:
                        nxt.append(u)
            out = nxt
        return out

    # --- the platform ----------------------------------------------------------------------

    def _arrivals(self, s: Sym) -> list[Sym]:
        cond = AND(NOT(s["stop"]), not self.env.internal)
        if self.env.messages is not None:
            cond = AND(cond, s["nmsg"] < self.env.messages)
        out: list[Sym] = []
        for t, ok in branch(s, cond):
            if not ok:
                continue
            for kind in self.env.kinds:
                out += self.arrive(t.copy(), kind)
        return out

    def arrive(self, s: Sym, kind: str) -> list[Sym]:
        m = s["nmsg"]
        s["nmsg"] = m + 1
        s.say(f"platform delivers m{{{m}}} {kind}")
        dm = ITE(s["nc"] >= 2, s[H("Z", "mid")], ITE(s["nc"] >= 1, s[H("A", "mid")], -1))
        dead = AND(s["G"] != 0, NOT(self.any_task(s)), s["nc"] == 0)
        if self.prefix:
            paths = self.inbound_prefix(s, m, kind, dm)
        else:
            paths = self.inbound_seed(s, m, kind, dm)
        if kind in ORDINARY_KINDS:
            for t in paths:
                t.flag("v_heal", AND(dead, t["p"], t["phi"] == m))
        return paths

    def busy(self, s: Sym, m: Val, kind: str, dm: Val) -> list[Sym]:
        ordinary = kind in ORDINARY_KINDS
        s["plo"] = ITE(s["p"], s["plo"], m)
        s["pdmax"] = MAX(ITE(s["p"], s["pdmax"], -1), dm) if ordinary else ITE(s["p"], s["pdmax"], -1)
        s["phi"] = m
        s["p"] = True
        s["pctl"] = OR(s["pctl"], kind in BYPASS_KINDS)
        if kind == PHOTO:
            s.say("H:busy-photo-queued")
        else:
            self.set_token(s, s["G"])
            s.say("H:busy-interrupt")
        return [s]

    def bypass(self, s: Sym, m: Val, kind: str) -> list[Sym]:
        s.say("H:bypass")
        if kind == STOP:
            out = []
            for t, free in branch(s, s["bs_pc"] == B_NONE):
                if not free:
                    out += self.overflow(t, "a second bypass /stop")
                    continue
                t["bs_pc"], t["bs_mid"], t["bs_hung"] = B_RUNNER, m, False
                out.append(t)
            return out
        s["nbr"] = s["nbr"] + 1
        return [s]

    def inbound_prefix(self, s: Sym, m: Val, kind: str, dm: Val) -> list[Sym]:
        out = []
        for t, busy in branch(s, s["G"] != 0):
            if busy:
                if kind in BYPASS_KINDS:
                    out += self.bypass(t, m, kind)
                else:
                    out += self.busy(t, m, kind, dm)
                continue
            t.say("H:start")
            self.write_G(t, self.new_guard(t), False, None)
            ordinary = kind in ORDINARY_KINDS
            for u, _ in self.new_task(t, m, m, ordinary, dm if ordinary else -1, 0):
                out.append(u)
        return out

    def inbound_seed(self, s: Sym, m: Val, kind: str, dm: Val) -> list[Sym]:
        paths = [s]
        if self.ref:
            # R6: the finished owner's done-callback runs first (it may hand on P[k]).
            nxt = []
            for i in SLOTS:
                for t in paths:
                    for u, b in branch(t, AND(t["O"] == O_T0 + i, t[T(i, "pc")] == REAP)):
                        if b:
                            u.say("heal: done-callback")
                            nxt += self.reap(u, i, known=None)
                        else:
                            nxt.append(u)
                paths, nxt = nxt, []
        if not self.ref:
            nxt = []
            for t in paths:
                for u, b in branch(t, AND(t["G"] != 0, t["O"] == O_DEAD)):
                    if b:
                        u.say("heal")
                        self.write_G(u, 0, False, None)
                        u["lost"] = OR(u["lost"], u["p"])
                        self.clear_pending(u)
                        u["O"] = O_NONE
                    nxt.append(u)
            paths = nxt
        out: list[Sym] = []
        ordinary = kind in ORDINARY_KINDS
        for t in paths:
            for u, busy in branch(t, t["G"] != 0):
                if busy:
                    if kind in RESET_LIKE_KINDS:
                        out += self.command_begin(u, m, kind)
                    elif kind in BYPASS_KINDS and not (self.mutation == "queue-approve" and kind == APPROVE):
                        out += self.bypass(u, m, kind)
                    else:
                        out += self.busy(u, m, kind, dm)
                    continue
                u.say("H:start")
                out += [v for v, _ in self.start(u, m, m, ordinary, dm if ordinary else -1, None)]
        return out

    def hand_on(self, s: Sym, owns: Val, turn: str, known: list[Val] | None) -> list[Sym]:
        """Reference's end of a turn, for a task (F2) and a command (C4) alike
        (model/reference.py, `hand_on`): if the session is still ours, start the
        follow-ups under a new owner or release; otherwise leave it."""
        out: list[Sym] = []
        for t, ours in branch(s, owns):
            if not ours:
                t.say(f"{turn}:session-taken-over")
                out.append(t)
                continue
            for u, pend in branch(t, t["p"]):
                if pend:
                    lo, hi, dmax = u["plo"], u["phi"], u["pdmax"]
                    self.clear_pending(u)
                    u.say(f"{turn}:hand-pending-to-new-owner")
                    out += [v for v, _ in self.start(u, lo, hi, True, dmax, known)]
                else:
                    u.say(f"{turn}:release-own-guard")
                    self.write_G(u, 0, False, known)
                    out.append(u)
        return out

    def start(self, s: Sym, lo: Val, hi: Val, ordinary: Val, dmax: Val, known: list[Val] | None) -> list[tuple[Sym, int]]:
        """start(e, k): a fresh guard, a new task (given the guard in reference), O[k] = it."""
        g = self.new_guard(s)
        self.write_G(s, g, False, known)
        out = []
        for t, i in self.new_task(s, lo, hi, ordinary, dmax, g if self.ref else 0):
            if i >= 0:
                t["O"] = O_T0 + i
            out.append((t, i))
        return out

    # --- the command handoff ------------------------------------------------------------

    def command_begin(self, s: Sym, m: Val, kind: str) -> list[Sym]:
        s.say("H:C1-handoff")
        old, olds = s["G"], s["gset"]
        cg = self.new_guard(s)
        self.write_G(s, cg, False, None)
        out: list[Sym] = []
        for t, n in cases(s, ITE(s["nc"] >= 2, 2, s["nc"]), (0, 1, 2)):
            if n == 2:
                if not self.ref:
                    out += self.overflow(t, "a third command in flight")
                    continue
                for u, pc in cases(t, t[H("Z", "pc")], (H_RUNNER, H_AWAIT, H_SEND)):
                    if pc == H_RUNNER:
                        u["mrun"] = u["mrun"] + 1
                        out.append(u)
                    elif pc == H_AWAIT:
                        for w, tg in cases(u, u[H("Z", "tgt")], (0, 1, 2, 3)):
                            if tg == 3:
                                out += self.overflow(w, "a middle command awaiting task slot 1")
                            else:
                                w[f"maw{tg}"] = w[f"maw{tg}"] + 1
                                out.append(w)
                    else:
                        out += self.overflow(u, "a middle command at C3")
            else:
                out.append(t)
        final = []
        for t in out:
            if t.v["ovf"] is True:
                final.append(t)
                continue
            for u, first in branch(t, t["nc"] == 0):
                slot = "A" if first else "Z"
                vals = {"pc": H_RUNNER, "mid": m, "old": old, "olds": olds, "cg": cg, "cgs": False,
                        "tgt": O_NONE, "hung": False, "kstop": kind == STOP}
                for name in _CMD_NAMES:
                    u[H(slot, name)] = vals[name]
                u["nc"] = u["nc"] + 1
                final.append(u)
        return final

    def crel(self, s: Sym, mid: Val, i: int, j: int) -> Val:
        """How the level's messages compare with the cancelling command: 0 all older, 1 all newer, 2 both."""
        return ITE(s[L(i, j, "hi")] < mid, 0, ITE(s[L(i, j, "lo")] > mid, 1, 2))

    def cancel_task_by(self, s: Sym, i: int, mid: Val) -> list[Sym]:
        out = []
        for t, top in self.tops(s, i):
            none = t[T(i, "cancel")] == C_NONE
            t[T(i, "crel")] = ITE(none, self.crel(t, mid, i, top), t[T(i, "crel")])
            t[T(i, "cancel")] = ITE(none, C_COMMAND, t[T(i, "cancel")])
            out.append(t)
        return out

    def cancel_owner(self, s: Sym, c: str) -> list[Sym]:
        """C2: cancel the owner; seed pops O[k], reference leaves it to the owner (R5)."""
        out: list[Sym] = []
        mid = s[H(c, "mid")]
        for t, o in cases(s, s["O"], (O_NONE, O_DEAD, O_T0, O_T1)):
            if o in (O_NONE, O_DEAD):
                if self.ref:
                    t[H(c, "pc")], t[H(c, "tgt")] = H_AWAIT, O_NONE
                else:
                    t["O"] = O_NONE
                    t[H(c, "pc")] = H_SEND
                t.say("C2:no-running-owner")
                out.append(t)
                continue
            i = o - O_T0
            running = t[T(i, "pc")] != REAP if self.ref else True
            for u, b in branch(t, running):
                if not self.ref:
                    u["O"] = O_NONE
                if not b:
                    u[H(c, "pc")], u[H(c, "tgt")] = H_AWAIT, O_NONE
                    u.say("C2:no-running-owner")
                    out.append(u)
                    continue
                u.say(f"C2:cancel-owner T{i}")
                for w in self.cancel_task_by(u, i, mid):
                    w[H(c, "pc")], w[H(c, "tgt")] = H_AWAIT, o
                    out.append(w)
        return out

    def command_end(self, s: Sym, c: str) -> list[Sym]:
        """C4: pop P[k], release the command guard, start what was pending."""
        known = self.cmd_known(s, c)
        cg = s[H(c, "cg")]
        out: list[Sym] = []
        if self.ref:
            return self.hand_on(s, s["G"] == cg, "C4", known)
        for t, pend in branch(s, s["p"]):
            lo, hi, dmax = t["plo"], t["phi"], t["pdmax"]
            self.clear_pending(t)
            for u, ours in branch(t, t["G"] == cg):
                if ours:
                    self.write_G(u, 0, False, known)
                if pend:
                    u.say("C4:release-and-start-pending")
                    out += [v for v, _ in self.start(u, lo, hi, True, dmax, known)]
                else:
                    u.say("C4:release")
                    out.append(u)
        return out

    def command_error(self, s: Sym, c: str) -> list[Sym]:
        """seed's C-error: restore the old guard or release the command guard."""
        known = self.cmd_known(s, c)
        out = []
        for t, ours in branch(s, s["G"] == s[H(c, "cg")]):
            if not ours:
                t.say("C-error:guard-not-ours")
                out.append(t)
                continue
            for u, restore in branch(t, AND(t["O"] != O_NONE, t[H(c, "old")] != 0)):
                if restore:
                    u.say("C-error:restore-old-guard")
                    self.write_G(u, u[H(c, "old")], u[H(c, "olds")], known)
                else:
                    u.say("C-error:release")
                    self.write_G(u, 0, False, known)
                out.append(u)
        return out

    def stop_works(self, s: Sym, mid: Val, is_stop: Val) -> None:
        """Property 10 at the end of a /stop's handling, on the state after it."""
        older: list[Val] = []
        for i in SLOTS:
            for j in self.levels:
                older.append(AND(s[T(i, "nlev")] > j, s[L(i, j, "ran")], s[L(i, j, "lo")] < mid))
        stranded = AND(s["G"] != 0, NOT(self.any_task(s)), s["nc"] == 0, s["O"] != O_DEAD)
        s.flag("v_stop", AND(is_stop, NOT(s["stop"]), OR(stranded, *older)))

    def remove_command(self, s: Sym, c: str) -> list[Sym]:
        """The command's handling ends: the next one becomes the earliest (or latest)."""
        if c == "Z":
            for n, ty in _CMD_FIELDS:
                s[H("Z", n)] = _zero(ty)
            s["nc"] = s["nc"] - 1
            return [s]
        out: list[Sym] = []
        for t, count in cases(s, ITE(s["nc"] >= 3, 3, s["nc"]), (1, 2, 3)):
            if count == 1:
                for name, ty in _CMD_FIELDS:
                    t[H("A", name)] = _zero(ty)
            elif count == 2:
                for name, _ in _CMD_FIELDS:
                    t[H("A", name)] = t[H("Z", name)]
                    t[H("Z", name)] = _zero(FIELD_TYPES[H("Z", name)])
            else:
                # A command from the middle becomes the earliest: its id and kind were
                # not kept, so any id between A and Z and either kind are allowed.
                low = t[H("A", "mid")]
                for cls in ("mrun", "maw0", "maw1", "maw2"):
                    u = t.copy()
                    u.cond.append(u[cls] > 0)
                    u[cls] = u[cls] - 1
                    u[H("A", "mid")] = choice_int(u, "mid", low, u[H("Z", "mid")])
                    u[H("A", "pc")] = H_RUNNER if cls == "mrun" else H_AWAIT
                    u[H("A", "tgt")] = {"mrun": O_NONE, "maw0": O_NONE, "maw1": O_DEAD, "maw2": O_T0}[cls]
                    u[H("A", "old")] = self.new_guard(u)
                    u[H("A", "cg")] = self.new_guard(u)
                    u[H("A", "olds")] = False
                    u[H("A", "cgs")] = False
                    u[H("A", "hung")] = False
                    u[H("A", "kstop")] = choice_bool(u, "kstop")
                    u["nc"] = u["nc"] - 1
                    out.append(u)
                continue
            t["nc"] = t["nc"] - 1
            out.append(t)
        return out

    # --- handler steps -------------------------------------------------------------------

    def ready(self, s: Sym, c: str) -> Val:
        """May the command resume?  C2 waits for its target (and, in reference, for
        every earlier command: only the earliest, A, may complete)."""
        tgt = s[H(c, "tgt")]
        if self.mutation == "no-owner-wait":
            target_gone: Val = True
        else:
            target_gone = AND(
                OR(tgt != O_T0, s[T(0, "pc")] == REAP if self.ref else False),
                OR(tgt != O_T1, s[T(1, "pc")] == REAP if self.ref else False),
            )
        if self.ref and c == "Z":
            return s[H(c, "pc")] != H_AWAIT
        return OR(s[H(c, "pc")] != H_AWAIT, target_gone)

    def _handler_steps(self, s: Sym) -> list[Sym]:
        out: list[Sym] = []
        for c, present in (("A", s["nc"] >= 1), ("Z", s["nc"] >= 2)):
            for t, ok in branch(s.copy(), AND(present, NOT(s[H(c, "hung")]), self.ready(s, c))):
                if ok:
                    out += self.command_step(t, c)
        if self.ref:
            for t, ok in branch(s.copy(), s["mrun"] > 0):
                if ok:
                    out += self.middle_step(t)
        out += self.bypass_steps(s)
        return out

    def command_step(self, s: Sym, c: str) -> list[Sym]:
        out: list[Sym] = []
        for t, pc in cases(s, s[H(c, "pc")], (H_RUNNER, H_AWAIT, H_SEND)):
            t.say(f"command {c} at {['', 'C1:runner', 'C2:await-owner', 'C3:send'][pc]}")
            out += self.command_resume(t.copy(), c, pc)
            if pc == H_AWAIT:
                continue
            faults = ("runner-raises", "runner-hangs") if pc == H_RUNNER else ("send-raises", "send-hangs")
            for u, fault in self.fault_paths(t, faults):
                out += self.command_fault(u, c, pc, fault)
        return out

    def command_resume(self, s: Sym, c: str, pc: int) -> list[Sym]:
        if pc == H_RUNNER:
            return self.cancel_owner(s, c)
        if pc == H_AWAIT:
            s[H(c, "pc")] = H_SEND
            return [s]
        mid, is_stop = s[H(c, "mid")], s[H(c, "kstop")]
        out = []
        for t in self.command_end(s, c):
            for u in self.remove_command(t, c):
                self.stop_works(u, mid, is_stop)
                out.append(u)
        return out

    def command_fault(self, s: Sym, c: str, pc: int, fault: str) -> list[Sym]:
        if self.ref:  # R5: bounded awaits; the handoff completes anyway
            if pc == H_RUNNER:
                return self.cancel_owner(s, c)
            out = []
            for t in self.command_end(s, c):
                out += self.remove_command(t, c)
            return out
        if fault.endswith("hangs"):
            s[H(c, "hung")] = True
            return [s]
        out = []
        for t in self.command_error(s, c):
            out += self.remove_command(t, c)
        return out

    def middle_step(self, s: Sym) -> list[Sym]:
        """A command in the middle resumes at C1 (normally, raising or timing out): C2."""
        out: list[Sym] = []
        variants = [s.copy()] + [t for t, _ in self.fault_paths(s, ("runner-raises", "runner-hangs"))]
        for t in variants:
            t["mrun"] = t["mrun"] - 1
            for u, o in cases(t, t["O"], (O_NONE, O_DEAD, O_T0, O_T1)):
                if o == O_T1:
                    out += self.overflow(u, "a middle command cancelling task slot 1")
                    continue
                if o in (O_NONE, O_DEAD):
                    u["maw0"] = u["maw0"] + 1
                    out.append(u)
                    continue
                for w, running in branch(u, u[T(0, "pc")] != REAP):
                    if not running:
                        w["maw0"] = w["maw0"] + 1
                        out.append(w)
                        continue
                    none = w[T(0, "cancel")] == C_NONE
                    for x, b in branch(w, none):
                        if b:
                            mid = choice_int(x, "mid", x[H("A", "mid")], x[H("Z", "mid")])
                            x[T(0, "crel")] = self.crel(x, mid, 0, 0)
                            x[T(0, "cancel")] = C_COMMAND
                        x["maw2"] = x["maw2"] + 1
                        out.append(x)
        return out

    def bypass_steps(self, s: Sym) -> list[Sym]:
        out: list[Sym] = []
        # anonymous bypass handlers (/approve and, in prefix, /new, /reset)
        for cnt, nxt, faults in (
            ("nbr", "nbs", ("runner-raises", "runner-hangs")),
            ("nbs", None, ("send-raises", "send-hangs")),
        ):
            for t, ok in branch(s.copy(), s[cnt] > 0):
                if not ok:
                    continue
                t[cnt] = t[cnt] - 1
                u = t.copy()
                u.say(f"bypass handler resumes ({cnt})")
                if nxt is not None:
                    u[nxt] = u[nxt] + 1
                out.append(u)
                for w, fault in self.fault_paths(t, faults):
                    if fault.endswith("hangs"):
                        w["nbh"] = w["nbh"] + 1
                    out.append(w)
        # the bypass /stop of prefix
        for t, ok in branch(s.copy(), AND(s["bs_pc"] != B_NONE, NOT(s["bs_hung"]))):
            if not ok:
                continue
            for u, pc in cases(t, t["bs_pc"], (B_RUNNER, B_SEND)):
                v = u.copy()
                v.say("bypass /stop resumes")
                if pc == B_RUNNER:
                    v["bs_pc"] = B_SEND
                else:
                    mid = v["bs_mid"]
                    v["bs_pc"], v["bs_mid"] = B_NONE, 0
                    self.stop_works(v, mid, True)
                out.append(v)
                faults = ("runner-raises", "runner-hangs") if pc == B_RUNNER else ("send-raises", "send-hangs")
                for w, fault in self.fault_paths(u, faults):
                    if fault.endswith("hangs"):
                        w["bs_hung"] = True
                    else:
                        w["bs_pc"], w["bs_mid"] = B_NONE, 0
                    out.append(w)
        return out

    # --- the environment ---------------------------------------------------------------

    def _environment(self, s: Sym) -> list[Sym]:
        out: list[Sym] = []
        if "task-cancelled" in self.env.fault_kinds:
            for i in SLOTS:
                pc = s[T(i, "pc")]
                for t, ok in branch(s.copy(), AND(pc != NOTASK, pc != REAP, s[T(i, "cancel")] == C_NONE)):
                    if not ok:
                        continue
                    for u, _ in self.fault_paths(t, ("task-cancelled",)):
                        u[T(i, "cancel")] = C_FAULT
                        u.say(f"environment cancels T{i}")
                        out.append(u)
        for u, _ in self.fault_paths(s.copy(), ("shutdown",)):
            u.say("environment: shutdown")
            u["stop"] = True
            for i in SLOTS:
                pc = u[T(i, "pc")]
                live = AND(pc != NOTASK, pc != REAP)
                u[T(i, "cancel")] = ITE(live, C_SHUTDOWN, u[T(i, "cancel")])
                u[T(i, "crel")] = ITE(live, 0, u[T(i, "crel")])
            self.clear_pending(u)
            self.write_G(u, 0, False, None)
            u["O"] = O_NONE
            out.append(u)
        return out

    # --- inert tasks (reference): only their done-callback is left ------------------------

    def _inert_steps(self, s: Sym) -> list[Sym]:
        if not self.ref:
            return []
        out: list[Sym] = []
        for t, ok in branch(s.copy(), s["ninert"] - s["ninu"] > 0):
            if ok:
                t["ninert"] = t["ninert"] - 1
                t.say("done-callback of an inert task")
                out.append(t)
        for t, ok in branch(s.copy(), s["ninu"] > 0):
            if ok:
                t["ninert"] = t["ninert"] - 1
                t["ninu"] = t["ninu"] - 1
                t["lost"] = True
                t.say("done-callback of an inert task holding an unfated message")
                out.append(t)
        return out

    # --- task steps ---------------------------------------------------------------------

    def _task_steps(self, s: Sym, i: int) -> list[Sym]:
        out: list[Sym] = []
        pcs = (START, RUNNER, SEND_REPLY, INBAND, SEND_ERROR, TYPING, HOOKS, REAP)
        for t, pending in branch(s, s[T(i, "cancel")] != C_NONE):
            if pending:
                for u, pc in cases(t, t[T(i, "pc")], pcs):
                    if pc != REAP:
                        u.say(f"T{i} at {PC_NAMES[pc]}: cancellation delivered")
                        out += self.deliver_cancel(u, i, pc)
                continue
            for u, hung in branch(t, t[T(i, "hung")]):
                if hung:
                    continue
                for v, pc in cases(u, u[T(i, "pc")], pcs):
                    v.say(f"T{i} resumes at {PC_NAMES[pc]}")
                    out += self.resume(v.copy(), i, pc)
                    faults = {
                        RUNNER: ("runner-raises", "runner-hangs"),
                        SEND_REPLY: ("send-raises", "send-hangs"),
                        SEND_ERROR: ("send-raises", "send-hangs"),
                        HOOKS: ("cleanup-raises", "cleanup-cancelled", "cleanup-hangs"),
                    }.get(pc, ())
                    for w, fault in self.fault_paths(v, faults):
                        out += self.resume_fault(w, i, pc, fault)
        return out

    def resume(self, s: Sym, i: int, pc: int) -> list[Sym]:
        known = self.task_known(s, i)
        out: list[Sym] = []
        for t, top in self.tops(s, i):
            if pc == START:
                out += self.p1(t, i, top)
            elif pc == RUNNER:
                out += self.p2(t, i, top)
            elif pc == SEND_REPLY:
                out += self.p3(t, i, top)
            elif pc == INBAND:
                out += self.after_inband(t, i, top)
            elif pc == SEND_ERROR:
                t[T(i, "pc")] = TYPING
                out.append(t)
            elif pc == TYPING:
                t[T(i, "pc")] = HOOKS
                out.append(t)
            elif pc == HOOKS:
                exc = t[T(i, "unwind")]
                for u in self.finish(t, i, top, known):
                    out += self.level_return(u, i, top, exc)
            elif pc == REAP:
                out += self.reap(t, i, known)
        return out

    def resume_fault(self, s: Sym, i: int, pc: int, fault: str) -> list[Sym]:
        if fault.endswith("hangs"):
            s[T(i, "hung")] = True
            return [s]
        out: list[Sym] = []
        known = self.task_known(s, i)
        for t, top in self.tops(s, i):
            if pc == RUNNER:
                t[L(i, top, "fate")] = F_ALL
                t[T(i, "pc")] = SEND_ERROR
                out.append(t)
            elif pc == SEND_REPLY:
                t[T(i, "pc")] = SEND_ERROR
                out.append(t)
            elif pc == SEND_ERROR:
                t[T(i, "unwind")] = U_ERROR
                t[T(i, "pc")] = TYPING
                out.append(t)
            elif pc == HOOKS:
                exc = U_ERROR if fault == "cleanup-raises" else U_CANCEL
                out += self.cleanup_fault(t, i, top, exc, known)
        return out

    def cleanup_fault(self, s: Sym, i: int, top: int, exc: Val, known: list[Val]) -> list[Sym]:
        if not self.ref:
            return self.level_return(s, i, top, exc)
        out = []
        for t in self.finish(s, i, top, known):  # R3: the inner finally still runs F2
            out += self.level_return(t, i, top, exc)
        return out

    def p1(self, s: Sym, i: int, top: int) -> list[Sym]:
        paths = [s]
        if not self.ref:  # g = G.get(k) or a new guard; G[k] = g
            known = self.task_known(s, i)
            paths = []
            for t, idle in branch(s, s["G"] == 0):
                if idle:
                    self.write_G(t, self.new_guard(t), False, known)
                t[L(i, top, "g")] = t["G"]
                t[L(i, top, "gs")] = t["gset"]
                paths.append(t)
        for t in paths:
            self.run_level(t, i, top)
            t[T(i, "pc")] = RUNNER
        return paths

    def p2(self, s: Sym, i: int, top: int) -> list[Sym]:
        s[L(i, top, "fate")] = F_ALL
        out: list[Sym] = []
        for t, stale in branch(s, AND(s[L(i, top, "gs")], s["p"])):
            if stale:
                t.say("P2:stale-reply-dropped")
                out += self.p3(t, i, top)
            else:
                t[T(i, "pc")] = SEND_REPLY
                out.append(t)
        return out

    def p3(self, s: Sym, i: int, top: int) -> list[Sym]:
        if self.ref:
            s[T(i, "pc")] = TYPING
            return [s]
        out = []
        for t, pend in branch(s, s["p"]):
            if pend:
                t[L(i, top, "pop")] = True
                t[L(i, top, "plo")], t[L(i, top, "phi")] = t["plo"], t["phi"]
                t[L(i, top, "pdmax")] = t["pdmax"]
                self.clear_pending(t)
                self.clear_token(t, t["G"])
                t[T(i, "pc")] = INBAND
            else:
                t[T(i, "pc")] = TYPING
            out.append(t)
        return out

    def after_inband(self, s: Sym, i: int, top: int) -> list[Sym]:
        if top == 1:
            return self.overflow(s, "a third level of process()")
        lo, hi, dmax = s[L(i, 0, "plo")], s[L(i, 0, "phi")], s[L(i, 0, "pdmax")]
        s[L(i, 0, "pop")], s[L(i, 0, "plo")], s[L(i, 0, "phi")], s[L(i, 0, "pdmax")] = False, 0, 0, 0
        s[T(i, "nlev")] = 2
        s[L(i, 1, "lo")], s[L(i, 1, "hi")], s[L(i, 1, "ord")], s[L(i, 1, "dmax")] = lo, hi, True, dmax
        return self.p1(s, i, 1)

    def level_return(self, s: Sym, i: int, top: int, exc: Val) -> list[Sym]:
        s["lost"] = OR(s["lost"], self.level_unfated(s, i, top))
        self.clear_level(s, i, top)
        s[T(i, "unwind")] = U_NONE
        if top == 0:
            s[T(i, "nlev")] = 0
            return self.end_task(s, i)
        s[T(i, "nlev")] = 1
        s[T(i, "pc")] = ITE(exc == U_ERROR, SEND_ERROR, TYPING)
        s[T(i, "unwind")] = ITE(exc == U_ERROR, U_NONE, exc)
        return [s]

    def cancelled_fates(self, s: Sym, i: int, top: int, origin: Val, crel: Val) -> None:
        f = s[L(i, top, "fate")]
        by_command = ITE(crel == 0, F_ALL, ITE(crel == 1, f, ITE(f == F_NONE, F_MIXED, f)))
        s[L(i, top, "fate")] = ITE(origin == C_COMMAND, by_command, F_ALL)

    def deliver_cancel(self, s: Sym, i: int, pc: int) -> list[Sym]:
        origin, crel = s[T(i, "cancel")], s[T(i, "crel")]
        s[T(i, "cancel")], s[T(i, "crel")], s[T(i, "hung")] = C_NONE, 0, False
        if pc in self.swallows:
            return self.resume(s, i, pc)
        known = self.task_known(s, i)
        out: list[Sym] = []
        for t, top in self.tops(s, i):
            if pc == START:
                self.cancelled_fates(t, i, top, origin, crel)
                if self.ref:
                    t[T(i, "pc")] = REAP
                    out.append(t)
                else:
                    out += self.end_task(t, i)
                continue
            if pc == RUNNER:
                self.cancelled_fates(t, i, top, origin, crel)
            if pc in (TYPING, HOOKS):
                out += self.cleanup_fault(t, i, top, U_CANCEL, known)
                continue
            t[T(i, "unwind")] = U_CANCEL
            t[T(i, "pc")] = TYPING
            out.append(t)
        return out

    def reap(self, s: Sym, i: int, known: list[Val] | None) -> list[Sym]:
        """The done-callback of a reference task that ended without its finally."""
        out = []
        for t in self.finish(s, i, 0, known if known is not None else self.task_known(s, i)):
            out += self.end_task(t, i)
        return out

    def finish(self, s: Sym, i: int, top: int, known: list[Val]) -> list[Sym]:
        """F2, per design."""
        out: list[Sym] = []
        code = O_T0 + i
        if self.prefix:
            for t, pend in branch(s, s["p"]):
                if pend:
                    lo, hi, dmax = t["plo"], t["phi"], t["pdmax"]
                    self.clear_pending(t)
                    self.clear_token(t, t["G"])
                    out += [u for u, _ in self.new_task(t, lo, hi, True, dmax, 0)]
                else:
                    self.write_G(t, 0, False, known)
                    out.append(t)
            return out
        if not self.ref:
            for t, pend in branch(s, s["p"]):
                if pend:
                    lo, hi, dmax = t["plo"], t["phi"], t["pdmax"]
                    self.clear_pending(t)
                    self.clear_token(t, t["G"])
                    for u, j in self.new_task(t, lo, hi, True, dmax, 0):
                        if j >= 0:
                            u["O"] = O_T0 + j
                        out.append(u)
                    continue
                t["O"] = ITE(t["O"] == code, O_NONE, t["O"])
                g = t[L(i, top, "g")]
                for u, rel in branch(t, OR(g == 0, t["G"] == g)):
                    if rel:
                        self.write_G(u, 0, False, known)
                    out.append(u)
            return out
        s["O"] = ITE(s["O"] == code, O_NONE, s["O"])
        owns = s["G"] == s[L(i, top, "g")]
        if self.mutation == "no-identity-check":
            owns = s["G"] != 0
        return out + self.hand_on(s, owns, "F2", known)
