"""`seed`: the fix as merged upstream (SPEC section 3b), step by step.

Against `prefix` it adds an owner-task map `O`, a guard release that checks
identity, a heal of guards whose recorded owner has finished, and a serialized
handoff for `/stop`, `/new` and `/reset` (steps C1 to C4).  It keeps the
`process()` body of `prefix` (P1 to F1, in `design.py`), with its in-band
cleanup that swallows a cancellation.  The findings of the checker on this
design are listed in `known` and told, each with its counterexample, in
docs/findings.md.
"""

from __future__ import annotations

from .prefix import Prefix
from .vocabulary import (
    ANSWERED,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    DEAD,
    OWED,
    SEND_FAILED,
    SENT,
)
from .world import HandlerW, TaskW, World


class Seed(Prefix):
    name = "seed"
    known: dict[str, str] = {
        "one-worker": "an inline follow-up's finally drains to a new task while the outer level still runs",
        "no-unguarded-worker": "a second /stop finds no owner and releases the guard the cancelled task still uses",
        "no-orphan-guard": "C-error puts back a guard no task holds; the owner released only the command guard it adopted",
        "release-by-owner": "C4's start() overwrites a later command's guard",
        "nothing-lost": "heal drops the pending slot; a cleanup fault strands a popped follow-up",
        "order": "a stranded pending slot is picked up after a newer message",
        "handoff": "the old task runs a follow-up inline while the command is in flight",
        "no-trapped-session": "a dead owner strands the pending slot until the user writes again",
        "stop-works": "a second /stop completes while the first one's target still runs",
        "dead-lock-heals": "an orphan guard with no recorded owner is never healed",
    }

    # --- the fix's vocabulary --------------------------------------------------------

    def start(self, w: World, k: int, event: tuple[int, ...]) -> int:
        """start(e, k): a fresh guard, a new task, recorded as owner, in one step."""
        s = w.sessions[k]
        s.guard = w.new_guard()
        tid = w.create_task(k, event)
        s.owner = tid
        return tid

    def release(self, w: World, k: int, guard: int | None = None) -> None:
        """release(k, guard=g): delete G[k] only if it is still the guard `g`."""
        s = w.sessions[k]
        if guard is None or s.guard == guard:
            s.guard = None

    def stale(self, w: World, k: int) -> bool:
        """A recorded owner that has finished. No recorded owner is not stale."""
        return w.sessions[k].owner == DEAD

    def heal(self, w: World, k: int) -> None:
        """Remove the stale guard, the pending slot and the owner record."""
        s = w.sessions[k]
        s.guard, s.pending, s.owner = None, None, None

    # --- H ----------------------------------------------------------------------------------

    def inbound(self, w: World, k: int, m: int) -> str:
        kind = w.messages[m].kind
        s = w.sessions[k]
        healed = ""
        if s.guard is not None and self.stale(w, k):
            self.heal(w, k)
            healed = "heal, then "
        if s.guard is not None:
            if self.is_reset_like(kind):
                return healed + self.command_begin(w, k, m)
            if self.is_bypass(kind):
                return healed + self.bypass(w, k, m)
            return healed + self.busy(w, k, m)
        self.start(w, k, (m,))
        return "H:" + healed + "start"

    # --- the command handoff: C1 to C4 ------------------------------------------------

    def command_begin(self, w: World, k: int, m: int) -> str:
        """C1: remember the old guard, install a command guard, await runner(cmd)."""
        s = w.sessions[k]
        old = s.guard
        cg = w.new_guard()
        s.guard = cg  # follow-ups now queue behind the command
        self.call_runner_for_command(w, k, m)
        w.handlers.append(HandlerW(m, k, C_RUNNER, old, cg, None, False))
        return "H:C1-handoff"

    def handoff_resume(self, w: World, h: HandlerW) -> str:
        k, m = h.session, h.mid
        if h.pc == C_RUNNER:
            said = self.command_effect(w, k, m)
            w.set_fate(m, ANSWERED)
            w.set_reply(m, OWED)
            return f"C1:runner-replied ({said}), " + self.cancel_owner(w, h)
        if h.pc == C_AWAIT:
            h.pc = C_SEND
            return "C2:owner-ended"
        if h.pc == C_SEND:
            w.set_reply(m, SENT)
            rule = self.command_end(w, h)
            self.handler_done(w, h)
            return rule
        raise AssertionError(h.pc)

    def cancel_owner(self, w: World, h: HandlerW) -> str:
        """C2: cancel(k, release_guard=False, discard_pending=False)."""
        s = w.sessions[h.session]
        t, s.owner = s.owner, None
        task = w.task(t) if t is not None and t != DEAD else None
        if task is not None:
            # Marked expected-cancelled; the mark has no effect on the steps modelled.
            if task.cancel is None:
                task.cancel = f"command:{h.mid}"
            h.target = task.tid
            h.pc = C_AWAIT
            return "C2:cancel-owner"
        h.pc = C_SEND
        return "C2:no-running-owner"

    def command_end(self, w: World, h: HandlerW) -> str:
        """C4: pop P[k], release the command guard, start what was pending."""
        k = h.session
        s = w.sessions[k]
        p, s.pending = s.pending, None
        self.release(w, k, guard=h.cg)
        if p is not None:
            self.start(w, k, p)
            return "C4:release-and-start-pending"
        return "C4:release"

    def handoff_fault(self, w: World, h: HandlerW) -> str:
        """C-error: the runner or the send raised; restore or release the guard."""
        m = h.mid
        if h.pc == C_RUNNER:
            w.set_fate(m, ANSWERED)
        else:
            w.set_reply(m, SEND_FAILED)
        pc = h.pc
        rule = self.command_error(w, h)
        self.handler_done(w, h)
        return f"{pc}:raised, {rule}"

    def command_error(self, w: World, h: HandlerW) -> str:
        k = h.session
        s = w.sessions[k]
        if s.guard == h.cg:
            if s.owner is not None and h.old is not None:
                s.guard = h.old
                return "C-error:restore-old-guard"
            self.release(w, k, guard=h.cg)
            return "C-error:release"
        return "C-error:guard-not-ours"

    # --- F2 ------------------------------------------------------------------------------

    def finish(self, w: World, t: TaskW) -> str:
        """F2: drain into a recorded owner, or clear our owner record and release our guard."""
        k = t.session
        s = w.sessions[k]
        if s.pending is not None:
            p, s.pending = s.pending, None
            w.clear_guard(s.guard)
            s.owner = w.create_task(k, p)  # the guard stays in place
            return "F2:drain"
        if s.owner == t.tid:
            s.owner = None
        self.release(w, k, guard=t.top.guard)
        return "F2:release-own-guard"
