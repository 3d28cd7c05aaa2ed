"""A Promela model of a design at one bound, for Spin.

`generate(design_name, bounds)` writes the rules of `prefix`, `seed` or
`reference` (the same rules as `design.py` and the design modules, step by
step) as a Promela model that Spin can check on its own.  It exists to
compare the two checkers on the same state space: built so that Spin's
"states, stored" equals the number of states our checker finds with its
reductions off (`--no-symmetry --no-merge-history`).  docs/spin.md tells how.

How one model step becomes one Spin state:

* One process runs a loop whose body is one `atomic` block: an `if` offers
  every enabled step as a tiny `d_step` that only records which step it is
  (`sc_act`) and for whom (`sc_ti`: a task slot, `sc_hi`: a handler,
  `sc_ak`/`sc_akind`: an arrival), then a row of `d_step`s runs that step's
  rule, canonicalises the state and judges the properties (Spin allows only
  so many jump targets in one d_step).  Spin stores no state inside an atomic block, so
  the states it stores are exactly the states at the loop head, one per
  model state; the process counter there is always the same.
* Everything that is not part of our `State` (the step chosen, scratch
  values (`sc_*`), the property flags) is a `hidden` global: Spin leaves
  hidden variables out of the state vector.
* The state layout is a bijection with `State`: tasks sit in slots
  `0..nt-1` in the order `World.freeze()` numbers them (task ids are their
  slots), handlers in the slot of the message they handle (handlers are
  created at arrival, so their order is message order), events, pending
  slots and `during` are bit sets (they are always in arrival order), and
  guards are renamed by first use exactly as `World.freeze()` does.
  Unused slots are all zero.  `extra` (recovery /stops) is always 0 in the
  main search and is left out.

Encodings (0 always means "none"): a guard token g >= 1 (set_guards is a bit
set over tokens); a task reference is 1 for DEAD or 2 + slot; last_run is
stored plus one.

The safety properties of SPEC section 5 are assertions: state invariants
after each step, step invariants on what the step did (the guards it
changed, the events it gave the runner), both checked inside the step.  Each
property is reported once (a hidden flag), so `pan -c0 -e` lists every
violated property once and writes one trail for each.  Liveness (property
9) is left out: it needs the recovery /stop of a hung session, which is a
search of its own in our checker (see checker.py), not a plain never claim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from . import DESIGNS
from .properties import PROPERTIES, Invariant, StepInvariant
from .vocabulary import (
    CLEANUP_CANCELLED,
    CLEANUP_HANGS,
    CLEANUP_RAISES,
    KINDS,
    RUNNER_HANGS,
    RUNNER_RAISES,
    SEND_HANGS,
    SEND_RAISES,
    SHUTDOWN,
    TASK_CANCELLED,
    Bounds,
)

#: The designs the generator knows; each is a set of rule variants below.
DESIGN_NAMES = ("prefix", "seed", "reference")
#: The safety properties, in SPEC order, as they are named in the assertions.
SAFETY = tuple(p.name for p in PROPERTIES if isinstance(p, (Invariant, StepInvariant)))
#: Guard tokens are bits of an int; the states of any bound we check use far fewer.
TOKENS = 30

KIND_CODE = {kind: i + 1 for i, kind in enumerate(KINDS)}
#: Task positions (vocabulary.py), as numbers.
TASK_PC = {"start": 1, "P1:runner": 2, "P2:send": 3, "P3:cleanup": 4, "E1:send-error": 5,
           "F1:typing": 6, "F1:hooks": 7, "done:callback": 8}
HANDLER_PC = {"B1:runner": 1, "B2:send": 2, "C1:runner": 3, "C2:await-owner": 4, "C3:send": 5}
#: Faults that strike an await of a task or a handler: the act number of each.
AWAIT_FAULTS = (RUNNER_RAISES, RUNNER_HANGS, SEND_RAISES, SEND_HANGS, CLEANUP_RAISES,
                CLEANUP_CANCELLED, CLEANUP_HANGS)
HANG = {RUNNER_HANGS, SEND_HANGS, CLEANUP_HANGS}
#: Where each await fault can strike (design.FAULTS_AT, by kind of await).
TASK_FAULT_PCS: dict[str, tuple[str, ...]] = {
    RUNNER_RAISES: ("RUNNER",), RUNNER_HANGS: ("RUNNER",),
    SEND_RAISES: ("SEND_REPLY", "SEND_ERROR"), SEND_HANGS: ("SEND_REPLY", "SEND_ERROR"),
    CLEANUP_RAISES: ("HOOKS",), CLEANUP_CANCELLED: ("HOOKS",), CLEANUP_HANGS: ("HOOKS",),
}
HANDLER_FAULT_PCS: dict[str, tuple[str, ...]] = {
    RUNNER_RAISES: ("B_RUNNER", "C_RUNNER"), RUNNER_HANGS: ("B_RUNNER", "C_RUNNER"),
    SEND_RAISES: ("B_SEND", "C_SEND"), SEND_HANGS: ("B_SEND", "C_SEND"),
}


class PromelaError(ValueError):
    """The bound or design cannot be written as Promela (one line, says why)."""


def _flag(fault: str) -> str:
    return fault.upper().replace("-", "_")


def generate(design: str, bounds: Bounds) -> str:
    """The Promela model of `design` at `bounds` (see the module docstring)."""
    if design not in DESIGN_NAMES:
        raise PromelaError(f"unknown design {design!r}: use one of {', '.join(DESIGN_NAMES)}")
    if not 1 <= bounds.messages <= 8:
        raise PromelaError(f"--messages {bounds.messages} cannot be exported: use 1 to 8 (events are byte bit sets)")
    if not 1 <= bounds.sessions <= 4:
        raise PromelaError(f"--sessions {bounds.sessions} cannot be exported: use 1 to 4")
    return _Writer(design, bounds).model()


class _Writer:
    def __init__(self, design: str, bounds: Bounds) -> None:
        self.design = design
        self.b = bounds
        self.M = bounds.messages
        self.S = bounds.sessions
        # Every task and every level of a task holds at least one message of
        # its own, so M of each is enough; create_task asserts it.
        self.T = bounds.messages
        self.L = bounds.messages
        self.owners = design in ("seed", "reference")  # O[k], heal, the C1..C4 handoff
        self.ref = design == "reference"
        self.inline_followup = not self.ref  # P3 pops the pending slot into the same task
        # Read from the design itself, so that the two cannot drift apart.
        rules = DESIGNS[design]
        self.swallow = tuple(sorted(_pc_name(pc) for pc in rules.swallows_cancel))
        self.bounded = tuple(sorted(_pc_name(pc) for pc in rules.bounded_awaits))

    # --- small helpers --------------------------------------------------------------

    def each_msg(self, body: Callable[[int], str]) -> str:
        return "\n".join(body(m) for m in range(self.M))

    def each_task(self, body: Callable[[int], str]) -> str:
        return "\n".join(body(i) for i in range(self.T))

    def each_session(self, body: Callable[[int], str]) -> str:
        return "\n".join(body(k) for k in range(self.S))

    # --- the model ----------------------------------------------------------------------

    def model(self) -> str:
        # Task acts first, handler acts last: `sc_act >= H_RESUME` means "a handler moves".
        acts = ["ARRIVE", "RESUME", "DELIVER_CANCEL", "CANCEL_TASK", "SHUTDOWN_ALL"]
        acts += [f"T_{_flag(f)}" for f in AWAIT_FAULTS] + ["H_RESUME"] + [f"H_{_flag(f)}" for f in HANDLER_FAULT_PCS]
        act_defs = "\n".join(f"#define {a} {i + 1}" for i, a in enumerate(acts))
        kinds = "\n".join(f"#define K_{k.strip('/').upper()} {c}" for k, c in KIND_CODE.items())
        tpc = "\n".join(f"#define {_pc_name(n)} {c}" for n, c in TASK_PC.items())
        hpc = "\n".join(f"#define {_pc_name(n)} {c}" for n, c in HANDLER_PC.items())
        flags = "\n".join(f"hidden byte bad_{_c(p)}; hidden byte seen_{_c(p)};" for p in SAFETY)
        return Template(HEADER).substitute(
            design=self.design,
            check=check_command(self.design, self.b),
            bound=(f"{self.M} messages ({','.join(self.b.kinds)}), {self.b.faults} fault(s) "
                   f"({','.join(self.b.fault_kinds)}), {self.S} session(s)"),
            M=self.M, S=self.S, T=self.T, L=self.L, F=self.b.faults, TOKENS=TOKENS,
            kinds=kinds, tpc=tpc, hpc=hpc, acts=act_defs, flags=flags,
        ) + "\n".join([
            self.helpers(),
            self.task_rules(),
            self.handler_rules(),
            self.inbound(),
            self.canonical(),
            self.judge(),
            self.process(),
        ])

    # --- shared vocabulary (world.py) ---------------------------------------------------

    def helpers(self) -> str:
        # Unrolled per message as conditional assignments, not `if`s: Spin allows
        # a d_step only so many jump targets.
        set_fate_all = self.each_msg(lambda m: (
            f"  msg[{m}].fate = ((EV) & {1 << m} && msg[{m}].fate == 0 -> FT : msg[{m}].fate);"))
        set_reply_all = self.each_msg(lambda m: (
            f"  msg[{m}].reply = ((EV) & {1 << m} && (RT == REPLY_OWED || msg[{m}].reply == REPLY_OWED)"
            f" -> RT : msg[{m}].reply);"))
        runs = self.each_msg(lambda m: (
            f"  msg[{m}].runs = ((EV) & {1 << m} -> (msg[{m}].runs < 2 -> msg[{m}].runs + 1 : 2) : msg[{m}].runs);\n"
            f"  sess[K].lrun = ((EV) & {1 << m} && ORDINARY(msg[{m}].kind) && sess[K].lrun < {m + 1}"
            f" -> {m + 1} : sess[K].lrun);"))
        # Property 6: the oldest ordinary message of the event against last_run before the step.
        oldest = "\n".join(
            f"  sc_tt = ((EV) & {1 << m} && ORDINARY(msg[{m}].kind) -> {m} : sc_tt);"
            for m in reversed(range(self.M)))
        discard = self.each_msg(lambda m: (
            f"  msg[{m}].fate = ((EV) & {1 << m} && {m} + CANCEL_COMMAND < sc_org && msg[{m}].fate == 0"
            f" -> FATE_DISCARDED : msg[{m}].fate);"))
        # A reply its levels were about to send is lost with the task.
        drops = "\n".join(
            f"  msg[{m}].reply = (task[X].nlev > {lv} && task[X].rep[{lv}] && (task[X].ev[{lv}] & {1 << m})"
            f" && msg[{m}].reply == REPLY_OWED -> REPLY_DROPPED : msg[{m}].reply);"
            for lv in range(self.L) for m in range(self.M))
        highest = self.each_task(lambda i: f"        if :: task[{i}].pc != 0 -> sc_next = {i + 1} :: else -> skip fi;")
        return Template(HELPERS).substitute(
            highest=highest, clear_task=self.clear_task(),
            set_fate_all=set_fate_all, set_reply_all=set_reply_all, runs=runs, oldest=oldest,
            drops=drops, discard=discard,
        )

    # --- process(e): P1 .. F2, faults and cancellation (design.py and the designs) -------

    def task_rules(self) -> str:
        d = self.design
        out = []
        if self.ref:
            out.append(P1_REFERENCE)
            out.append(P3_REFERENCE)
        else:
            out.append(P1_ADOPT)
            out.append(P3_POP)
        out.append(FINISH[d])
        out.append(CLEANUP_FAULT_REFERENCE if self.ref else CLEANUP_FAULT_PLAIN)
        out.append(BEFORE_START_REFERENCE if self.ref else BEFORE_START_PLAIN)
        out.append(P2)
        swallow = "\n".join(
            f"  :: task[X].pc == {pc} -> {SWALLOWED[pc]}" for pc in self.swallow
        )
        # Exactly one option of an `if` may be true inside a d_step: the cleanup
        # awaits that swallow the cancellation are not cancelled there.
        unwound = " || ".join(f"task[X].pc == {pc}" for pc in ("TYPING", "HOOKS") if pc not in self.swallow)
        cleanup = f"  :: {unwound} -> sc_xc = UNWIND_CANCEL; cleanup_fault(X)"
        out.append(Template(DELIVER_CANCEL).substitute(swallow=swallow, cleanup=cleanup))
        out.append(Template(RESUME).substitute(
            inband=("  :: task[X].pc == INBAND -> after_inband(X)" if self.inline_followup else ""),
            reap=("  :: task[X].pc == REAP -> reap(X)" if self.ref else ""),
        ))
        out.append(TASK_FAULT)
        return "\n".join(out)

    # --- inbound handlers that await: B1/B2 and the handoff C1..C4 --------------------------

    def handler_rules(self) -> str:
        if not self.owners:
            return HANDLERS_BYPASS + HANDOFF_NONE
        out = [HANDLERS_BYPASS, START[self.design], COMMAND_BEGIN]
        out.append(HANDOFF_REFERENCE if self.ref else HANDOFF_SEED)
        return "\n".join(out)

    def inbound(self) -> str:
        return INBOUND[self.design]

    def clear_task(self) -> str:
        fields = ["pc", "session", "nlev", "cancel", "hung", "unwind"]
        return "\n".join(
            [f"  task[I].{f} = 0;" for f in fields]
            + [f"  task[I].{f}[{lv}] = 0;" for lv in range(self.L) for f in ("ev", "lg", "pop", "rep")])

    # --- World.freeze(): slots compacted, guards renamed by first use -------------------------

    def canonical(self) -> str:
        remap = []
        for k in range(self.S):
            remap += [f"  remap_tid(sess[{k}].owner);", f"  remap_tid(sess[{k}].runner);"]
        remap += [f"  remap_tid(hnd[{m}].target);" for m in range(self.M)]
        sc_tmap = self.each_task(lambda i: (
            f"  sc_tmap[{i}] = (task[{i}].pc != 0 -> sc_cnt + 2 : DEAD); sc_cnt = sc_cnt + (task[{i}].pc != 0 -> 1 : 0);"))
        fields = ["pc", "session", "nlev", "cancel", "hung", "unwind"]
        moves = []
        for i in range(self.T):
            copy = " ".join(f"task[sc_cnt].{f} = task[{i}].{f};" for f in fields)
            copy += " " + " ".join(
                f"task[sc_cnt].{f}[{lv}] = task[{i}].{f}[{lv}];"
                for lv in range(self.L) for f in ("ev", "lg", "pop", "rep"))
            moves.append(
                f"  if :: task[{i}].pc != 0 -> if :: sc_cnt != {i} -> {copy} clear_task({i}) :: else -> skip fi; sc_cnt++\n"
                f"     :: else -> clear_task({i}) fi;")
        guard_fields = [f"sess[{k}].guard" for k in range(self.S)]
        guard_fields += [f"task[{i}].lg[{lv}]" for i in range(self.T) for lv in range(self.L)]
        guard_fields += [f for m in range(self.M) for f in (f"hnd[{m}].old", f"hnd[{m}].cg")]
        first_use = "\n".join(f"  map_guard({f});" for f in guard_fields)
        rename = "\n".join(f"  {f} = sc_gmap[{f}];" for f in guard_fields)
        sc_fresh = "\n".join(f"  sc_fresh = ({f} >= sc_fresh -> {f} + 1 : sc_fresh);" for f in guard_fields)
        return Template(CANONICAL).substitute(
            tmap=sc_tmap, remap="\n".join(remap), moves="\n".join(moves), first_use=first_use,
            rename=rename, fresh=sc_fresh,
        )

    # --- the properties (properties.py) ----------------------------------------------------

    def judge(self) -> str:
        """The safety properties, each raising its flag `bad_<name>` (see properties.py)."""
        S, M, T, L = self.S, self.M, self.T, self.L
        lines: list[str] = []

        def flag(prop: str, cond: str) -> None:
            lines.append(f"  bad_{prop} = ({cond} -> 1 : bad_{prop});")

        def alive(k: int | str) -> str:
            return " || ".join(f"(task[{i}].pc != 0 && task[{i}].session == {k})" for i in range(T))

        def commands(k: int | str) -> str:
            return " || ".join(f"(IN_COMMAND(hnd[{m}].pc) && msg[{m}].session == {k})" for m in range(M))

        # 1 one-worker, 2 no-unguarded-worker, 3 no-orphan-guard
        for k in range(S):
            working = " + ".join(
                f"(task[{i}].pc != 0 && task[{i}].session == {k} && task[{i}].pc != START && "
                f"task[{i}].pc != REAP -> 1 : 0)" for i in range(T))
            flag("one_worker", f"({working}) > 1")
            flag("no_unguarded_worker", f"!stopped && sess[{k}].guard == 0 && ({working}) > 0")
            flag("no_orphan_guard", f"!stopped && sess[{k}].guard != 0 && !({alive(k)}) && !({commands(k)}) "
                                    f"&& sess[{k}].owner != DEAD")
        # 5 nothing-lost: held = pending slots, task events and popped follow-ups, handlers
        held = " | ".join(
            [f"sess[{k}].pending" for k in range(S)]
            + [f"task[{i}].{f}[{lv}]" for i in range(T) for lv in range(L) for f in ("ev", "pop")])
        lines.append(f"  sc_held = {held};")
        for m in range(M):
            flag("nothing_lost", f"{m} < nmsg && (msg[{m}].runs > 1 || (msg[{m}].fate == 0 && "
                                 f"!(sc_held & {1 << m}) && hnd[{m}].pc == 0))")
        # 8 control-never-waits
        for k in range(S):
            for m in range(M):
                flag("control_never_waits", f"(sess[{k}].pending & {1 << m}) && BYPASS(msg[{m}].kind)")
        # 7 handoff: an ordinary message given to the runner in this step while a
        # command it arrived during is still in flight after the step.
        lines.append("  sc_held = " + " | ".join(f"(hnd[{c}].pc != 0 -> {1 << c} : 0)" for c in range(M)) + ";")
        for m in range(M):
            flag("handoff", f"(sc_ran & {1 << m}) && ORDINARY(msg[{m}].kind) && (msg[{m}].during & sc_held)")
        # 10 stop-works, on the step of the handler that sent /stop's reply and ended:
        # no task of the session still works on a message the runner had before it,
        # and the session is not left busy with nobody to free it.
        stop_step = ("sc_act >= H_RESUME && !stopped && msg[sc_hi].kind == K_STOP && "
                     "msg[sc_hi].reply == REPLY_SENT && hnd[sc_hi].pc == 0")
        lines.append("  sc_ran_before = (" + stop_step + " -> "
                     + " | ".join(f"({m} < sc_hi && msg[{m}].runs > 0 -> {1 << m} : 0)" for m in range(M))
                     + " : 0);")
        for i in range(T):
            for lv in range(L):
                flag("stop_works", f"task[{i}].pc != 0 && task[{i}].session == msg[sc_hi].session && "
                                   f"(task[{i}].ev[{lv}] & sc_ran_before)")
        for k in range(S):
            flag("stop_works", f"{stop_step} && msg[sc_hi].session == {k} && sess[{k}].guard != 0 && "
                               f"!({alive(k)}) && !({commands(k)}) && sess[{k}].owner != DEAD")
        # 11 dead-lock-heals, on an arrival
        flag("dead_lock_heals", "sc_act == ARRIVE && ORDINARY(sc_akind) && sc_dead0 && "
                                "(sess[sc_ak].pending & (1 << sc_am))")
        # Each property reports once: pan -c0 then lists every violated property.
        report = "\n".join(
            f"  if :: bad_{_c(p)} && !seen_{_c(p)} -> seen_{_c(p)} = 1; assert(!bad_{_c(p)}) :: else -> skip fi;"
            for p in SAFETY)
        return "inline judge() {\n" + "\n".join(lines) + "\n}\ninline report() {\n" + report + "\n}\n"

    # --- the process: every enabled step, then its rule ----------------------------------------

    def process(self) -> str:
        b = self.b
        options = []
        can_fault = "(faults_used < F && !stopped)"
        for k in range(self.S):
            for kind in b.kinds:
                options.append(
                    f"      :: d_step {{ !stopped && nmsg < M -> sc_act = ARRIVE; sc_ak = {k}; sc_akind = {_k(kind)} }}")
        for i in range(self.T):
            options.append(f"      :: d_step {{ task[{i}].pc != 0 && task[{i}].cancel != 0 -> sc_act = DELIVER_CANCEL; sc_ti = {i} }}")
            options.append(
                f"      :: d_step {{ task[{i}].pc != 0 && task[{i}].cancel == 0 && !task[{i}].hung -> sc_act = RESUME; sc_ti = {i} }}")
            for fault in AWAIT_FAULTS:
                if fault not in b.fault_kinds:
                    continue
                at = " || ".join(f"task[{i}].pc == {pc}" for pc in TASK_FAULT_PCS[fault])
                options.append(
                    f"      :: d_step {{ {can_fault} && task[{i}].cancel == 0 && !task[{i}].hung && ({at}) -> "
                    f"sc_act = T_{_flag(fault)}; sc_ti = {i} }}")
        for m in range(self.M):
            ready = f"hnd[{m}].pc != 0 && !hnd[{m}].hung && ready({m})"
            options.append(f"      :: d_step {{ {ready} -> sc_act = H_RESUME; sc_hi = {m} }}")
            for fault, pcs in HANDLER_FAULT_PCS.items():
                if fault not in b.fault_kinds:
                    continue
                if not self.owners:
                    pcs = tuple(p for p in pcs if p.startswith("B"))
                at = " || ".join(f"hnd[{m}].pc == {pc}" for pc in pcs)
                allowed = can_fault
                if fault in HANG and self.bounded:
                    # A hang inside a timeout is seen when it fires, even after a shutdown.
                    inside = " || ".join(f"hnd[{m}].pc == {pc}" for pc in self.bounded)
                    allowed = f"({can_fault} || (faults_used < F && ({inside})))"
                options.append(
                    f"      :: d_step {{ {ready} && {allowed} && ({at}) -> sc_act = H_{_flag(fault)}; sc_hi = {m} }}")
        if TASK_CANCELLED in b.fault_kinds:
            for i in range(self.T):
                options.append(
                    f"      :: d_step {{ {can_fault} && task[{i}].pc != 0 && task[{i}].cancel == 0 && "
                    f"task[{i}].pc != REAP -> sc_act = CANCEL_TASK; sc_ti = {i} }}")
        if SHUTDOWN in b.fault_kinds:
            options.append(f"      :: d_step {{ {can_fault} -> sc_act = SHUTDOWN_ALL }}")
        ready = self.ready()
        hang_pcs = " || ".join(f"hnd[sc_hi].pc == {pc}" for pc in self.bounded) or "false"
        return Template(PROCESS).substitute(options="\n".join(options), ready=ready, bounded=hang_pcs)

    def ready(self) -> str:
        """handler_ready: C2 waits for its target to end (and, in reference, for earlier commands)."""
        target_alive = " || ".join(
            f"(hnd[H].target == {i + 2} && task[{i}].pc != 0 && task[{i}].pc != REAP)" for i in range(self.T))
        cond = f"(hnd[H].pc != C_AWAIT || !({target_alive}))"
        if self.ref:
            earlier = " || ".join(
                f"({m} < H && msg[{m}].session == msg[H].session && IN_COMMAND(hnd[{m}].pc))" for m in range(self.M))
            cond += f" && (hnd[H].pc != C_AWAIT || !({earlier}))"
        task_of = " || ".join(f"(task[{i}].pc != 0 && task[{i}].session == K)" for i in range(self.T))
        command_of = " || ".join(f"(IN_COMMAND(hnd[{m}].pc) && msg[{m}].session == K)" for m in range(self.M))
        during = " | ".join(
            f"(IN_COMMAND(hnd[{m}].pc) && msg[{m}].session == K -> {1 << m} : 0)" for m in range(self.M))
        cancel_all = self.each_task(lambda i: (
            f"  if :: task[{i}].pc != 0 && task[{i}].pc != REAP -> task[{i}].cancel = CANCEL_SHUTDOWN "
            f":: else -> skip fi;"))
        clear = self.each_session(lambda k: (
            f"  set_fate_all(sess[{k}].pending, FATE_SHUT_DOWN);\n"
            f"  set_g({k}, 0); sess[{k}].owner = 0; sess[{k}].pending = 0;"))
        return (
            f"#define ready(H) ({cond})\n"
            f"#define task_of(K) ({task_of})\n"
            f"#define command_of(K) ({command_of})\n"
            f"#define during(K) ({during})\n"
            "/* shutdown cancels every background task and clears G, O and P */\n"
            f"inline shutdown() {{\n  stopped = 1;\n{cancel_all}\n{clear}\n}}\n"
        )


# --- running Spin ---------------------------------------------------------------------------

#: How Spin is run, so that a report can print the exact commands.
SPIN = "spin -a {model}"
CC_COUNT = "gcc {opt} -DSAFETY -DNOREDUCE -o pan pan.c"  # every state: compare with our reductions off
CC_DEFAULT = "gcc {opt} -DSAFETY -o pan pan.c"  # Spin's own partial-order reduction on
#: -c0: go on after an error (each property reports once); -m: depth of the DFS stack
#: (a model step is six atomic steps of Spin); -w24: 16M hash slots.
PAN = "./pan -c0 -m{depth} -w24"


@dataclass
class SpinResult:
    """What one Spin run found, and how long it took."""

    states: int  # "states, stored"
    transitions: int
    violated: set[str]  # safety properties whose assertion failed
    compile_seconds: float  # spin -a and gcc
    search_seconds: float  # ./pan
    output: str = field(repr=False)
    commands: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.compile_seconds + self.search_seconds


class SpinError(RuntimeError):
    """Spin or the C compiler failed, or the search did not complete."""


def spin_available() -> str | None:
    """None if `spin` and `gcc` are on PATH; otherwise what is missing, in words."""
    missing = [tool for tool in ("spin", "gcc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian/Ubuntu: apt-get install -y spin gcc)"
    return None


def run_spin(source: str, *, reduce: bool = False, optimize: bool = True, depth: int = 1_000_000,
             workdir: str | None = None) -> SpinResult:
    """Compile `source` with Spin and search its whole state space.

    With `reduce=False`, Spin's partial-order reduction is off, so every state
    is stored and the count is comparable with ours.  `optimize=False`
    compiles with -O0, which is quicker for a small bound (gcc -O2 takes a
    few seconds on pan.c).  Raises SpinError when a tool fails or the search
    was cut short (a DFS stack too small, memory).
    """
    with tempfile.TemporaryDirectory(prefix="sessionguard-spin-", dir=workdir) as tmp:
        model = Path(tmp) / "model.pml"
        model.write_text(source)
        cc = (CC_DEFAULT if reduce else CC_COUNT).format(opt="-O2" if optimize else "-O0")
        pan = PAN.format(depth=depth)
        commands = [SPIN.format(model="model.pml"), cc, pan]
        started = time.perf_counter()
        for command in commands[:2]:
            _run(command, tmp)
        compiled = time.perf_counter()
        out = _run(pan, tmp)
        searched = time.perf_counter()
    return _parse(out, compiled - started, searched - compiled, commands)


def _run(command: str, cwd: str) -> str:
    env = dict(os.environ, LC_ALL="C")
    done = subprocess.run(command.split(), cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SpinError(f"`{command}` failed (exit {done.returncode}): {' / '.join(tail)}")
    return done.stdout


def _parse(out: str, compile_seconds: float, search_seconds: float, commands: list[str]) -> SpinResult:
    if "max search depth too small" in out:
        raise SpinError("pan's DFS stack was too small: raise the depth (-m)")
    if "out of memory" in out or "search not completed" in out.lower():
        raise SpinError("pan ran out of memory before the search completed")
    stored = re.search(r"^\s*(\d+) states, stored", out, re.M)
    transitions = re.search(r"^\s*(\d+) transitions", out, re.M)
    if stored is None or transitions is None:
        raise SpinError("pan printed no state count: " + " / ".join(out.strip().splitlines()[-3:]))
    by_flag = {f"!(bad_{_c(p)})": p for p in SAFETY}
    violated: set[str] = set()
    for expr in re.findall(r"assertion violated\s+(.*?) \(at depth", out):
        if expr.strip() not in by_flag:
            # A capacity assertion of the model itself (slots, tokens): never a verdict.
            raise SpinError(f"the Promela model broke its own assertion {expr.strip()}: "
                            "the bound is too large for it")
        violated.add(by_flag[expr.strip()])
    return SpinResult(int(stored.group(1)), int(transitions.group(1)), violated,
                      compile_seconds, search_seconds, out, commands)


def check_command(design: str, bounds: Bounds) -> str:
    """The `sessionguard check` command that explores the same states as the export."""
    return (f"sessionguard check --design {design} --messages {bounds.messages} --faults {bounds.faults} "
            f"--sessions {bounds.sessions} --kinds {','.join(bounds.kinds)} "
            f"--fault-kinds {','.join(bounds.fault_kinds)} --no-symmetry --no-merge-history")


def _c(name: str) -> str:
    return name.replace("-", "_")


def _k(kind: str) -> str:
    return "K_" + kind.strip("/").upper()


def _pc_name(pc: str) -> str:
    return {
        "start": "START", "P1:runner": "RUNNER", "P2:send": "SEND_REPLY", "P3:cleanup": "INBAND",
        "E1:send-error": "SEND_ERROR", "F1:typing": "TYPING", "F1:hooks": "HOOKS", "done:callback": "REAP",
        "B1:runner": "B_RUNNER", "B2:send": "B_SEND", "C1:runner": "C_RUNNER", "C2:await-owner": "C_AWAIT",
        "C3:send": "C_SEND",
    }[pc]


# ----------------------------------------------------------------------------------------------
# The templates.  Inline parameters are upper case (X: a task slot, H: a handler slot,
# K: a session, EV: an event bit set); scratch values are hidden globals.

HEADER = """\
/* sessionguard: design $design as Promela, generated by `sessionguard export --promela`.
 * Bound: $bound.
 *
 * One Spin state per model state (docs/spin.md).  Check it with
 *     spin -a FILE && gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -c0 -m1000000
 * "states, stored" then equals the states of
 *     $check
 * and each violated safety property of SPEC 5 fails its assertion !(bad_<name>) once.
 * Liveness (SPEC 9, no-trapped-session) is not in this model.
 */
