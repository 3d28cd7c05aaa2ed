"""`reference`: this project's design, which satisfies every property of SPEC 5.

It keeps the seed's user-visible behaviour: the same replies, follow-ups
merged in arrival order and answered after the current reply, photos queued
without an interrupt, bypass commands answered directly, /stop, /new and
/reset through a handoff that cancels the old task only after the runner has
answered the command.  It departs from `seed` in six places, each forced by a
counterexample of the checker on `seed` (docs/seed-findings.md tells each
race; the names below are the seed findings they close):

R1. **No inline follow-up.**  `seed` runs a follow-up inside the finishing
    task (P3), nested in its own `process()`: the inner finally drains or
    releases while the outer one still runs, and the follow-up starts while a
    command is in flight.  Here a task processes exactly one event; its
    finally hands the pending slot to a new task.  (seed: `one-worker` after
    `F2:drain`, `handoff` after `P3:inline-process`.)
R2. **A cancellation is never swallowed.**  `seed`'s cleanup awaits catch a
    CancelledError meant for the task itself, so `/stop` can fail to stop
    it.  Here those awaits re-raise it.  (seed: `handoff` after
    `P3:cleanup:cancel-swallowed`.)
R3. **The finally cannot be cut short.**  In `seed` a cleanup await that
    raises or is cancelled ends the finally before F2, leaving the guard and
    stranding the pending slot (the dead-owner trap).  Here the bookkeeping
    (F2) sits in an inner `finally` around the cleanup awaits, and a task
    cancelled before its first step is finished by its done-callback.
    (seed: `nothing-lost` after `F1:cleanup-raised`, `no-trapped-session`.)
R4. **Only the guard's owner drains or releases.**  Each task is given its
    guard when it is created (it does not adopt whatever `G[k]` holds in P1),
    and F2 touches the pending slot and the guard only if `G[k]` is still that
    guard; otherwise a command has taken the session over and will start the
    follow-ups itself.  (seed: `no-orphan-guard` after `F2:release-own-guard`.)
R5. **Commands wait for the owner and for each other, and never hang.**  C2
    does not pop `O[k]`: every command in flight cancels and waits for the
    same owner, so a second /stop cannot release the session while the first
    one's target still runs; and each command also waits for the commands
    that came before it, so handoffs complete in arrival order and only the
    latest command starts the follow-ups.  The command's runner call and its
    reply are bounded by a timeout, so a command can never hang and block the
    commands behind it.  C4 and C-error act only if `G[k]` is
    still the command's own guard; C-error hands the guard back to a still
    running owner, else finishes like C4, so follow-ups are never stranded.
    If the runner or the send raises, the handoff still completes (the user
    gets an error notice, the old task is still stopped): a half-done handoff
    is how `seed` strands or orphans the session.  (seed: `no-unguarded-worker`
    after `C4:release` and `C-error:release`, `no-orphan-guard` after
    `C-error:restore-old-guard`.)
R6. **Heal loses nothing.**  A guard whose owner finished is healed by
    finishing that owner's work as its own F2 would (its done-callback, run
    early), never by dropping the pending slot.  (seed: `nothing-lost` after
    `H:heal`.)
"""

from __future__ import annotations

from .seed import Seed
from .vocabulary import (
    ANSWERED,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    OWED,
    REAP,
    SEND_FAILED,
    TYPING,
    Handler,
    State,
)
from .world import HandlerW, TaskW, World

COMMAND_AWAITS = frozenset({C_RUNNER, C_AWAIT, C_SEND})


