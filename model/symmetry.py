"""Symmetry reduction over session keys.

Sessions are interchangeable: every rule is written for "any session k", the
environment may send any message to any session, and every property speaks of
all sessions alike.  So two states that differ only by a renaming of the
session keys have the same future up to that renaming, and the checker needs
to keep only one of them.

The representative: sessions are sorted by the ids of the messages that
arrived for them.  Message ids are global arrival numbers and every message
belongs to exactly one session, so two sessions can tie only when neither has
received anything, and then they are identical; the sort is therefore a
complete canonical form.  Guards and tasks are renamed afterwards by
`World.freeze()`, as in every state.

Message identities need no reduction of their own: they are arrival numbers,
already canonical, and their order is observable (property 6), so renaming
them would not be sound.
"""

from __future__ import annotations

from .properties import holders
from .vocabulary import DONE, OK_FATES, ORDINARY, OWED, Message, Session, State
from .world import World, new_record


def permute(state: State, perm: list[int]) -> State:
    """The same state with session `k` renamed to `perm[k]`."""
    n = len(state.sessions)
    sessions = [state.sessions[0]] * n
    for old, new in enumerate(perm):
        sessions[new] = state.sessions[old]
    renamed = State(
        tuple(sessions),
        tuple(t._replace(session=perm[t.session]) for t in state.tasks),
        tuple(h._replace(session=perm[h.session]) for h in state.handlers),
        tuple(m._replace(session=perm[m.session]) for m in state.messages),
        state.set_guards,
        state.faults_used,
        state.stopped,
        state.extra,
    )
    return World(renamed).freeze()


def forget_history(state: State) -> State:
    """Merge states that differ only in how finished messages ended.

    Once a message has a fate, no reply still owed, and nobody holds it, no
    rule reads its record again and every property judges it the same way
    (its fate is one of the good ones, or the violation was already reported
    when it got that fate).  Its details are history: keeping them would only
    split one future into several identical ones.  Only the session stays
    (the sort above reads it), and a run count of two (a violation).

    For the same reason `last_run`, the highest message the runner has seen in
    a session, is forgotten once no message that could still run is older
    than it: property 6 compares it only with such messages, and every future
    arrival is newer anyway.
    """
    held: set[int] | None = None
    # Most states have nothing to forget: copy the messages only on the first change.
    messages: list[Message] | None = None
    oldest_unrun: dict[int, int] = {}  # per session: the oldest ordinary message that may still run
    for m, msg in enumerate(state.messages):
        kind, session, runs, fate, reply, during = msg  # one unpacking is cheaper than field reads
        if during and runs:
            # Which commands were in flight when it arrived matters only until it runs.
            if messages is None:
                messages = list(state.messages)
            messages[m] = new_record(Message, (kind, session, runs, fate, reply, ()))
        if fate is None:
            if runs == 0 and kind in ORDINARY and session not in oldest_unrun:
                oldest_unrun[session] = m
            continue
        if fate == DONE or reply == OWED or fate not in OK_FATES:
            continue
        if held is None:
            held = holders(state)
        if m in held:
            continue
        if messages is None:
            messages = list(state.messages)
        messages[m] = new_record(Message, ("", session, runs if runs > 1 else 0, DONE, None, ()))
    sessions = state.sessions
    for k, sess in enumerate(sessions):
        if sess.last_run >= 0 and oldest_unrun.get(k, sess.last_run) >= sess.last_run:
            forgotten = new_record(Session, (sess.guard, sess.owner, sess.pending, sess.runner, -1))
            sessions = sessions[:k] + (forgotten,) + sessions[k + 1 :]
    if messages is None and sessions is state.sessions:
        return state
    return new_record(State, (
        sessions,
        state.tasks,
        state.handlers,
        state.messages if messages is None else tuple(messages),
        state.set_guards,
        state.faults_used,
        state.stopped,
        state.extra,
    ))


def canonical(state: State, *, merge_history: bool = True) -> State:
    """The representative of the state's class under renaming of sessions."""
    if merge_history:
        state = forget_history(state)
    n = len(state.sessions)
    if n == 1:
        return state
    first: dict[int, int] = {}
    for m, msg in enumerate(state.messages):
        first.setdefault(msg.session, m)
    order = sorted(range(n), key=lambda k: first.get(k, len(state.messages) + k))
    if order == list(range(n)):
        return state
    perm = [0] * n
    for new, old in enumerate(order):
        perm[old] = new
    return permute(state, perm)
