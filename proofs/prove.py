"""The proof engine behind `sessionguard prove`.

For each safety property of SPEC 5 (and the dead-end form of property 9):

1. `reference` (the design the lemmas of invariants.py describe): an inductive
   proof.  Initiation (the initial state satisfies every lemma and the
   property) and consecution (Inv(s) and T(s, s') imply every lemma and the
   property in s') are each one z3 query per formula, and each must answer
   `unsat`; anything else (sat, unknown, timeout) is not a proof.
2. Otherwise, or if the induction fails (a weakened design): bounded model
   checking from the initial state, depth by depth, so the counterexample
   found is a shortest one in the abstract system (which agrees with the model).
3. Neither: UNKNOWN, with the reason.

The abstract system has no bound on messages, faults or guard identities, so
a PROVED verdict holds for any number of them (docs/proofs.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import z3

from .claims import CLAIMS, Claim, trapped
from .encoding import NOT, Env, default_state
from .invariants import LEMMAS, REFERENCE_FIXED
from .system import System, Trace, bmc

PROVED = "PROVED"
COUNTEREXAMPLE = "COUNTEREXAMPLE"
UNKNOWN = "UNKNOWN"

TRAPPED = Claim(
    "no-trapped-session", 9, "state", lambda f: f, "no dead end: nothing can move, nothing hangs, and the session is not settled"
)
PROPERTY_NAMES: tuple[str, ...] = tuple(c.name for c in CLAIMS) + ("no-trapped-session",)
_INITIAL = default_state()


@dataclass
class Result:
    prop: str
    number: int
    status: str
    seconds: float
    method: str
    depth: int | None = None
    detail: str = ""
    trace: Trace | None = None
    known: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "property": self.prop,
            "number": self.number,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "method": self.method,
            "depth": self.depth,
            "detail": self.detail,
            "known": self.known,
            "trace": None if self.trace is None else {
                "steps": self.trace.steps,
                # each state as the fields that differ from the initial state (for `explain`)
                "states": [{k: v for k, v in s.items() if v != _INITIAL.get(k, False)} for s in self.trace.states],
            },
        }


@dataclass
class Report:
    design: str
    mutation: str | None
    results: list[Result]
    lemmas: list[tuple[str, str, float]] = field(default_factory=list)  # name, status, seconds
    seconds: float = 0.0
    build_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.status == PROVED or (r.status == COUNTEREXAMPLE and r.known) for r in self.results)


def _claim(name: str) -> Claim:
    for c in CLAIMS:
        if c.name == name:
            return c
    if name == TRAPPED.name:
        return TRAPPED
    raise KeyError(name)


def _bad(claim: Claim, design: str) -> Any:
    if claim.name == TRAPPED.name:
        return lambda f: trapped(f, design)
    return lambda f: NOT(claim.holds(f))


class Prover:
    """Proves or refutes the properties of one design (optionally weakened)."""

    def __init__(self, design: str, *, mutation: str | None = None, depth: int = 10,
                 timeout: float = 60.0) -> None:
        self.design, self.mutation, self.depth, self.timeout = design, mutation, depth, timeout
        self._inductive: System | None = None
        self._full: System | None = None
        self.lemma_results: list[tuple[str, str, float]] = []
        self._lemmas_ok: bool | None = None
        self.build_seconds = 0.0

    # --- systems ------------------------------------------------------------------------

    def full(self) -> System:
        if self._full is None:
            self._full = System(self.design, Env(), self.mutation)
            self.build_seconds += self._full.build_seconds
        return self._full

    def inductive(self) -> System:
        """reference with the shape lemma's fixed fields (only used if `shape` is proved)."""
        if self._inductive is None:
            self._inductive = System(self.design, Env(), self.mutation, fixed=dict(REFERENCE_FIXED))
            self.build_seconds += self._inductive.build_seconds
        return self._inductive

    # --- induction ----------------------------------------------------------------------

    def _consecution(self, lemmas: list[Any]) -> tuple[z3.Solver, dict[str, Any]]:
        sysm = self.inductive()
        pre: dict[str, Any] = dict(sysm.at(0))
        pre.update(REFERENCE_FIXED)
        post = sysm.at(1)
        solver = z3.Solver()
        solver.set("timeout", int(self.timeout * 1000))
        solver.add(*[lemma.holds(pre) for lemma in lemmas])
        solver.add(sysm.T(pre, post, sysm.rule_at(1)))
        return solver, post

    def lemmas_inductive(self) -> bool:
        """Initiation and consecution of the lemmas (once per prover).

        A lemma that fails is dropped and the rest are checked again, until
        what is left is inductive on its own (Houdini): on a weakened design
        the properties the weakening does not touch are still proved.
        """
        if self._lemmas_ok is not None:
            return self._lemmas_ok
        init = default_state()
        alive = [lemma for lemma in LEMMAS if lemma.holds(init) is True]
        status = {lemma.name: "fails initiation" for lemma in LEMMAS if lemma not in alive}
        seconds = {lemma.name: 0.0 for lemma in LEMMAS}
        # `shape` justifies the fixed pre-state fields: without it nothing is sound here
        changed, rounds = True, 0
        max_rounds = 1 if self.mutation is not None else 4
        while changed and rounds < max_rounds and any(lemma.name == "shape" for lemma in alive):
            changed, rounds = False, rounds + 1
            solver, post = self._consecution(alive)
            for lemma in list(alive):
                started = time.perf_counter()
                solver.push()
                solver.add(NOT(lemma.holds(post)))
                r = solver.check()
                solver.pop()
                seconds[lemma.name] += time.perf_counter() - started
                if r != z3.unsat:
                    status[lemma.name] = "not inductive" if r == z3.sat else "unknown"
                    alive.remove(lemma)
                    changed = True
        if changed or not any(lemma.name == "shape" for lemma in alive):
            alive = []  # not a fixpoint within the rounds allowed: no invariant
        for lemma in LEMMAS:
            self.lemma_results.append((lemma.name, status.get(lemma.name, "inductive") if lemma in alive or lemma.name in status else "dropped", seconds[lemma.name]))
        self._lemmas_ok = bool(alive)
        if alive:
            self._solver, self._post = self._consecution(alive)
        return self._lemmas_ok

    def induction(self, claim: Claim) -> str:
        """'proved', or why not."""
        if self.design != "reference":
            return "no strengthening invariant for this design"
        if not self.lemmas_inductive():
            return "the shape lemma is not inductive here, so no invariant is"
        init = default_state()
        if claim.kind == "step":
            init_ok: Any = True  # no step leads into the initial state
        elif claim.name == TRAPPED.name:
            init_ok = NOT(_bad(claim, self.design)(init))
        else:
            init_ok = claim.holds(init)
        if init_ok is not True:
            return "fails in the initial state"
        self._solver.push()
        self._solver.add(_bad(claim, self.design)(self._post))
        r = self._solver.check()
        self._solver.pop()
        if r == z3.unsat:
            return "proved"
        return "not implied by the invariant" if r == z3.sat else "z3: unknown"

    # --- one property -----------------------------------------------------------------

    def prove(self, name: str) -> Result:
        claim = _claim(name)
        if self.design == "reference":
            self.lemmas_inductive()  # shared by every property; timed per lemma
        started = time.perf_counter()
        known = None
        from ..model import DESIGNS

        if self.mutation is None and self.design in DESIGNS:
            known = DESIGNS[self.design].known.get(name)
        why = self.induction(claim) if self.design == "reference" else "no strengthening invariant for this design"
        if why == "not implied by the invariant":
            dropped = [n for n, s, _ in self.lemma_results if s != "inductive"]
            if dropped:
                why += " (lemmas dropped as not inductive: " + ", ".join(dropped) + ")"
        if why == "proved":
            method = "induction (k=1) with the lemmas of invariants.py"
            if name == TRAPPED.name:
                if self.mutation is not None:
                    method = "induction: no dead end (ranking not checked on a weakened design)"
                else:
                    live = ranking(self.timeout)
                    live.seconds += time.perf_counter() - started - live.seconds
                    if live.status != PROVED:
                        return live
                    method = "no dead end (induction) + ranking function: every run without new input or hangs ends settled"
            return Result(name, claim.number, PROVED, time.perf_counter() - started, method)
        deadline = started + self.timeout
        if self._inductive is not None:
            # First within the reference shape (the relation is already built; a
            # path that keeps every frame in the shape is a path of the full one).
            fixed = REFERENCE_FIXED
            status, depth, trace = bmc(self._inductive, _bad(claim, self.design), self.depth,
                                       deadline=deadline, step_property=claim.kind == "step",
                                       each_frame=lambda f: z3.And(*[f[n] == v for n, v in fixed.items()]))
            if status == "found":
                return Result(name, claim.number, COUNTEREXAMPLE, time.perf_counter() - started,
                              "bounded model checking", depth, trace=trace, known=known)
        status, depth, trace = bmc(self.full(), _bad(claim, self.design), self.depth, deadline=deadline,
                                   step_property=claim.kind == "step")
        seconds = time.perf_counter() - started
        if status == "found":
            return Result(name, claim.number, COUNTEREXAMPLE, seconds, "bounded model checking", depth, trace=trace, known=known)
        detail = f"{why}; no counterexample up to depth {depth}" if status == "none" else f"{why}; search stopped at depth {depth} (time)"
        return Result(name, claim.number, UNKNOWN, seconds, "bounded model checking", depth, detail=detail, known=known)


