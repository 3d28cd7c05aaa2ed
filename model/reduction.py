"""Partial-order reduction: one actor's step instead of every interleaving.

When some actor can take a step that (1) commutes with every step any other
actor could take before it, now or later, and (2) changes nothing any property
looks at, exploring the other actors' steps first only produces the same
states in another order.  Such a step is explored alone (an "ample set" of
one).  The state graph has no cycles (every step consumes input, advances a
task or ends an actor), so the cycle proviso holds trivially.  Such a step
also stays enabled until it is taken, so every state in which no internal
step is enabled (the settled states that liveness looks for) is still reached.

The steps that qualify, each for the reason given:

* a command handler whose cancelled owner has ended (C2 -> C3): it changes
  only its own position, and every reader of command positions (arrivals,
  the properties, reference's ordering of commands) treats C2 and C3 alike;
* a plain bypass command such as /approve at B1 or B2, when no fault can
  strike any more: it touches only its own message and handler;
* a task at its first cleanup await (F1:typing -> F1:hooks), when neither a
  fault nor a new message can arrive any more and no command of its session
  is still waiting for the runner (only those could still cancel it, and a
  cancellation is the one thing whose effect depends on which of the two
  awaits it meets).

Counterexamples found with the reduction are real paths (they are replayed
through the full rules), but may be a step or two longer than the shortest.
"""

from __future__ import annotations

from .vocabulary import APPROVE, B_RUNNER, B_SEND, C_AWAIT, C_RUNNER, TYPING, Bounds, State, Step


def ample(state: State, bounds: Bounds, successors: list[tuple[Step, State]]) -> list[tuple[Step, State]]:
    """One independent, invisible step if there is one; otherwise every step."""
    no_fault = state.stopped or state.faults_used >= bounds.faults
    no_input = state.stopped or (len(state.messages) >= bounds.messages and state.extra == 0)
    for step, nxt in successors:
        actor = step.actor
        if actor.startswith("H"):
            mid = int(actor[1:])
            h = next(h for h in state.handlers if h.mid == mid)
            if h.pc == C_AWAIT:
                return [(step, nxt)]
            if no_fault and h.pc in (B_RUNNER, B_SEND) and state.messages[mid].kind == APPROVE:
                return [(step, nxt)]
        elif actor.startswith("T") and no_fault and no_input:
            tid = int(actor[1:])
            t = next(t for t in state.tasks if t.tid == tid)
            if (
                t.pc == TYPING
                and t.cancel is None
                and not any(h.session == t.session and h.pc == C_RUNNER for h in state.handlers)
            ):
                return [(step, nxt)]
    return successors