#define M $M            /* messages */
#define S $S            /* sessions */
#define T $T            /* task slots */
#define L $L            /* process() levels per task */
#define F $F            /* faults */
#define TOKENS $TOKENS  /* guard tokens are bits 1..TOKENS-1 of set_guards */

$kinds
#define ORDINARY(k) ((k) == K_TEXT || (k) == K_PHOTO)
#define RESET_LIKE(k) ((k) == K_STOP || (k) == K_NEW || (k) == K_RESET)
#define BYPASS(k) (RESET_LIKE(k) || (k) == K_APPROVE)

/* task positions */
$tpc
/* handler positions */
$hpc
#define IN_COMMAND(pc) ((pc) >= C_RUNNER)

#define DEAD 1                /* a task reference: 1 = finished, 2 + slot = a live task */
#define CANCEL_FAULT 1
#define CANCEL_SHUTDOWN 2
#define CANCEL_COMMAND 10     /* + the command's message id */
#define UNWIND_CANCEL 1
#define UNWIND_ERROR 2
#define FATE_ANSWERED 1
#define FATE_DISCARDED 2
#define FATE_ABORTED 3
#define FATE_SHUT_DOWN 4
#define REPLY_OWED 1
#define REPLY_SENT 2
#define REPLY_STALE 3
#define REPLY_SEND_FAILED 4
#define REPLY_DROPPED 5

