"""The strengthening invariants of `reference`, each named and each with its reason.

The safety properties of SPEC 5 are not inductive on their own: a state that
satisfies them may still be one step away from a violation (for instance a
command about to release the guard while the old task still runs).  The
lemmas below describe the reachable states of `reference` closely enough that
their conjunction `Inv` is inductive (initiation: the initial state satisfies
it; consecution: Inv(s) and T(s, s') imply Inv(s')), and that every property
follows from it.  Each lemma is a sentence about the design, not an artefact
of the solver; the reason says which rule keeps it true.

Frames are dicts of z3 terms (see system.py); `t0` is the one task slot a
reachable `reference` state can use (lemma `shape`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .encoding import (
    AND,
    C_COMMAND,
    C_NONE,
    F_ALL,
    F_NONE,
    FIELDS,
    H_AWAIT,
    H_NONE,
    H_RUNNER,
    H_SEND,
    LEVELS,
    NOT,
    NOTASK,
    O_DEAD,
    O_NONE,
    O_T0,
    OR,
    REAP,
    RUNNER,
    START,
    TOKEN_FIELDS,
    U_CANCEL,
)

Frame = dict[str, Any]


@dataclass(frozen=True)
class Lemma:
    name: str
    holds: Callable[[Frame], Any]
    why: str


def IMP(a: Any, b: Any) -> Any:
    return OR(NOT(a), b)


#: Pre-state fields that `reference` never uses (lemma `shape` proves it).
REFERENCE_FIXED: dict[str, Any] = {
    n: (False if ty is bool else 0)
    for n, ty in FIELDS
    if n.startswith("t1_") or n.startswith("t0_l1_") or n.startswith("bs_") or n in ("A_hung", "Z_hung", "ovf")
}


def present(f: Frame) -> Any:
    return f["t0_pc"] != NOTASK


def live(f: Frame) -> Any:
    """Task slot 0 holds a task that has not finished (it can still work)."""
    return AND(f["t0_pc"] != NOTASK, f["t0_pc"] != REAP)


def latest_cg(f: Frame) -> Any:
    from .encoding import ITE

    return ITE(f["nc"] >= 2, f["Z_cg"], f["A_cg"])


def _cmd(c: str, f: Frame) -> Any:
    return f["nc"] >= (1 if c == "A" else 2)


def _shape(f: Frame) -> Any:
    return AND(*[f[n] == v for n, v in REFERENCE_FIXED.items()])


def _ranges(f: Frame) -> Any:
    pc = f["t0_pc"]
    return AND(
        OR(*[pc == v for v in (NOTASK, START, RUNNER, 3, 5, 6, 7, REAP)]),
        f["t0_cancel"] >= 0, f["t0_cancel"] <= C_COMMAND,
        f["t0_unwind"] >= 0, f["t0_unwind"] <= 2,
        f["t0_l0_fate"] >= 0, f["t0_l0_fate"] <= 2,
        OR(f["O"] == O_NONE, f["O"] == O_DEAD, f["O"] == O_T0),
    )


def _counters(f: Frame) -> Any:
    middle = f["mrun"] + f["maw0"] + f["maw1"] + f["maw2"]
    return AND(
        f["ninu"] >= 0, f["ninert"] >= f["ninu"], f["nbr"] >= 0, f["nbs"] >= 0, f["nbh"] >= 0,
        f["mrun"] >= 0, f["maw0"] >= 0, f["maw1"] >= 0, f["maw2"] >= 0, f["nc"] >= 0,
        IMP(f["nc"] <= 2, middle == 0), IMP(f["nc"] > 2, middle == f["nc"] - 2),
    )


def _tokens(f: Frame) -> Any:
    parts = [f["ng"] >= 1]
    for tok, flag in TOKEN_FIELDS:
        parts += [f[tok] >= 0, f[tok] < f["ng"], IMP(f[tok] == 0, NOT(f[flag]))]
    for k, (t1, s1) in enumerate(TOKEN_FIELDS):
        for t2, s2 in TOKEN_FIELDS[k + 1:]:
            parts.append(IMP(AND(f[t1] == f[t2], f[t1] != 0), f[s1] == f[s2]))
    return AND(*parts)


def _slot_zero(f: Frame) -> Any:
    parts = [f[n] == 0 for n in ("t0_cancel", "t0_crel", "t0_unwind", "t0_nlev", "t0_l0_lo", "t0_l0_hi",
                                 "t0_l0_fate", "t0_l0_dmax", "t0_l0_g")]
    parts += [NOT(f[n]) for n in ("t0_hung", "t0_l0_ord", "t0_l0_ran", "t0_l0_gs")]
    never = AND(NOT(f["t0_l0_pop"]), f["t0_l0_plo"] == 0, f["t0_l0_phi"] == 0, f["t0_l0_pdmax"] == 0)
    return AND(never, IMP(NOT(present(f)), AND(*parts)))


def _cmd_zero(c: str) -> Callable[[Frame], Any]:
    def holds(f: Frame) -> Any:
        parts = [f[f"{c}_{n}"] == 0 for n in ("pc", "mid", "old", "cg", "tgt")]
        parts += [NOT(f[f"{c}_{n}"]) for n in ("olds", "cgs", "kstop")]
        return IMP(NOT(_cmd(c, f)), AND(*parts))

    return holds


def _task_form(f: Frame) -> Any:
    return IMP(present(f), AND(
        f["t0_nlev"] == 1, f["t0_l0_g"] != 0, NOT(f["t0_l0_pop"]), f["t0_l0_lo"] >= 0,
        f["t0_l0_lo"] <= f["t0_l0_hi"], f["t0_l0_hi"] < f["nmsg"],
        OR(f["t0_l0_ord"], f["t0_l0_lo"] == f["t0_l0_hi"]),
        f["t0_l0_dmax"] < f["t0_l0_hi"],
    ))


def _progress(f: Frame) -> Any:
    pc = f["t0_pc"]
    fresh = OR(pc == START, pc == REAP)
    return IMP(present(f), AND(
        f["t0_l0_ran"] == NOT(fresh),
        IMP(OR(pc == START, pc == RUNNER), f["t0_l0_fate"] == F_NONE),
        IMP(AND(pc != START, pc != RUNNER), f["t0_l0_fate"] == F_ALL),
        IMP(pc == START, f["t0_l0_lo"] > f["lastrun"]),
        IMP(pc == REAP, AND(f["t0_cancel"] == C_NONE, NOT(f["t0_hung"]), f["t0_unwind"] == 0)),
        IMP(f["t0_cancel"] == C_COMMAND, f["t0_crel"] == 0),
        IMP(f["t0_cancel"] != C_COMMAND, f["t0_crel"] == 0),
        IMP(f["t0_hung"], OR(pc == RUNNER, pc == 3, pc == 5, pc == 7)),
        IMP(f["t0_unwind"] != 0, OR(pc == 6, pc == 7)),
    ))


def _pending(f: Frame) -> Any:
    return AND(
        IMP(NOT(f["p"]), AND(f["plo"] == 0, f["phi"] == 0, NOT(f["pctl"]), f["pdmax"] == -1)),
        IMP(f["p"], AND(f["plo"] >= 0, f["plo"] <= f["phi"], f["phi"] < f["nmsg"], f["plo"] > f["lastrun"],
                        f["pdmax"] < f["phi"], f["G"] != 0)),
        IMP(AND(f["p"], present(f)), f["plo"] > f["t0_l0_hi"]),
        f["lastrun"] < f["nmsg"], f["lastrun"] >= -1,
    )


def _owner(f: Frame) -> Any:
    return AND(
        OR(f["O"] == O_NONE, f["O"] == O_T0),
        IMP(f["O"] == O_T0, present(f)),
        IMP(AND(NOT(f["stop"]), present(f)), f["O"] == O_T0),
    )


def _stopped(f: Frame) -> Any:
    return IMP(f["stop"], AND(
        f["G"] == 0, NOT(f["p"]), f["O"] == O_NONE, f["t0_pc"] != REAP,
        IMP(live(f), OR(f["t0_cancel"] == 2, f["t0_unwind"] == U_CANCEL)),
    ))


def _guard_holder(f: Frame) -> Any:
    """Who holds G[k]: the latest command, else the task it was made for."""
    return AND(
        IMP(AND(NOT(f["stop"]), f["nc"] >= 1), f["G"] == latest_cg(f)),
        IMP(AND(NOT(f["stop"]), f["nc"] == 0, f["G"] != 0), AND(present(f), f["G"] == f["t0_l0_g"])),
        IMP(AND(NOT(f["stop"]), live(f)), f["G"] != 0),
        IMP(AND(f["nc"] == 0, live(f), NOT(f["stop"])), f["G"] == f["t0_l0_g"]),
    )


def _commands(f: Frame) -> Any:
    parts = []
    for c in ("A", "Z"):
        pc, tgt = f[f"{c}_pc"], f[f"{c}_tgt"]
        parts.append(IMP(_cmd(c, f), AND(
            pc >= H_RUNNER, pc <= H_SEND, f[f"{c}_cg"] != 0, f[f"{c}_mid"] < f["nmsg"], f[f"{c}_mid"] >= 0,
            OR(tgt == O_NONE, tgt == O_DEAD, tgt == O_T0),
            IMP(pc == H_RUNNER, tgt == O_NONE),
            IMP(tgt == O_T0, present(f)),
            IMP(present(f), f["t0_l0_hi"] < f[f"{c}_mid"]),
            IMP(f["p"], f["pdmax"] <= f["Z_mid"] if c == "Z" else True),
            IMP(AND(pc == H_AWAIT, tgt != O_T0, NOT(f["stop"])), NOT(live(f))),
            IMP(AND(pc == H_SEND, NOT(f["stop"])), NOT(live(f))),
            IMP(AND(pc == H_AWAIT, tgt == O_T0, f["t0_pc"] != REAP, NOT(f["stop"])),
                OR(f["t0_cancel"] != C_NONE, f["t0_unwind"] == U_CANCEL, f["t0_pc"] >= 6)),
        )))
    parts.append(IMP(f["nc"] >= 2, AND(f["A_mid"] < f["Z_mid"], f["Z_pc"] != H_SEND, f["Z_cg"] != f["A_cg"])))
    parts.append(IMP(f["nc"] >= 1, f["A_cg"] != f["t0_l0_g"]))
    parts.append(IMP(f["nc"] >= 2, f["Z_cg"] != f["t0_l0_g"]))
    parts.append(IMP(AND(f["maw0"] + f["maw1"] > 0, NOT(f["stop"])), NOT(live(f))))
    parts.append(IMP(f["maw2"] > 0, present(f)))
    parts.append(IMP(AND(f["A_pc"] == H_NONE, f["nc"] >= 1), False))
    return AND(*parts)


def _inert(f: Frame) -> Any:
    return f["ninu"] == 0


def _no_flags(f: Frame) -> Any:
    return AND(NOT(f["lost"]), NOT(f["twice"]), NOT(f["pctl"]))


LEMMAS: tuple[Lemma, ...] = (
    Lemma("shape", _shape, "at most one task slot, one level, no bypass /stop and no hung command are ever used: start() is only called when no other task is live (the old owner, if any, is done and becomes inert), process() never nests (R1), /stop is never a bypass, and command awaits are bounded (R5)"),
    Lemma("ranges", _ranges, "every code field holds one of the values reference uses (no P3 in-band cleanup: R1)"),
    Lemma("counters", _counters, "counts are never negative; the middle counters count exactly the commands between the earliest and the latest"),
    Lemma("tokens", _tokens, "every guard token in use is below the next fresh one, and equal tokens agree on whether their event is set (they are one Event)"),
    Lemma("slot-zero", _slot_zero, "an empty task slot has all fields zero (the canonical form)"),
    Lemma("command-zero-A", _cmd_zero("A"), "no earliest command, no fields"),
    Lemma("command-zero-Z", _cmd_zero("Z"), "no latest command, no fields"),
    Lemma("task-form", _task_form, "a task holds one event of older messages, sorted, with its own guard (R4); every command its messages arrived during is older than they are"),
    Lemma("task-progress", _progress, "the runner has seen the event exactly after P1; the event has a fate exactly after the runner returned or the task was cancelled (a command only cancels older messages); a task waiting for its done-callback has nothing pending"),
    Lemma("pending", _pending, "the pending slot holds sorted follow-ups newer than everything the runner has seen and newer than the task's event, only while a guard is installed"),
    Lemma("owner", _owner, "O[k] names the task in slot 0 whenever one exists (before shutdown), and is never DEAD: every task clears its owner record in F2 or its done-callback (R3)"),
    Lemma("stopped", _stopped, "after shutdown no guard, no pending slot, no owner, and no task waits for a done-callback that would still act"),
    Lemma("guard-holder", _guard_holder, "G[k] is the latest command's guard while a command is in flight, else the task's own guard; a live task always has a guard installed"),
    Lemma("commands", _commands, "commands are newer than the task's event; a command past C2 that targets no task, or at C3, has no live task beside it (it waited for its target, R5); a targeted task is being cancelled"),
    Lemma("inert", _inert, "inert tasks (finished, waiting only for their done-callback) hold no message without a fate"),
    Lemma("ghosts", _no_flags, "no message has been lost or run twice, and no control input is pending"),
)
BY_NAME = {lemma.name: lemma for lemma in LEMMAS}

__all__ = ["LEMMAS", "BY_NAME", "Lemma", "REFERENCE_FIXED", "LEVELS", "H_AWAIT"]