def prove(design: str, properties: list[str] | None = None, *, mutation: str | None = None,
          depth: int = 10, timeout: float = 60.0) -> Report:
    started = time.perf_counter()
    prover = Prover(design, mutation=mutation, depth=depth, timeout=timeout)
    results = [prover.prove(name) for name in (properties or list(PROPERTY_NAMES))]
    return Report(design, mutation, results, prover.lemma_results, time.perf_counter() - started, prover.build_seconds)


# --- liveness: a ranking function -------------------------------------------------------

#: Remaining internal steps of the task in slot 0, by position (reference: one level).
_TASK_WEIGHT = {1: 5, 2: 4, 3: 3, 5: 3, 6: 2, 7: 1, 8: 1}
#: A pending slot outweighs a whole task run: handing it on starts a task of weight 5.
_PENDING_WEIGHT = 6
#: Remaining steps of a command: C1 3, C2 2, C3 1 (C4 may start a task: +5 < 6 of P).
_COMMAND_WEIGHT = {1: 3, 2: 2, 3: 1}


def rank(f: dict[str, Any]) -> Any:
    """A measure of the work left in a reference session (no new input, no hang)."""
    from .encoding import ITE

    def table(x: Any, weights: dict[int, int]) -> Any:
        out: Any = 0
        for k, w in weights.items():
            out = ITE(x == k, w, out)
        return out

    return (
        table(f["t0_pc"], _TASK_WEIGHT)
        + ITE(f["p"], _PENDING_WEIGHT, 0)
        + ITE(f["nc"] >= 1, table(f["A_pc"], _COMMAND_WEIGHT), 0)
        + ITE(f["nc"] >= 2, table(f["Z_pc"], _COMMAND_WEIGHT), 0)
        + 3 * f["mrun"] + 2 * (f["maw0"] + f["maw1"] + f["maw2"])
        + 2 * f["nbr"] + f["nbs"] + f["ninert"]
    )


