"""The abstraction function: a model `State` (one session) as the fields of `encoding.py`.

`alpha(state, design)` is what the abstract transition relation is checked
against: from a model state `s`, the abstract rules applied to `alpha(s)` must
give exactly `{alpha(s') | s' a model successor of s}` (up to the names of
guard tokens, see `canonical`).  Every field is computed from the state alone,
so the abstraction is a function, which is what makes the abstract system an
over-approximation: each concrete run maps, state by state, to an abstract run.
"""

from __future__ import annotations

from typing import Any

from ..model.properties import holders
from ..model.vocabulary import (
    B_RUNNER as M_B_RUNNER,
)
from ..model.vocabulary import (
    B_SEND as M_B_SEND,
)
from ..model.vocabulary import (
    BYPASS,
    DEAD,
    ORDINARY,
    STOP,
    Message,
    State,
)
from ..model.vocabulary import (
    C_AWAIT as M_C_AWAIT,
)
from ..model.vocabulary import (
    C_RUNNER as M_C_RUNNER,
)
from ..model.vocabulary import (
    C_SEND as M_C_SEND,
)
from ..model.vocabulary import (
    REAP as M_REAP,
)
from .encoding import (
    B_RUNNER,
    B_SEND,
    C_COMMAND,
    C_FAULT,
    C_NONE,
    C_SHUTDOWN,
    F_ALL,
    F_MIXED,
    F_NONE,
    FIELDS,
    H_AWAIT,
    H_RUNNER,
    H_SEND,
    O_DEAD,
    O_NONE,
    O_T0,
    PC_NAMES,
    STEP_FLAGS,
    TOKEN_FIELDS,
    U_CANCEL,
    U_ERROR,
    U_NONE,
    Val,
    default_state,
    ovf_state,
)

_PC = {name: code for code, name in enumerate(PC_NAMES) if code > 0}
_HPC = {M_C_RUNNER: H_RUNNER, M_C_AWAIT: H_AWAIT, M_C_SEND: H_SEND}
_CANCEL = {None: C_NONE, "fault": C_FAULT, "shutdown": C_SHUTDOWN}
_UNWIND = {None: U_NONE, "cancel": U_CANCEL, "error": U_ERROR}


class DoesNotFit(Exception):
    """The state has more objects than the abstraction keeps (it maps to `ovf`)."""


def _fate(msgs: list[Message]) -> int:
    fated = [m.fate is not None for m in msgs]
    if all(fated):
        return F_ALL
    return F_MIXED if any(fated) else F_NONE


def _dmax(state: State, ids: tuple[int, ...]) -> int:
    out = -1
    for m in ids:
        msg = state.messages[m]
        if msg.kind in ORDINARY and msg.during:
            out = max(out, max(msg.during))
    return out


def alpha(state: State, design: str) -> dict[str, Val]:
    """The abstract state of a one-session model state (`ovf_state()` if it does not fit)."""
    try:
        return _alpha(state, design)
    except DoesNotFit:
        return ovf_state()


def _tok(x: int | None) -> int:
    return 0 if x is None else x + 1