/* the steps */
$acts

typedef SessionRec { byte guard; byte owner; byte pending; byte runner; byte lrun }
typedef TaskRec { byte pc; byte session; byte nlev; byte ev[L]; byte lg[L]; byte pop[L]; bit rep[L];
                  byte cancel; bit hung; byte unwind }
typedef MsgRec { byte kind; byte session; byte runs; byte fate; byte reply; byte during }
typedef HandlerRec { byte pc; byte old; byte cg; byte target; bit hung }

SessionRec sess[S];
TaskRec task[T];
MsgRec msg[M];
HandlerRec hnd[M];   /* the handler of message m, if it awaits */
byte nmsg;
byte nt;             /* tasks alive: slots 0..nt-1 */
byte faults_used;
bit stopped;
int set_guards;      /* bit g: the interrupt of guard g is set */

/* Not part of the state (hidden): the step chosen, scratch, what the step did. */
hidden byte sc_act; hidden byte sc_ti; hidden byte sc_hi; hidden byte sc_ak; hidden byte sc_akind; hidden byte sc_am;
hidden byte sc_oi; hidden byte sc_tn; hidden byte sc_gn; hidden byte sc_pp; hidden byte sc_tt; hidden byte sc_xc;
hidden byte sc_org; hidden byte sc_fresh; hidden byte sc_next; hidden byte sc_cnt; hidden byte sc_gv; hidden byte sc_held; hidden byte sc_ran;
hidden byte sc_ran_before; hidden byte sc_removed; hidden byte sc_agent; hidden byte sc_dead0; hidden int sc_known;
hidden int sc_nsg; hidden byte sc_lrun0[S]; hidden byte sc_gmap[TOKENS]; hidden byte sc_tmap[T]; hidden byte sc_gi;
$flags

