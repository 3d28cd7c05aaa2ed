"""The abstract system in z3: states as frames of variables, the transition relation,
bounded model checking (BMC) and induction queries.

A *frame* is one copy of the abstract state's fields as z3 variables
(`x@3` for field `x` in frame 3).  The transition relation `T(pre, post)` is
the disjunction, over every path of every rule in `encoding.Rules`, of the
path condition and `post.f == value` for every field; it is built once over
frames `@a`/`@b` and instantiated by substitution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import z3

from .encoding import FIELDS, INT_SORT, STEP_FLAGS, Env, Rules, Sym, Val, default_state

Frame = dict[str, Any]


def frame(tag: str, bits: int | None = None) -> Frame:
    """The fields as z3 constants: integers, or bit-vectors of `bits` bits (bounded search)."""
    f: Frame = {}
    for name, ty in FIELDS:
        if ty is bool:
            f[name] = z3.Bool(f"{name}@{tag}")
        elif bits is None:
            f[name] = z3.Int(f"{name}@{tag}")
        else:
            f[name] = z3.BitVec(f"{name}@{tag}", bits)
    for name in STEP_FLAGS:
        f[name] = z3.Bool(f"{name}@{tag}")
    return f


def equals(f: Frame, values: dict[str, Val], names: Any = None) -> z3.BoolRef:
    names = [n for n, _ in FIELDS] if names is None else names
    return z3.And(*[f[n] == values[n] for n in names])


def initial(f: Frame) -> z3.BoolRef:
    return z3.And(equals(f, default_state()), *[z3.Not(f[n]) for n in STEP_FLAGS])


def _same(x: Val, y: Val) -> bool:
    if isinstance(x, z3.ExprRef) and isinstance(y, z3.ExprRef):
        return bool(x.eq(y))
    return False


def relation(paths: list[Sym], pre: Frame, post: Frame, sel: list[z3.BoolRef]) -> z3.BoolRef:
    """T(pre, post): exactly one path is selected; it fixes the fields it changes,
    every other field keeps its value (a frame condition per field)."""
    parts: list[Any] = [z3.Or(*sel), z3.AtMost(*sel, 1)]
    changers: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        eqs = [c for c in p.cond if c is not True]
        for name in [n for n, _ in FIELDS] + list(STEP_FLAGS):
            v = p.v[name]
            if name in STEP_FLAGS:
                if v is False:
                    continue
            elif _same(v, pre[name]):
                continue
            changers.setdefault(name, []).append(i)
            eqs.append(post[name] == v)
        parts.append(z3.Implies(sel[i], z3.And(*eqs)))
    for name in [n for n, _ in FIELDS] + list(STEP_FLAGS):
        keep = z3.Not(post[name]) if name in STEP_FLAGS else post[name] == pre[name]
        parts.append(z3.Or(keep, *[sel[i] for i in changers.get(name, [])]))
    return z3.And(*parts)


@dataclass
class System:
    """One design (with an optional mutation) in an environment, as z3 formulas."""

    design: str
    env: Env = field(default_factory=Env)
    mutation: str | None = None
    #: Fields fixed to a value in every pre-state: the design's shape lemma
    #: (proved inductive, see invariants.py) says no reachable state differs.
    fixed: dict[str, Val] = field(default_factory=dict)
    #: None: unbounded integers (proofs); a width: bit-vectors (fast bounded search,
    #: sound only while every counter stays below 2**(bits-1), which Env bounds ensure).
    bits: int | None = None

    def __post_init__(self) -> None:
        self.rules = Rules(self.design, self.env, self.mutation)
        self.a, self.b = frame("a", self.bits), frame("b", self.bits)
        started = time.perf_counter()
        pre: dict[str, Val] = dict(self.a)
        pre.update(self.fixed)
        INT_SORT.append(self.a["nmsg"].sort())
        try:
            self.paths = self.rules.successors(pre)
        finally:
            INT_SORT.pop()
        self.labels = [" / ".join(p.label) for p in self.paths]
        self.sel = self.selectors("b")
        self._T = relation(self.paths, self.a, self.b, self.sel)
        self.build_seconds = time.perf_counter() - started
        self._frames: dict[int, Frame] = {}
        self._sels: dict[int, list[z3.BoolRef]] = {}

    def at(self, k: int) -> Frame:
        if k not in self._frames:
            self._frames[k] = frame(str(k), self.bits)
        return self._frames[k]

    def selectors(self, tag: str) -> list[z3.BoolRef]:
        return [z3.Bool(f"sel{i}@{tag}") for i in range(len(self.paths))]

    def rule_at(self, k: int) -> list[z3.BoolRef]:
        if k not in self._sels:
            self._sels[k] = self.selectors(str(k))
        return self._sels[k]

    def T(self, pre: Frame, post: Frame, sel: list[z3.BoolRef] | None = None) -> z3.BoolRef:
        """The transition relation between two frames (sel: which path is taken)."""
        pairs = [(self.a[n], pre[n]) for n, _ in FIELDS if n not in self.fixed]
        pairs += [(self.b[n], post[n]) for n in self.b]
        sel = sel if sel is not None else [z3.FreshBool("sel") for _ in self.paths]
        pairs += list(zip(self.sel, sel, strict=True))
        # pre's step flags are not read by any rule (they describe the step into pre)
        return z3.substitute(self._T, *pairs)


@dataclass
class Trace:
    """An abstract counterexample: the rule taken at each step and the states."""

    steps: list[str]
    states: list[dict[str, Val]]

    def __len__(self) -> int:
        return len(self.steps)


def _value(model: z3.ModelRef, x: Any) -> Val:
    v = model.eval(x, model_completion=True)
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    return v.as_long()


def decode(system: System, model: z3.ModelRef, depth: int) -> Trace:
    states = [{n: _value(model, system.at(k)[n]) for n in system.at(k)} for k in range(depth + 1)]
    steps = []
    for k in range(depth):
        chosen = [i for i, x in enumerate(system.rule_at(k + 1)) if _value(model, x) is True]
        label = system.labels[chosen[0]] if chosen else "?"
        steps.append(label.replace("m{nmsg@a}", f"m{states[k]['nmsg']}"))
    return Trace(steps, states)


def bmc(
    system: System,
    bad: Any,
    max_depth: int,
    *,
    deadline: float | None = None,
    step_property: bool = False,
    each_frame: Any = None,
) -> tuple[str, int, Trace | None]:
    """Breadth-first in depth: the shortest path from the initial state to `bad`.

    `each_frame`, if given, constrains every state of the path (a restriction:
    what is found is still a real path).
    Returns ("found", depth, trace), ("none", max_depth, None) when no path of
    up to max_depth steps reaches it, or ("unknown", depth, None) when z3 gave
    up or the deadline passed.
    """
    solver = z3.Solver()
    solver.add(initial(system.at(0)))
    for d in range(max_depth + 1):
        if each_frame is not None:
            solver.add(each_frame(system.at(d)))
        if d > 0:
            solver.add(system.T(system.at(d - 1), system.at(d), system.rule_at(d)))
        if d == 0 and step_property:
            continue
        if deadline is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                return "unknown", d, None
            solver.set("timeout", max(1, int(left * 1000)))
        solver.push()
        solver.add(z3.Not(system.at(d)["ovf"]), bad(system.at(d)))
        r = solver.check()
        if r == z3.sat:
            return "found", d, decode(system, solver.model(), d)
        solver.pop()
        if r == z3.unknown:
            return "unknown", d, None
    return "none", max_depth, None