def _alpha(state: State, design: str) -> dict[str, Val]:
    if len(state.sessions) != 1:
        raise ValueError("the abstraction describes one session; use Bounds(sessions=1)")
    a: dict[str, Any] = default_state()
    sess = state.sessions[0]
    a["stop"] = state.stopped
    a["nmsg"] = len(state.messages)
    a["nf"] = state.faults_used
    a["lastrun"] = sess.last_run
    held = holders(state)
    a["lost"] = any(m.fate is None and i not in held for i, m in enumerate(state.messages))
    a["twice"] = any(m.runs > 1 for m in state.messages)
    a["G"] = _tok(sess.guard)
    a["gset"] = sess.guard is not None and sess.guard in state.set_guards
    if sess.pending is not None:
        a["p"] = True
        a["plo"], a["phi"] = min(sess.pending), max(sess.pending)
        a["pctl"] = any(state.messages[m].kind in BYPASS for m in sess.pending)
        a["pdmax"] = _dmax(state, sess.pending)

    # tasks: inert reference tasks are counted, the others take the slots in order
    slots = []
    for t in state.tasks:
        top_guard = t.levels[-1].guard
        inert = (
            design == "reference"
            and t.pc == M_REAP
            and sess.owner != t.tid
            and (sess.guard is None or sess.guard != top_guard)
        )
        if inert:
            a["ninert"] += 1
            if any(state.messages[m].fate is None for lv in t.levels for m in lv.event):
                a["ninu"] += 1
        else:
            slots.append(t)
    if len(slots) > 2:
        raise DoesNotFit("three live tasks")
    code = {t.tid: O_T0 + i for i, t in enumerate(slots)}
    if sess.owner is None:
        a["O"] = O_NONE
    elif sess.owner == DEAD:
        a["O"] = O_DEAD
    else:
        a["O"] = code[sess.owner]
    for i, t in enumerate(slots):
        if len(t.levels) > 2:
            raise DoesNotFit("three levels")
        a[f"t{i}_pc"] = _PC[t.pc]
        if t.cancel is not None and t.cancel.startswith("command:"):
            cmd = int(t.cancel.split(":")[1])
            ev = t.levels[-1].event
            a[f"t{i}_cancel"] = C_COMMAND
            a[f"t{i}_crel"] = 0 if all(m < cmd for m in ev) else 1 if all(m > cmd for m in ev) else 2
        else:
            a[f"t{i}_cancel"] = _CANCEL[t.cancel]
        a[f"t{i}_hung"] = t.hung
        a[f"t{i}_unwind"] = _UNWIND[t.unwind]
        a[f"t{i}_nlev"] = len(t.levels)
        for j, lv in enumerate(t.levels):
            msgs = [state.messages[m] for m in lv.event]
            p = f"t{i}_l{j}_"
            a[p + "lo"], a[p + "hi"] = min(lv.event), max(lv.event)
            a[p + "ord"] = msgs[0].kind in ORDINARY
            a[p + "fate"] = _fate(msgs)
            a[p + "ran"] = msgs[0].runs > 0
            a[p + "dmax"] = _dmax(state, lv.event)
            a[p + "g"] = _tok(lv.guard)
            a[p + "gs"] = lv.guard is not None and lv.guard in state.set_guards
            if lv.popped is not None:
                a[p + "pop"] = True
                a[p + "plo"], a[p + "phi"] = min(lv.popped), max(lv.popped)
                a[p + "pdmax"] = _dmax(state, lv.popped)

    def target(tid: int | None) -> int:
        if tid is None:
            return O_NONE
        return code.get(tid, O_DEAD)

    commands = sorted((h for h in state.handlers if h.pc in _HPC), key=lambda h: h.mid)
    a["nc"] = len(commands)
    if len(commands) > 2 and design != "reference":
        raise DoesNotFit("three commands in flight")
    named = [("A", commands[0])] if commands else []
    if len(commands) >= 2:
        named.append(("Z", commands[-1]))
    for c, h in named:
        a[f"{c}_pc"] = _HPC[h.pc]
        a[f"{c}_mid"] = h.mid
        a[f"{c}_old"], a[f"{c}_cg"] = _tok(h.old), _tok(h.cg)
        a[f"{c}_olds"] = h.old is not None and h.old in state.set_guards
        a[f"{c}_cgs"] = h.cg is not None and h.cg in state.set_guards
        a[f"{c}_tgt"] = target(h.target)
        a[f"{c}_hung"] = h.hung
        a[f"{c}_kstop"] = state.messages[h.mid].kind == STOP
    for h in commands[1:-1]:
        if h.pc == M_C_RUNNER:
            a["mrun"] += 1
        elif h.pc == M_C_AWAIT and target(h.target) <= O_T0:
            a[f"maw{target(h.target)}"] += 1
        else:
            raise DoesNotFit("a middle command the abstraction does not keep")
    for h in state.handlers:
        if h.pc not in (M_B_RUNNER, M_B_SEND):
            continue
        if state.messages[h.mid].kind == STOP:
            if a["bs_pc"]:
                raise DoesNotFit("two bypass /stops")
            a["bs_pc"] = B_RUNNER if h.pc == M_B_RUNNER else B_SEND
            a["bs_hung"] = h.hung
            a["bs_mid"] = h.mid
        elif h.hung:
            a["nbh"] += 1
        elif h.pc == M_B_RUNNER:
            a["nbr"] += 1
        else:
            a["nbs"] += 1
    return canonical(a)


def canonical(a: dict[str, Val]) -> dict[str, Val]:
    """Guard tokens renamed by first appearance (in `TOKEN_FIELDS` order), `ng` next."""
    out = dict(a)
    names: dict[int, int] = {}
    for f, _ in TOKEN_FIELDS:
        x = out[f]
        if x != 0 and x not in names:
            names[x] = len(names) + 1
    for f, _ in TOKEN_FIELDS:
        out[f] = names.get(out[f], 0)
    out["ng"] = len(names) + 1
    return out


def key(a: dict[str, Val], flags: bool = True) -> tuple[Any, ...]:
    """A hashable form of a canonical abstract state (with its step facts)."""
    fields = [a[f] for f, _ in FIELDS]
    if flags:
        fields += [bool(a.get(f, False)) for f in STEP_FLAGS]
    return tuple(fields)