"""

HELPERS = """
inline set_fate(MM, FF) { msg[MM].fate = (msg[MM].fate == 0 -> FF : msg[MM].fate) }
inline set_reply(MM, RR) { msg[MM].reply = (RR == REPLY_OWED || msg[MM].reply == REPLY_OWED -> RR : msg[MM].reply) }
inline set_fate_all(EV, FT) {
$set_fate_all
}
inline set_reply_all(EV, RT) {
$set_reply_all
}
/* G[k] = v; release-by-owner: a task or handler may change only a guard it held */
inline set_g(K, V) {
  sc_gv = V;
  if :: sess[K].guard != sc_gv ->
        if :: sc_agent && sess[K].guard != 0 && !(sc_known & (1 << sess[K].guard)) -> bad_release_by_owner = 1
           :: else -> skip fi;
        sess[K].guard = sc_gv
     :: else -> skip fi
}
inline new_guard(G) { G = sc_fresh; sc_fresh++; assert(sc_fresh < TOKENS) }
inline set_interrupt(G) { if :: G != 0 -> set_guards = set_guards | (1 << G) :: else -> skip fi }
inline clear_interrupt(G) { if :: G != 0 -> set_guards = set_guards & ~(1 << G) :: else -> skip fi }
#define is_set(G) ((G) != 0 && (set_guards & (1 << (G))))
/* run_messages: the runner is called with EV */
inline run_messages(K, EV) {
  sc_tt = 255;
$oldest
  if :: sc_tt != 255 && sc_tt + 1 < sc_lrun0[K] -> bad_order = 1 :: else -> skip fi;
  sc_ran = sc_ran | (EV);
$runs
}
#define TOP(X) (task[X].nlev - 1)
inline clear_task(I) {
$clear_task
}
/* create_task: World.create_task numbers a new task 1 + the highest id still
   listed, counted once per step; so a task created after one ended in the same
   step may take the ended task's id (and slot).  Returns its slot in sc_tn. */
