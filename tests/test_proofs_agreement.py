"""The z3 encoding agrees with the model: the same successors from every reachable state.

`proofs/encoding.py` is a second description of the designs (z3 needs fixed
fields where the model has growing tuples).  These tests are what entitles it
to speak for the model: from every state the explicit checker reaches at the
default bound, the abstract rules give exactly the abstractions of the model's
successors, step facts included; z3 model enumeration of the symbolic
relation gives the same set on a sample of those states; and every state
reached satisfies every strengthening lemma of the reference proof.
"""

from __future__ import annotations

from collections import deque

import pytest
import z3

from sessionguard.model import BY_NAME, DESIGNS, Bounds, State
from sessionguard.model.symmetry import canonical as model_canonical
from sessionguard.model.vocabulary import KINDS
from sessionguard.proofs.abstraction import alpha, canonical, key
from sessionguard.proofs.encoding import FIELDS, STEP_FLAGS, STEP_PROPERTY, Env, Rules
from sessionguard.proofs.invariants import LEMMAS
from sessionguard.proofs.system import System

DEFAULT = Bounds(messages=2, faults=1)
ALL_KINDS = Bounds(messages=2, faults=1, kinds=KINDS)


def reachable(design: str, bounds: Bounds) -> list[tuple[State, list]]:  # type: ignore[type-arg]
    d = DESIGNS[design]
    init = model_canonical(d.initial(bounds))
    seen = {init}
    todo = deque([init])
    out = []
    while todo:
        s = todo.popleft()
        succ = d.successors(s, bounds)
        out.append((s, succ))
        for _, n in succ:
            c = model_canonical(n)
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return out


def env(bounds: Bounds) -> Env:
    return Env(bounds.messages, bounds.faults, bounds.kinds, bounds.fault_kinds)


def model_successors(design: str, s: State, succ: list) -> set[tuple]:  # type: ignore[type-arg]
    out = set()
    for step, n in succ:
        b = alpha(n, design)
        for flag in STEP_FLAGS:
            b[flag] = BY_NAME[STEP_PROPERTY[flag]].check(s, step, n) is not None
        out.add(key(b))
    return out


@pytest.mark.parametrize("design", ["prefix", "seed", "reference"])
@pytest.mark.parametrize("bounds", [DEFAULT, ALL_KINDS], ids=["default", "all-kinds"])
def test_rules_give_the_models_successors(design: str, bounds: Bounds) -> None:
    rules = Rules(design, env(bounds))
    checked = 0
    for s, succ in reachable(design, bounds):
        a = alpha(s, design)
        if a["ovf"]:
            continue
        abstract = {key(canonical(p.v)) for p in rules.successors(a)}
        assert abstract == model_successors(design, s, succ), f"{design}: successors differ from {s}"
        checked += 1
    assert checked > 1000


@pytest.mark.slow
@pytest.mark.parametrize("design", ["prefix", "seed", "reference"])
def test_rules_give_the_models_successors_with_three_messages(design: str) -> None:
    bounds = Bounds(messages=3, faults=1)
    rules = Rules(design, env(bounds))
    for s, succ in reachable(design, bounds):
        a = alpha(s, design)
        if not a["ovf"]:
            assert {key(canonical(p.v)) for p in rules.successors(a)} == model_successors(design, s, succ)


def _lift(v: object) -> z3.ExprRef:
    return z3.BoolVal(v) if isinstance(v, bool) else z3.IntVal(v)  # type: ignore[arg-type]


@pytest.mark.parametrize("design", ["prefix", "seed", "reference"])
def test_z3_enumeration_matches_the_rules(design: str) -> None:
    """Model enumeration of T(pre, post) in z3 = the rules evaluated on concrete values."""
    system = System(design, env(DEFAULT))
    rules = Rules(design, env(DEFAULT))
    states = [alpha(s, design) for s, _ in reachable(design, DEFAULT)]
    sample = [a for a in states if not a["ovf"]][:: 200 if design == "reference" else 40]
    names = [n for n, _ in FIELDS] + list(STEP_FLAGS)
    post = system.at(1)
    for a in sample:
        solver = z3.Solver()
        solver.add(system.T({n: _lift(a[n]) for n, _ in FIELDS}, post))
        found = set()
        while solver.check() == z3.sat:
            m = solver.model()
            values = tuple(m.eval(post[n], model_completion=True) for n in names)
            found.add(tuple(z3.is_true(v) if z3.is_bool(v) else v.as_long() for v in values))
            solver.add(z3.Or(*[post[n] != v for n, v in zip(names, values, strict=True)]))
        expected = {tuple(bool(p.v[n]) if n in STEP_FLAGS else p.v[n] for n in names) for p in rules.successors(a)}
        assert found == expected


def test_reachable_reference_states_satisfy_every_lemma() -> None:
    for s, _ in reachable("reference", ALL_KINDS):
        a = alpha(s, "reference")
        for lemma in LEMMAS:
            assert lemma.holds(a) is True, f"{lemma.name} fails in {s}"
