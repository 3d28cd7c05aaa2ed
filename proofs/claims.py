"""The safety properties of SPEC 5 as predicates of abstract states and steps.

Each state property is a function of one frame; each step property reads the
step facts `v_*` of the frame a step leads to (set by the rules exactly when
the model's step check fails, as the agreement test shows).  No property
claims anything of the overflow state `ovf`: a state the abstraction cannot
describe is never a counterexample; the reference proofs show it unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .encoding import (
    AND,
    B_NONE,
    H_AWAIT,
    NOT,
    NOTASK,
    O_DEAD,
    O_T0,
    O_T1,
    OR,
    REAP,
    SLOTS,
    START,
)

Frame = dict[str, Any]


def working(f: Frame, i: int) -> Any:
    pc = f[f"t{i}_pc"]
    return AND(pc != NOTASK, pc != START, pc != REAP)


def any_task(f: Frame) -> Any:
    return OR(f["t0_pc"] != NOTASK, f["t1_pc"] != NOTASK, f["ninert"] > 0)


@dataclass(frozen=True)
class Claim:
    """A property of SPEC 5 on the abstract system."""

    name: str
    number: int
    kind: str  # "state" or "step"
    holds: Callable[[Frame], Any]  # of the state (state) or of the state a step led to (step)
    text: str


def _one_worker(f: Frame) -> Any:
    return NOT(AND(working(f, 0), working(f, 1)))


def _no_unguarded(f: Frame) -> Any:
    return OR(f["stop"], f["G"] != 0, AND(*[NOT(working(f, i)) for i in SLOTS]))


def _no_orphan(f: Frame) -> Any:
    return OR(f["stop"], f["G"] == 0, any_task(f), f["nc"] > 0, f["O"] == O_DEAD)


def _nothing_lost(f: Frame) -> Any:
    return AND(NOT(f["lost"]), NOT(f["twice"]))


def _control(f: Frame) -> Any:
    return NOT(f["pctl"])


def _step(flag: str) -> Callable[[Frame], Any]:
    return lambda f: NOT(f[flag])


CLAIMS: tuple[Claim, ...] = (
    Claim("one-worker", 1, "state", _one_worker, "no two task slots are past their first step and not done"),
    Claim("no-unguarded-worker", 2, "state", _no_unguarded, "a working task implies G[k] present (or shut down)"),
    Claim("no-orphan-guard", 3, "state", _no_orphan, "G[k] present implies a task, a command in flight, or a finished owner"),
    Claim("release-by-owner", 4, "step", _step("v_release"), "no task or command changes a guard it did not install or get"),
    Claim("nothing-lost", 5, "state", _nothing_lost, "no message without a fate that nobody holds; none run twice"),
    Claim("order", 6, "step", _step("v_order"), "the runner never gets an ordinary message older than one it got before"),
    Claim("handoff", 7, "step", _step("v_handoff"), "no follow-up reaches the runner while a command it arrived during is in flight"),
    Claim("control-never-waits", 8, "state", _control, "the pending slot never holds a control input"),
    Claim("stop-works", 10, "step", _step("v_stop"), "when /stop's handling ends, no task works on an older message and G[k] is not stranded"),
    Claim("dead-lock-heals", 11, "step", _step("v_heal"), "a message arriving at a dead guard is not queued"),
)
BY_NAME = {c.name: c for c in CLAIMS}


def quiescent(f: Frame) -> Any:
    """No internal step is enabled (no task, callback or handler can move)."""
    movers = []
    for i in SLOTS:
        pc = f[f"t{i}_pc"]
        movers.append(AND(pc != NOTASK, OR(f[f"t{i}_cancel"] != 0, NOT(f[f"t{i}_hung"]))))
    movers.append(f["ninert"] > 0)
    for c, present in (("A", f["nc"] >= 1), ("Z", f["nc"] >= 2)):
        movers.append(AND(present, NOT(f[f"{c}_hung"])))  # over-approximates `ready`
    movers += [f["mrun"] > 0, f["maw0"] + f["maw1"] + f["maw2"] > 0, f["nbr"] > 0, f["nbs"] > 0]
    movers.append(AND(f["bs_pc"] != B_NONE, NOT(f["bs_hung"])))
    return NOT(OR(*movers))


def hung(f: Frame) -> Any:
    return OR(f["t0_hung"], f["t1_hung"], f["A_hung"], f["Z_hung"], f["nbh"] > 0, f["bs_hung"])


def trapped(f: Frame, design: str) -> Any:
    """A dead end of SPEC 9: nothing can move, nothing hangs, and yet the session is not
    settled (a pending follow-up nobody will run, a lost message, or a guard that
    answers every new message as busy).  A sufficient witness of a no-trapped-session
    violation, which bounded search can find; hung traps need the liveness check."""
    heals = f["O"] == O_DEAD if design == "seed" else False
    if design == "reference":
        heals = OR(AND(f["O"] == O_T0, f["t0_pc"] == REAP), AND(f["O"] == O_T1, f["t1_pc"] == REAP))
    busy = AND(NOT(f["stop"]), f["G"] != 0, NOT(heals))
    return AND(NOT(f["ovf"]), quiescent(f), NOT(hung(f)), OR(f["p"], f["lost"], busy))


__all__ = ["CLAIMS", "BY_NAME", "Claim", "H_AWAIT", "trapped", "quiescent", "hung"]