inline create_task(K, EV, G) {
  if :: sc_next == 255 ->
        sc_next = 0;
$highest
     :: else -> skip
  fi;
  sc_tn = sc_next; sc_next++;
  assert(sc_tn < T);
  clear_task(sc_tn);
  if :: nt < sc_next -> nt = sc_next :: else -> skip fi;
  task[sc_tn].pc = START; task[sc_tn].session = K; task[sc_tn].nlev = 1; task[sc_tn].ev[0] = EV; task[sc_tn].lg[0] = G
}
/* end_task: it leaves the world (compacted away at the end of the step) */
inline end_task(X) {
  sc_removed = 1;
  if :: sess[task[X].session].owner == X + 2 -> sess[task[X].session].owner = DEAD :: else -> skip fi;
  if :: sess[task[X].session].runner == X + 2 -> sess[task[X].session].runner = 0 :: else -> skip fi;
$drops
  task[X].pc = 0
}
inline pop_level(X) {
  task[X].ev[TOP(X)] = 0; task[X].lg[TOP(X)] = 0; task[X].pop[TOP(X)] = 0; task[X].rep[TOP(X)] = 0;
  task[X].nlev--
}
/* level_return: one activation of process() returns (or raises XC) */
inline level_return(X) {
  pop_level(X);
  task[X].unwind = 0;
  if :: task[X].nlev == 0 -> end_task(X)
     :: else ->
        if :: sc_xc == UNWIND_ERROR -> task[X].pc = SEND_ERROR
           :: else -> task[X].unwind = sc_xc; task[X].pc = TYPING
        fi
  fi
}
inline call_runner(X) {
  run_messages(task[X].session, task[X].ev[TOP(X)]);
  sess[task[X].session].runner = X + 2;
  task[X].pc = RUNNER
}
inline cancelled_fates(EV) {
  if :: sc_org >= CANCEL_COMMAND ->
       /* a command discards only the work older than itself */
$discard
     :: sc_org == CANCEL_SHUTDOWN -> set_fate_all(EV, FATE_SHUT_DOWN)
     :: else -> set_fate_all(EV, FATE_ABORTED)
  fi
}
"""

P1_ADOPT = """
/* P1: g = G.get(k) or a new guard; G[k] = g; await runner(e) */
inline p1(X) {
  if :: sess[task[X].session].guard != 0 -> sc_gn = sess[task[X].session].guard
     :: else -> new_guard(sc_gn) fi;
  set_g(task[X].session, sc_gn);
  task[X].lg[TOP(X)] = sc_gn;
  call_runner(X)
}
"""
P1_REFERENCE = """
/* P1: the task already holds its guard (R4) */
inline p1(X) { call_runner(X) }
"""
P3_POP = """
/* P3: take a follow-up inline, after an in-band cleanup */
inline p3(X) {
  if :: sess[task[X].session].pending != 0 ->
        sc_pp = sess[task[X].session].pending; sess[task[X].session].pending = 0;
        clear_interrupt(sess[task[X].session].guard);
        task[X].pop[TOP(X)] = sc_pp;
        task[X].pc = INBAND
     :: else -> task[X].pc = TYPING
  fi
}
inline after_inband(X) {
  sc_pp = task[X].pop[TOP(X)]; task[X].pop[TOP(X)] = 0;
  task[X].nlev++; assert(task[X].nlev <= L);
  task[X].ev[TOP(X)] = sc_pp;
  p1(X)
}
"""
P3_REFERENCE = """
/* R1: no inline follow-up; straight to the finally */
inline p3(X) { task[X].pc = TYPING }
"""
P2 = """
/* P2: the runner returned a reply; drop it as stale if a follow-up interrupted */
inline p2(X) {
  if :: sess[task[X].session].runner == X + 2 -> sess[task[X].session].runner = 0 :: else -> skip fi;
  set_fate_all(task[X].ev[TOP(X)], FATE_ANSWERED);
  if :: is_set(task[X].lg[TOP(X)]) && sess[task[X].session].pending != 0 ->
        set_reply_all(task[X].ev[TOP(X)], REPLY_OWED);
        set_reply_all(task[X].ev[TOP(X)], REPLY_STALE);
        p3(X)
     :: else ->
        set_reply_all(task[X].ev[TOP(X)], REPLY_OWED);
        task[X].rep[TOP(X)] = 1;
        task[X].pc = SEND_REPLY
  fi
}
"""

FINISH = {
    "prefix": """