def ranking(timeout: float = 60.0) -> Result:
    """SPEC 9 for reference: with no new input and no hung call, every step of the
    system decreases `rank` (>= 0), so every run ends; where it ends nothing can
    move, and by the no-dead-end proof that state is settled."""
    from .claims import hung, quiescent

    started = time.perf_counter()
    sysm = System("reference", Env(internal=True), fixed=dict(REFERENCE_FIXED))
    pre: dict[str, Any] = dict(sysm.at(0))
    pre.update(REFERENCE_FIXED)
    post = sysm.at(1)
    solver = z3.Solver()
    solver.set("timeout", int(timeout * 1000))
    solver.add(*[lemma.holds(pre) for lemma in LEMMAS], NOT(hung(pre)))
    solver.add(sysm.T(pre, post, sysm.rule_at(1)))
    solver.add(z3.Or(rank(post) >= rank(pre), rank(pre) < 0))
    r1 = solver.check()
    s2 = z3.Solver()
    s2.set("timeout", int(timeout * 1000))
    s2.add(*[lemma.holds(pre) for lemma in LEMMAS], NOT(hung(pre)), quiescent(pre), trapped(pre, "reference"))
    r2 = s2.check()
    seconds = time.perf_counter() - started
    if r1 == z3.unsat and r2 == z3.unsat:
        return Result("no-trapped-session", 9, PROVED, seconds,
                      "ranking function (every internal step decreases it) + no dead end")
    why = "a step does not decrease the measure" if r1 == z3.sat else "z3: unknown" if r1 != z3.unsat else "a quiescent state is unsettled"
    return Result("no-trapped-session", 9, UNKNOWN, seconds, "ranking function", detail=why)