class Reference(Seed):
    name = "reference"
    known: dict[str, str] = {}  # reference declares nothing: every violation is a bug
    swallows_cancel: frozenset[str] = frozenset()  # R2
    bounded_awaits = frozenset({C_RUNNER, C_SEND})  # R5: a command never hangs

    # --- tasks are born owning their guard (R4) -------------------------------------

    def start(self, w: World, k: int, event: tuple[int, ...]) -> int:
        """start(e, k): a fresh guard handed to a new task, recorded as owner."""
        s = w.sessions[k]
        g = w.new_guard()
        s.guard = g
        tid = w.create_task(k, event, guard=g)
        s.owner = tid
        return tid

    def p1(self, w: World, t: TaskW) -> None:
        """P1: the task already holds its guard; it calls the runner."""
        self.call_runner(w, t)

    # --- one event per task (R1) ---------------------------------------------------

    def p3(self, w: World, t: TaskW) -> str:
        """After the reply: straight to the finally, which hands follow-ups on."""
        t.pc = TYPING
        return "P3:to-finally"

    # --- the finally (R3, R4) --------------------------------------------------------

    def hand_on(self, w: World, k: int, guard: int | None) -> str:
        """The end of a turn, for a task (F2) and a command (C4) alike: if G[k]
        is still `guard`, start the follow-ups under a new owner, or release
        the session; if not, someone took it over and will do this instead."""
        s = w.sessions[k]
        if s.guard != guard:
            return "session-taken-over"
        p, s.pending = s.pending, None
        if p is not None:
            self.start(w, k, p)
            return "hand-pending-to-new-owner"
        s.guard = None
        return "release-own-guard"

    def finish(self, w: World, t: TaskW) -> str:
        """F2: clear our owner record, then hand the session on if it is still ours."""
        s = w.sessions[t.session]
        if s.owner == t.tid:
            s.owner = None
        return "F2:" + self.hand_on(w, t.session, t.top.guard)

    def cleanup_fault(self, w: World, t: TaskW, exc: str) -> str:
        """A cleanup await raised or was cancelled: the inner finally still runs F2."""
        rule = self.finish(w, t)
        self.level_return(w, t, exc)
        return f"F1:cleanup-{'raised' if exc == 'error' else 'cancelled'}, {rule}"

    def cancelled_before_start(self, w: World, t: TaskW) -> str:
        """The body never ran, so its done-callback will do the finally's work."""
        t.pc = REAP
        return "cancelled-before-start"

    def reap(self, w: World, t: TaskW) -> str:
        """The done-callback of a task that ended without its finally."""
        rule = self.finish(w, t)
        w.end_task(t)
        return f"done-callback: {rule}"

    # --- heal (R6) -------------------------------------------------------------------------

    def inbound(self, w: World, k: int, m: int) -> str:
        s = w.sessions[k]
        owner = w.task(s.owner) if s.owner is not None and s.owner >= 0 else None
        healed = ""
        if owner is not None and owner.pc == REAP:
            healed = self.reap(w, owner) + "; "
        rule = super().inbound(w, k, m)
        return ("H:" + healed + rule[2:]) if healed else rule

    # --- the command handoff (R5) ----------------------------------------------------

    def cancel_owner(self, w: World, h: HandlerW) -> str:
        """C2: cancel the owner (leaving O[k] to it), then await its end and every
        earlier command's completion, so that commands finish in arrival order."""
        s = w.sessions[h.session]
        task = w.running(s.owner)
        h.pc = C_AWAIT
        if task is None:
            h.target = None
            return "C2:no-running-owner"
        if task.cancel is None:
            task.cancel = f"command:{h.mid}"
        h.target = task.tid
        return "C2:cancel-owner"

    def handler_ready(self, state: State, h: Handler) -> bool:
        if h.pc == C_AWAIT and any(
            o.session == h.session and o.mid < h.mid and o.pc in COMMAND_AWAITS
            for o in state.handlers
        ):
            return False  # an earlier command has not completed yet
        return super().handler_ready(state, h)

    def command_end(self, w: World, h: HandlerW) -> str:
        """C4: if the session is still the command's, start the follow-ups or release."""
        return "C4:" + self.hand_on(w, h.session, h.cg)

    def handoff_fault(self, w: World, h: HandlerW) -> str:
        """C-error: the handoff completes anyway, so the session is never left half-handed.

        If the runner raised on the command, the user gets an error notice in
        place of the reply, and the old task is still cancelled (the user asked
        for it).  If the send raised, the reply is lost but C4 still runs.
        """
        m = h.mid
        if h.pc == C_RUNNER:
            w.set_fate(m, ANSWERED)
            w.set_reply(m, OWED)  # the error notice, sent at C3
            return "C1:runner-raised, " + self.cancel_owner(w, h)
        w.set_reply(m, SEND_FAILED)
        rule = self.command_end(w, h)
        self.handler_done(w, h)
        return f"C3:send-raised, {rule}"