/* F2 (prefix): drain a late arrival into a new task, else delete G[k] unconditionally */
inline finish(X) {
  if :: sess[task[X].session].pending != 0 ->
        sc_pp = sess[task[X].session].pending; sess[task[X].session].pending = 0;
        clear_interrupt(sess[task[X].session].guard);
        create_task(task[X].session, sc_pp, 0)
     :: else -> set_g(task[X].session, 0)
  fi
}
""",
    "seed": """
inline release(K, G) { if :: G == 0 || sess[K].guard == G -> set_g(K, 0) :: else -> skip fi }
/* F2 (seed): drain into a recorded owner, or clear our owner record and release our guard */
inline finish(X) {
  if :: sess[task[X].session].pending != 0 ->
        sc_pp = sess[task[X].session].pending; sess[task[X].session].pending = 0;
        clear_interrupt(sess[task[X].session].guard);
        create_task(task[X].session, sc_pp, 0);
        sess[task[X].session].owner = sc_tn + 2
     :: else ->
        if :: sess[task[X].session].owner == X + 2 -> sess[task[X].session].owner = 0 :: else -> skip fi;
        release(task[X].session, task[X].lg[TOP(X)])
  fi
}
""",
    "reference": """
/* start(e, k) (reference): a fresh guard handed to a new task, recorded as owner */
inline start(K, EV) {
  new_guard(sc_gn); set_g(K, sc_gn); create_task(K, EV, sc_gn); sess[K].owner = sc_tn + 2
}
/* hand_on: if G[k] is still G, start the follow-ups under a new owner, or release */
inline hand_on(K, G) {
  if :: sess[K].guard != G -> skip
     :: else ->
        sc_pp = sess[K].pending; sess[K].pending = 0;
        if :: sc_pp != 0 -> start(K, sc_pp)
           :: else -> set_g(K, 0)
        fi
  fi
}
/* F2 (reference): clear our owner record, then hand the session on if it is still ours */
inline finish(X) {
  if :: sess[task[X].session].owner == X + 2 -> sess[task[X].session].owner = 0 :: else -> skip fi;
  hand_on(task[X].session, task[X].lg[TOP(X)])
}
inline reap(X) { finish(X); end_task(X) }
""",
}

CLEANUP_FAULT_PLAIN = """
/* a cleanup await raised or was cancelled: the finally ends here, before F2 */
inline cleanup_fault(X) { level_return(X) }
"""
CLEANUP_FAULT_REFERENCE = """
/* R3: the inner finally still runs F2 */
inline cleanup_fault(X) { finish(X); level_return(X) }
"""
BEFORE_START_PLAIN = """
inline cancelled_before_start(X) { end_task(X) }
"""
BEFORE_START_REFERENCE = """
/* the body never ran: its done-callback will do the finally's work */
inline cancelled_before_start(X) { task[X].pc = REAP }
"""

SWALLOWED = {
    "INBAND": "after_inband(X)",
    "TYPING": "task[X].pc = HOOKS",
}

DELIVER_CANCEL = """
/* a pending cancellation reaches the await the task is suspended in */
inline deliver_cancel(X) {
  sc_org = task[X].cancel; task[X].cancel = 0; task[X].hung = 0;
  if
$swallow
  :: task[X].pc == START ->
     cancelled_fates(task[X].ev[TOP(X)]);
     cancelled_before_start(X)
$cleanup
  :: else ->
     if :: task[X].pc == RUNNER ->
           if :: sess[task[X].session].runner == X + 2 -> sess[task[X].session].runner = 0 :: else -> skip fi;
           cancelled_fates(task[X].ev[TOP(X)])
        :: task[X].pc == SEND_REPLY ->
           set_reply_all(task[X].ev[TOP(X)], REPLY_DROPPED);
           task[X].rep[TOP(X)] = 0
        :: else -> skip
     fi;
     task[X].unwind = UNWIND_CANCEL; task[X].pc = TYPING
  fi
}
"""

RESUME = """
/* the await the task is suspended in completes normally */
inline resume(X) {
  if
  :: task[X].pc == START -> p1(X)
  :: task[X].pc == RUNNER -> p2(X)
  :: task[X].pc == SEND_REPLY ->
     set_reply_all(task[X].ev[TOP(X)], REPLY_SENT);
     task[X].rep[TOP(X)] = 0;
     p3(X)
$inband
  :: task[X].pc == SEND_ERROR -> task[X].pc = TYPING
  :: task[X].pc == TYPING -> task[X].pc = HOOKS
  :: task[X].pc == HOOKS -> sc_xc = task[X].unwind; finish(X); level_return(X)
$reap
  fi
}
"""

TASK_FAULT = """
/* the await raises or hangs (sc_act says which fault) */
inline task_fault(X) {
  faults_used++;
  if
  :: sc_act == T_RUNNER_HANGS || sc_act == T_SEND_HANGS || sc_act == T_CLEANUP_HANGS -> task[X].hung = 1
  :: else ->
  if
  :: task[X].pc == RUNNER ->
     if :: sess[task[X].session].runner == X + 2 -> sess[task[X].session].runner = 0 :: else -> skip fi;
     set_fate_all(task[X].ev[TOP(X)], FATE_ANSWERED);
     task[X].pc = SEND_ERROR
  :: task[X].pc == SEND_REPLY ->
     set_reply_all(task[X].ev[TOP(X)], REPLY_SEND_FAILED);
     task[X].rep[TOP(X)] = 0;
     task[X].pc = SEND_ERROR
  :: task[X].pc == SEND_ERROR -> task[X].unwind = UNWIND_ERROR; task[X].pc = TYPING
  :: task[X].pc == HOOKS ->
     if :: sc_act == T_CLEANUP_RAISES -> sc_xc = UNWIND_ERROR :: else -> sc_xc = UNWIND_CANCEL fi;
     cleanup_fault(X)
  fi
  fi
}
"""

HANDLERS_BYPASS = """
inline handler_done(H) { hnd[H].pc = 0; hnd[H].old = 0; hnd[H].cg = 0; hnd[H].target = 0; hnd[H].hung = 0 }
/* what the runner does for a command: /stop, /new and /reset clear R[k] */
inline command_effect(K, H) { if :: RESET_LIKE(msg[H].kind) -> sess[K].runner = 0 :: else -> skip fi }
/* B1: a bypass command goes straight to the runner, even while busy */
inline bypass(K, MM) { run_messages(K, 1 << MM); hnd[MM].pc = B_RUNNER }
/* a message for a busy session that is not a bypass command */
inline busy(K, MM) {
  sess[K].pending = sess[K].pending | (1 << MM);
  if :: msg[MM].kind != K_PHOTO -> set_interrupt(sess[K].guard) :: else -> skip fi
}
"""

HANDOFF_NONE = """
inline handler_resume(H) {
  if
  :: hnd[H].pc == B_RUNNER ->
     command_effect(msg[H].session, H); set_fate(H, FATE_ANSWERED); set_reply(H, REPLY_OWED); hnd[H].pc = B_SEND
  :: hnd[H].pc == B_SEND -> set_reply(H, REPLY_SENT); handler_done(H)
  fi
}
inline handler_fault(H) {
  if :: hnd[H].pc == B_RUNNER -> set_fate(H, FATE_ANSWERED)
     :: else -> set_reply(H, REPLY_SEND_FAILED) fi;
  handler_done(H)
}
"""

START = {
    "seed": """
