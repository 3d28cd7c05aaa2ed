"""What every design has in common, and the steps of `process(e)` as the gateway runs them.

A design is a small interface (after Stateright's `Model`): `initial(bounds)`
and `successors(state, bounds)`, which lists every enabled step with the state
it leads to.  The steps come from four sources:

* the platform: an inbound message of any kind arrives for any session, and
  the adapter's `handle_message` runs its atomic first step **H**;
* each processing task resumes at the await it is suspended in (the runner
  call, a send, a cleanup), either normally or with a fault;
* each inbound handler that awaits (a bypass command, the command handoff)
  resumes likewise;
* the environment cancels a task from outside, or shuts the gateway down.

One step is the code between two awaits; nothing else runs during it.  This
module holds the steps that `prefix` and `seed` share word for word (P1 to F1
of SPEC's appendix); each design module supplies the rest as methods named
after the SPEC's steps (`inbound` for H, `finish` for F2, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from .properties import hung_sessions
from .vocabulary import (
    ABORTED,
    ANSWERED,
    B_RUNNER,
    B_SEND,
    BYPASS,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    CLEANUP_CANCELLED,
    CLEANUP_HANGS,
    CLEANUP_RAISES,
    DISCARDED,
    DROPPED,
    HOOKS,
    INBAND,
    NEW,
    ORDINARY,
    OWED,
    PHOTO,
    REAP,
    RESET,
    RUNNER,
    RUNNER_HANGS,
    RUNNER_RAISES,
    SEND_ERROR,
    SEND_FAILED,
    SEND_HANGS,
    SEND_RAISES,
    SEND_REPLY,
    SENT,
    SHUT_DOWN,
    SHUTDOWN,
    STALE,
    START,
    STOP,
    TASK_CANCELLED,
    TEXT,
    TYPING,
    Bounds,
    Handler,
    Level,
    Message,
    State,
    Step,
    Task,
    initial_state,
)
from .world import HandlerW, TaskW, World

Successor = tuple[Step, State]

# The faults that can strike each kind of await.
_RUNNER_FAULTS = (RUNNER_RAISES, RUNNER_HANGS)
_SEND_FAULTS = (SEND_RAISES, SEND_HANGS)
_CLEANUP_FAULTS = (CLEANUP_RAISES, CLEANUP_CANCELLED, CLEANUP_HANGS)
FAULTS_AT: dict[str, tuple[str, ...]] = {
    RUNNER: _RUNNER_FAULTS,
    SEND_REPLY: _SEND_FAULTS,
    SEND_ERROR: _SEND_FAULTS,
    HOOKS: _CLEANUP_FAULTS,
    B_RUNNER: _RUNNER_FAULTS,
    B_SEND: _SEND_FAULTS,
    C_RUNNER: _RUNNER_FAULTS,
    C_SEND: _SEND_FAULTS,
}
RAISES = frozenset({RUNNER_RAISES, SEND_RAISES, CLEANUP_RAISES})
HANG_FAULTS = frozenset({RUNNER_HANGS, SEND_HANGS, CLEANUP_HANGS})


class Design:
    """Rules shared by the designs; subclasses override the steps that differ."""

    name = "abstract"
    #: Awaits at which a cancellation of the task is swallowed (SPEC appendix:
    #: both wait for the cancelled typing task inside `except CancelledError: pass`).
    swallows_cancel: frozenset[str] = frozenset({INBAND, TYPING})
    #: Awaits wrapped in a timeout: a call that would hang there fails instead, at
    #: the step where the timeout fires.
    bounded_awaits: frozenset[str] = frozenset()
    #: Violations this design is known to have: property name -> why.
    known: dict[str, str] = {}

    # --- the interface the checker uses ----------------------------------------

    def initial(self, bounds: Bounds) -> State:
        return initial_state(bounds)

    def successors(self, state: State, bounds: Bounds, *, faults: bool = True) -> list[Successor]:
        """Every step enabled in `state`, with the state it leads to.

        With `faults=False` only the environment's good behaviour is offered:
        no new fault and no inbound message beyond `state.extra` recovery
        messages.  The liveness check uses that to ask "can this state still
        recover on its own?".
        """
        out: list[Successor] = []
        can_fault = faults and state.faults_used < bounds.faults and not state.stopped
        self._arrivals(state, bounds, out, faults)
        for t in state.tasks:
            self._task_steps(state, t, bounds, can_fault, out)
        for h in state.handlers:
            self._handler_steps(state, h, bounds, can_fault, out, faults)
        if can_fault:
            self._environment_faults(state, bounds, out)
        return out

    # --- the platform: inbound messages ----------------------------------------

    def _arrivals(self, state: State, bounds: Bounds, out: list[Successor], faults: bool) -> None:
        if state.stopped:
            return
        if faults and len(state.messages) < bounds.messages:
            kinds: tuple[str, ...] = bounds.kinds
            extra = False
        elif state.extra > 0:
            kinds = (STOP,)  # the user's way out of a wedged session (SPEC 9, 10)
            extra = True
        else:
            return
        sessions = range(len(state.sessions))
        if extra:  # the user sends /stop where a call hangs
            sessions = hung_sessions(state, self.bounded_awaits)  # type: ignore[assignment]
        for k in sessions:
            for kind in kinds:
                w = World(state)
                if extra:
                    w.extra -= 1
                m = len(w.messages)
                during = tuple(
                    h.mid
                    for h in w.handlers
                    if h.session == k and h.pc.startswith("C")
                )
                w.messages.append(Message(kind, k, during=during))
                rule = self.inbound(w, k, m)
                step = Step("platform", rule, f"m{m} {kind} for k{k}", message=m, effects=tuple(w.log))
                out.append((step, w.freeze()))

    def inbound(self, w: World, k: int, m: int) -> str:
        """H: handle_message(e) up to its first await.  Returns the rule taken."""
        raise NotImplementedError

    # --- shared vocabulary of the adapter ----------------------------------------

    def merge_pending(self, w: World, k: int, m: int) -> None:
        """Merge a follow-up into the one pending slot, keeping arrival order."""
        s = w.sessions[k]
        s.pending = (s.pending or ()) + (m,)

    def busy(self, w: World, k: int, m: int) -> str:
        """A message for a busy session that is not a bypass command."""
        kind = w.messages[m].kind
        self.merge_pending(w, k, m)
        if kind == PHOTO:
            return "H:busy-photo-queued"
        w.set_guard(w.sessions[k].guard)  # interrupt requested; "Interrupting current task..."
        return "H:busy-interrupt"

    def bypass(self, w: World, k: int, m: int) -> str:
        """B1: a bypass command goes straight to the runner, even while busy."""
        self.call_runner_for_command(w, k, m)
        w.handlers.append(HandlerW(m, k, B_RUNNER, None, None, None, False))
        return "H:bypass"

    def call_runner_for_command(self, w: World, k: int, m: int) -> None:
        w.run_messages(k, (m,), ORDINARY)

    def command_effect(self, w: World, k: int, m: int) -> str:
        """What the runner does for a command: /stop interrupts and clears R[k]."""
        kind = w.messages[m].kind
        s = w.sessions[k]
        if kind == STOP:
            if s.runner is None:
                return "No active task to stop"
            s.runner = None
            return "stopped"
        if kind in (NEW, RESET):
            s.runner = None
            return "fresh conversation"
        return "answered"

    # --- process(e): the steps shared by prefix and seed ---------------------------

    def p1(self, w: World, t: TaskW) -> None:
        """P1: g = G.get(k) or a new guard; G[k] = g; await runner(e)."""
        s = w.sessions[t.session]
        g = s.guard if s.guard is not None else w.new_guard()
        s.guard = g
        t.set_top(t.top._replace(guard=g))
        self.call_runner(w, t)

    def call_runner(self, w: World, t: TaskW) -> None:
        """The runner takes the event and occupies R[k] while its agent works."""
        w.run_messages(t.session, t.top.event, ORDINARY)
        w.sessions[t.session].runner = t.tid
        t.pc = RUNNER

    def p2(self, w: World, t: TaskW) -> str:
        """P2: the runner returned a reply; drop it as stale if a follow-up interrupted."""
        s = w.sessions[t.session]
        if s.runner == t.tid:
            s.runner = None
        for m in t.top.event:
            w.set_fate(m, ANSWERED)
        if w.is_set(t.top.guard) and s.pending is not None:
            for m in t.top.event:
                w.set_reply(m, OWED)
                w.set_reply(m, STALE)
            return "P2:stale-reply-dropped, " + self.p3(w, t)
        for m in t.top.event:
            w.set_reply(m, OWED)
        t.set_top(t.top._replace(reply=True))
        t.pc = SEND_REPLY
        return "P2:send-reply"

    def p3(self, w: World, t: TaskW) -> str:
        """P3: take a follow-up inline (same task), after an in-band cleanup."""
        s = w.sessions[t.session]
        if s.pending is not None:
            p, s.pending = s.pending, None
            w.clear_guard(s.guard)
            t.set_top(t.top._replace(popped=p))
            t.pc = INBAND
            return "P3:pop-pending"
        t.pc = TYPING
        return "P3:to-finally"

    def after_inband(self, w: World, t: TaskW) -> str:
        """The in-band cleanup is done: run process(p) inside this task, from P1."""
        p = t.top.popped
        assert p is not None
        t.set_top(t.top._replace(popped=None))
        t.levels.append(Level(p))
        self.p1(w, t)
        return "P3:inline-process"

    def finish(self, w: World, t: TaskW) -> str:
        """F2: the end of the finally: drain the pending slot or release the guard."""
        raise NotImplementedError

    def level_return(self, w: World, t: TaskW, exc: str | None) -> None:
        """One activation of process() returns (or raises `exc`) to its caller."""
        t.levels.pop()
        t.unwind = None
        if not t.levels:
            w.end_task(t)
            return
        if exc == "error":
            t.pc = SEND_ERROR  # the outer level's `except`: send an error notice
        else:
            t.unwind = exc  # 'cancel' re-raises through the outer finally
            t.pc = TYPING

    # --- resuming a task ---------------------------------------------------------

    def _task_steps(
        self, state: State, t: Task, bounds: Bounds, can_fault: bool, out: list[Successor]
    ) -> None:
        actor = f"T{t.tid}"
        if t.cancel is not None:
            out.append(self._apply(state, actor, lambda w, tw: self.deliver_cancel(w, tw), t.tid))
            return
        if t.hung:
            return
        out.append(self._apply(state, actor, lambda w, tw: self.resume(w, tw), t.tid))
        if can_fault:
            for fault in FAULTS_AT.get(t.pc, ()):
                if fault in bounds.fault_kinds:
                    out.append(self._apply(state, actor, self._fault_rule(fault), t.tid, fault))

    def _fault_rule(self, fault: str) -> Callable[[World, TaskW], str]:
        return lambda w, tw: self.resume_fault(w, tw, fault)

    def _apply(
        self,
        state: State,
        actor: str,
        rule: Callable[[World, TaskW], str],
        tid: int,
        fault: str | None = None,
    ) -> Successor:
        w = World(state)
        tw = w.task(tid)
        assert tw is not None
        pc = tw.pc
        msgs = ",".join(f"m{m}" for m in tw.top.event)
        if fault is not None:
            w.faults_used += 1
        name = rule(w, tw)
        step = Step(actor, name, f"at {pc}, event {msgs}", fault=fault, effects=tuple(w.log))
        return step, w.freeze()

    def resume(self, w: World, t: TaskW) -> str:
        """The await `t` is suspended in completes normally."""
        pc = t.pc
        if pc == START:
            self.p1(w, t)
            return "P1:call-runner"
        if pc == RUNNER:
            return self.p2(w, t)
        if pc == SEND_REPLY:
            for m in t.top.event:
                w.set_reply(m, SENT)
            t.set_top(t.top._replace(reply=False))
            return self.p3(w, t)
        if pc == INBAND:
            return self.after_inband(w, t)
        if pc == SEND_ERROR:
            t.pc = TYPING
            return "E1:error-sent"
        if pc == TYPING:
            t.pc = HOOKS
            return "F1:typing-done"
        if pc == HOOKS:
            exc = t.unwind
            rule = self.finish(w, t)
            self.level_return(w, t, exc)
            return rule
        if pc == REAP:
            return self.reap(w, t)
        raise AssertionError(f"unknown position {pc}")

    def resume_fault(self, w: World, t: TaskW, fault: str) -> str:
        """The await `t` is suspended in raises, hangs, or ends the finally early."""
        if fault in HANG_FAULTS:
            t.hung = True
            return f"{t.pc}:hangs"
        s = w.sessions[t.session]
        if t.pc == RUNNER:  # the runner raised: E1 sends an error notice
            if s.runner == t.tid:
                s.runner = None
            for m in t.top.event:
                w.set_fate(m, ANSWERED)
            t.pc = SEND_ERROR
            return "P1:runner-raised"
        if t.pc == SEND_REPLY:
            for m in t.top.event:
                w.set_reply(m, SEND_FAILED)
            t.set_top(t.top._replace(reply=False))
            t.pc = SEND_ERROR
            return "P2:send-raised"
        if t.pc == SEND_ERROR:  # the notice itself failed: the error reaches the finally
            t.unwind = "error"
            t.pc = TYPING
            return "E1:send-raised"
        if t.pc == HOOKS:
            return self.cleanup_fault(w, t, "error" if fault == CLEANUP_RAISES else "cancel")
        raise AssertionError(f"no fault {fault} at {t.pc}")

    def cleanup_fault(self, w: World, t: TaskW, exc: str) -> str:
        """A cleanup await raised or was cancelled: the finally ends here, before F2."""
        self.level_return(w, t, exc)
        return f"F1:cleanup-{'raised' if exc == 'error' else 'cancelled'}"

    def deliver_cancel(self, w: World, t: TaskW) -> str:
        """A pending cancellation reaches the await `t` is suspended in."""
        origin = t.cancel
        t.cancel = None
        t.hung = False
        pc = t.pc
        if pc in self.swallows_cancel:
            rule = self.resume(w, t)
            return f"{pc}:cancel-swallowed, then {rule}"
        s = w.sessions[t.session]
        if pc == START:  # cancelled before its first step: its body never runs
            self.cancelled_fates(w, t.top.event, origin)
            return self.cancelled_before_start(w, t)
        if pc == RUNNER:
            if s.runner == t.tid:
                s.runner = None
            self.cancelled_fates(w, t.top.event, origin)
        if pc == SEND_REPLY:
            for m in t.top.event:
                w.set_reply(m, DROPPED)
            t.set_top(t.top._replace(reply=False))
        if pc in (TYPING, HOOKS):
            return self.cleanup_fault(w, t, "cancel")
        t.unwind = "cancel"
        t.pc = TYPING
        return f"{pc}:cancelled"

    def cancelled_before_start(self, w: World, t: TaskW) -> str:
        """No finally runs for a task that never started: it just ends."""
        w.end_task(t)
        return "cancelled-before-start"

    def reap(self, w: World, t: TaskW) -> str:
        raise AssertionError(f"{self.name} registers no done-callback")

    @staticmethod
    def cancelled_fates(w: World, event: tuple[int, ...], origin: str | None) -> None:
        """The fates of an event whose task was cancelled before the runner finished it.

        A command discards the work that was there before it (the user asked for
        that and is told).  A message newer than the command was never the
        command's to discard: it is left without a fate, and so counts as lost.
        """
        if origin is not None and origin.startswith("command:"):
            command = int(origin.split(":")[1])
            for m in event:
                if m < command:
                    w.set_fate(m, DISCARDED)
        else:
            w.abort(event, SHUT_DOWN if origin == "shutdown" else ABORTED)

    # --- inbound handlers that await ----------------------------------------------

    def _handler_steps(
        self,
        state: State,
        h: Handler,
        bounds: Bounds,
        can_fault: bool,
        out: list[Successor],
        faults_allowed: bool = True,
    ) -> None:
        if h.hung or not self.handler_ready(state, h):
            return
        actor = f"H{h.mid}"
        out.append(self._apply_handler(state, actor, h.mid, None))
        # A call that hangs inside a timeout is seen when the timeout fires, which
        # may be after a shutdown: that one fault stays possible once stopped.
        bounded = h.pc in self.bounded_awaits and state.faults_used < bounds.faults and faults_allowed
        for fault in FAULTS_AT.get(h.pc, ()):
            if fault in bounds.fault_kinds and (can_fault or (bounded and fault in HANG_FAULTS)):
                out.append(self._apply_handler(state, actor, h.mid, fault))

    def handler_ready(self, state: State, h: Handler) -> bool:
        """C2 waits for the cancelled owner to end; every other await can resume."""
        if h.pc == C_AWAIT:
            return not any(t.tid == h.target and t.pc != REAP for t in state.tasks)
        return True

    def _apply_handler(self, state: State, actor: str, mid: int, fault: str | None) -> Successor:
        w = World(state)
        h = w.handler(mid)
        pc = h.pc
        if fault is not None:
            w.faults_used += 1
            if fault in HANG_FAULTS and pc in self.bounded_awaits:
                name = "timed out: " + self.handler_fault(w, h)
            elif fault in HANG_FAULTS:
                h.hung = True
                name = f"{pc}:hangs"
            else:
                name = self.handler_fault(w, h)
        else:
            name = self.handler_resume(w, h)
        kind = w.messages[mid].kind
        step = Step(actor, name, f"at {pc}, m{mid} {kind}", fault=fault, effects=tuple(w.log))
        return step, w.freeze()

    def handler_done(self, w: World, h: HandlerW) -> None:
        w.handlers.remove(h)

    def handler_resume(self, w: World, h: HandlerW) -> str:
        k, m = h.session, h.mid
        if h.pc == B_RUNNER:
            said = self.command_effect(w, k, m)
            w.set_fate(m, ANSWERED)
            w.set_reply(m, OWED)
            h.pc = B_SEND
            return f"B1:runner-replied ({said})"
        if h.pc == B_SEND:
            w.set_reply(m, SENT)
            self.handler_done(w, h)
            return "B2:reply-sent"
        return self.handoff_resume(w, h)

    def handler_fault(self, w: World, h: HandlerW) -> str:
        m = h.mid
        if h.pc in (B_RUNNER, B_SEND):
            if h.pc == B_RUNNER:
                w.set_fate(m, ANSWERED)
            else:
                w.set_reply(m, SEND_FAILED)
            self.handler_done(w, h)
            return f"{h.pc}:raised"
        return self.handoff_fault(w, h)

    def handoff_resume(self, w: World, h: HandlerW) -> str:
        raise AssertionError(f"{self.name} has no command handoff ({h.pc})")

    def handoff_fault(self, w: World, h: HandlerW) -> str:
        raise AssertionError(f"{self.name} has no command handoff ({h.pc})")

    # --- the environment --------------------------------------------------------------

    def _environment_faults(self, state: State, bounds: Bounds, out: list[Successor]) -> None:
        if TASK_CANCELLED in bounds.fault_kinds:
            for t in state.tasks:
                if t.cancel is None and t.pc != REAP:
                    w = World(state)
                    w.faults_used += 1
                    tw = w.task(t.tid)
                    assert tw is not None
                    tw.cancel = "fault"
                    out.append(
                        (
                            Step("environment", "cancel-task", f"T{t.tid} at {t.pc}", fault=TASK_CANCELLED),
                            w.freeze(),
                        )
                    )
        if SHUTDOWN in bounds.fault_kinds:
            w = World(state)
            w.faults_used += 1
            self.shutdown(w)
            out.append((Step("environment", "shutdown", "cancel every task", fault=SHUTDOWN), w.freeze()))

    def shutdown(self, w: World) -> None:
        """Shutdown cancels every background task and clears G, O and P."""
        w.stopped = True
        for t in w.tasks:
            if t.pc != REAP:  # a done task cannot be cancelled
                t.cancel = "shutdown"
        for s in w.sessions:
            for m in s.pending or ():
                w.set_fate(m, SHUT_DOWN)
            s.guard, s.owner, s.pending = None, None, None

    # --- helpers for the designs ----------------------------------------------------

    @staticmethod
    def is_reset_like(kind: str) -> bool:
        return kind in (STOP, NEW, RESET)

    @staticmethod
    def is_bypass(kind: str) -> bool:
        return kind in BYPASS

    @staticmethod
    def is_text(kind: str) -> bool:
        return kind == TEXT


__all__ = ["Design", "Successor", "FAULTS_AT", "RAISES", "HANG_FAULTS", "DROPPED"]