inline release(K, G) { if :: G == 0 || sess[K].guard == G -> set_g(K, 0) :: else -> skip fi }
/* start(e, k): a fresh guard, a new task, recorded as owner, in one step */
inline start(K, EV) {
  new_guard(sc_gn); set_g(K, sc_gn); create_task(K, EV, 0); sess[K].owner = sc_tn + 2
}
""",
    "reference": "",
}
# seed's `release` is defined with its F2; do not define it twice.
START["seed"] = START["seed"].replace(
    "inline release(K, G) { if :: G == 0 || sess[K].guard == G -> set_g(K, 0) :: else -> skip fi }\n", "")

COMMAND_BEGIN = """
/* C1: remember the old guard, install a command guard, await runner(cmd) */
inline command_begin(K, MM) {
  hnd[MM].old = sess[K].guard;
  new_guard(sc_gn); hnd[MM].cg = sc_gn;
  set_g(K, sc_gn);
  run_messages(K, 1 << MM);
  hnd[MM].pc = C_RUNNER
}
"""

# B1, B2 and C1 to C3 resume alike in seed and reference; they differ in
# cancel_owner (C2) and command_end (C4), which each design defines.
HANDLER_RESUME = """inline handler_resume(H) {
  if
  :: hnd[H].pc == B_RUNNER ->
     command_effect(msg[H].session, H); set_fate(H, FATE_ANSWERED); set_reply(H, REPLY_OWED); hnd[H].pc = B_SEND
  :: hnd[H].pc == B_SEND -> set_reply(H, REPLY_SENT); handler_done(H)
  :: hnd[H].pc == C_RUNNER ->
     command_effect(msg[H].session, H); set_fate(H, FATE_ANSWERED); set_reply(H, REPLY_OWED); cancel_owner(H)
  :: hnd[H].pc == C_AWAIT -> hnd[H].pc = C_SEND
  :: hnd[H].pc == C_SEND -> set_reply(H, REPLY_SENT); command_end(H); handler_done(H)
  fi
}
"""

HANDOFF_SEED = """
/* C2: cancel(k, release_guard=False, discard_pending=False) */
inline cancel_owner(H) {
  sc_tt = sess[msg[H].session].owner; sess[msg[H].session].owner = 0;
  if :: sc_tt >= 2 && task[sc_tt - 2].pc != 0 ->
        if :: task[sc_tt - 2].cancel == 0 -> task[sc_tt - 2].cancel = CANCEL_COMMAND + H :: else -> skip fi;
        hnd[H].target = sc_tt; hnd[H].pc = C_AWAIT
     :: else -> hnd[H].pc = C_SEND
  fi
}
/* C4: pop P[k], release the command guard, start what was pending */
inline command_end(H) {
  sc_pp = sess[msg[H].session].pending; sess[msg[H].session].pending = 0;
  release(msg[H].session, hnd[H].cg);
  if :: sc_pp != 0 -> start(msg[H].session, sc_pp) :: else -> skip fi
}
""" + HANDLER_RESUME + """/* C-error: restore or release the guard */
inline handler_fault(H) {
  if
  :: hnd[H].pc == B_RUNNER -> set_fate(H, FATE_ANSWERED); handler_done(H)
  :: hnd[H].pc == B_SEND -> set_reply(H, REPLY_SEND_FAILED); handler_done(H)
  :: else ->
     if :: hnd[H].pc == C_RUNNER -> set_fate(H, FATE_ANSWERED) :: else -> set_reply(H, REPLY_SEND_FAILED) fi;
     if :: sess[msg[H].session].guard == hnd[H].cg ->
           if :: sess[msg[H].session].owner != 0 && hnd[H].old != 0 -> set_g(msg[H].session, hnd[H].old)
              :: else -> release(msg[H].session, hnd[H].cg)
           fi
        :: else -> skip
     fi;
     handler_done(H)
  fi
}
"""

HANDOFF_REFERENCE = """
/* C2 (R5): cancel the owner, leaving O[k] to it, then await its end */
inline cancel_owner(H) {
  sc_tt = sess[msg[H].session].owner;
  hnd[H].pc = C_AWAIT;
  if :: sc_tt >= 2 && task[sc_tt - 2].pc != 0 && task[sc_tt - 2].pc != REAP ->
        if :: task[sc_tt - 2].cancel == 0 -> task[sc_tt - 2].cancel = CANCEL_COMMAND + H :: else -> skip fi;
        hnd[H].target = sc_tt
     :: else -> hnd[H].target = 0
  fi
}
/* C4: if the session is still the command's, start the follow-ups or release */
inline command_end(H) { hand_on(msg[H].session, hnd[H].cg) }
""" + HANDLER_RESUME + """/* C-error (R5): the handoff completes anyway */
inline handler_fault(H) {
  if
  :: hnd[H].pc == B_RUNNER -> set_fate(H, FATE_ANSWERED); handler_done(H)
  :: hnd[H].pc == B_SEND -> set_reply(H, REPLY_SEND_FAILED); handler_done(H)
  :: hnd[H].pc == C_RUNNER -> set_fate(H, FATE_ANSWERED); set_reply(H, REPLY_OWED); cancel_owner(H)
  :: else -> set_reply(H, REPLY_SEND_FAILED); command_end(H); handler_done(H)
  fi
}
"""

INBOUND = {
    "prefix": """
/* H (prefix): busy -> bypass, queue or interrupt; idle -> install a guard and a task */
inline inbound(K, MM) {
  if :: sess[K].guard != 0 ->
        if :: BYPASS(msg[MM].kind) -> bypass(K, MM) :: else -> busy(K, MM) fi
     :: else -> new_guard(sc_gn); set_g(K, sc_gn); create_task(K, 1 << MM, 0)
  fi
}
""",
    "seed": """
/* H (seed): heal a guard whose recorded owner finished, then as prefix, with the handoff */
inline inbound(K, MM) {
  if :: sess[K].guard != 0 && sess[K].owner == DEAD ->
        set_g(K, 0); sess[K].pending = 0; sess[K].owner = 0
     :: else -> skip fi;
  if :: sess[K].guard != 0 ->
        if :: RESET_LIKE(msg[MM].kind) -> command_begin(K, MM)
           :: else -> if :: BYPASS(msg[MM].kind) -> bypass(K, MM) :: else -> busy(K, MM) fi
        fi
     :: else -> start(K, 1 << MM)
  fi
}
""",
}
INBOUND["reference"] = """
/* H (reference, R6): a finished owner awaiting its done-callback is reaped first */
inline inbound(K, MM) {
  if :: sess[K].owner >= 2 && task[sess[K].owner - 2].pc == REAP -> sc_oi = sess[K].owner - 2; reap(sc_oi)
     :: else -> skip fi;
""" + INBOUND["seed"].split("inline inbound(K, MM) {\n", 1)[1]

CANONICAL = """
inline remap_tid(R) { R = (R >= 2 -> sc_tmap[R - 2] : R) }
inline map_guard(G) {
  sc_cnt = sc_cnt + (G != 0 && sc_gmap[G] == 0 -> 1 : 0);
  sc_gmap[G] = (G != 0 && sc_gmap[G] == 0 -> sc_cnt : sc_gmap[G])
}
/* World.freeze(): tasks numbered by position (a reference to a task that left is DEAD),
   guards renamed by first use: sessions, then tasks and their levels, then handlers */
inline freeze() {
  if :: sc_removed ->
        sc_cnt = 0;
$tmap
$remap
        sc_cnt = 0;
$moves
        nt = sc_cnt
     :: else -> skip
  fi;
  for (sc_gi : 0 .. TOKENS - 1) { sc_gmap[sc_gi] = 0 }
  sc_cnt = 0;
$first_use
$rename
  sc_nsg = 0;
  for (sc_gi : 1 .. TOKENS - 1) {
    sc_nsg = sc_nsg | ((set_guards & (1 << sc_gi)) && sc_gmap[sc_gi] != 0 -> (1 << sc_gmap[sc_gi]) : 0)
  }
  set_guards = sc_nsg
}
/* the first token no guard holds (set_guards holds only guards in use) */
inline fresh_token() {
  sc_fresh = 1;
$fresh
}
"""

PROCESS = """
$ready
active proctype gateway() {
end:
  do
  :: atomic {
       if
$options
       fi;
       /* Spin limits the size of one d_step: the rule runs as a few of them in a
          row, inside the atomic block, so still no state is stored in between. */
       d_step {
         /* what the step starts from, for the step properties */
         fresh_token();
         sc_ran = 0; sc_removed = 0; sc_next = 255; sc_agent = 0; sc_known = 0; sc_dead0 = 0;
         for (sc_gi : 0 .. S - 1) { sc_lrun0[sc_gi] = sess[sc_gi].lrun }
         if
         :: sc_act == ARRIVE ->
            sc_dead0 = (sess[sc_ak].guard != 0 && !task_of(sc_ak) && !command_of(sc_ak));
            sc_am = nmsg; nmsg++;
            msg[sc_am].kind = sc_akind; msg[sc_am].session = sc_ak; msg[sc_am].during = during(sc_ak);
            inbound(sc_ak, sc_am)
         :: else -> skip
         fi
       };
       d_step {
         if
         :: sc_act == RESUME || sc_act == DELIVER_CANCEL || (sc_act >= T_RUNNER_RAISES && sc_act <= T_CLEANUP_HANGS) ->
            sc_agent = 1;
            for (sc_gi : 0 .. L - 1) {
              if :: sc_gi < task[sc_ti].nlev && task[sc_ti].lg[sc_gi] != 0 -> sc_known = sc_known | (1 << task[sc_ti].lg[sc_gi])
                 :: else -> skip fi
            }
         :: else -> skip
         fi
       };
       d_step { if :: sc_act == RESUME -> resume(sc_ti) :: else -> skip fi };
       d_step { if :: sc_act == DELIVER_CANCEL -> deliver_cancel(sc_ti) :: else -> skip fi };
       d_step { if :: sc_act >= T_RUNNER_RAISES && sc_act <= T_CLEANUP_HANGS -> task_fault(sc_ti) :: else -> skip fi };
       d_step {
         if
         :: sc_act >= H_RESUME ->
            sc_agent = 1;
            if :: hnd[sc_hi].old != 0 -> sc_known = sc_known | (1 << hnd[sc_hi].old) :: else -> skip fi;
            if :: hnd[sc_hi].cg != 0 -> sc_known = sc_known | (1 << hnd[sc_hi].cg) :: else -> skip fi
         :: else -> skip
         fi
       };
       d_step { if :: sc_act == H_RESUME -> handler_resume(sc_hi) :: else -> skip fi };
       d_step {
         if
         :: sc_act > H_RESUME ->
            if
               :: sc_act == H_RUNNER_HANGS || sc_act == H_SEND_HANGS ->
                  faults_used++;
                  if :: $bounded -> handler_fault(sc_hi)   /* the timeout fires */
                     :: else -> hnd[sc_hi].hung = 1 fi
               :: else -> faults_used++; handler_fault(sc_hi)
            fi
         :: else -> skip
         fi
       };
       d_step {
         if
         :: sc_act == CANCEL_TASK -> faults_used++; task[sc_ti].cancel = CANCEL_FAULT
         :: sc_act == SHUTDOWN_ALL -> faults_used++; shutdown()
         :: else -> skip
         fi
       };
       d_step { freeze() };
       d_step { judge() };
       d_step { report(); sc_act = 0 }
     }
  od
}
"""
