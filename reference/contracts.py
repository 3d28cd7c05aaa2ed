"""Contracts on the synchronous cores, checked by CrossHair (PEP 316 docstrings).

CrossHair skips `async def` functions, so the contracts sit on the pure
decisions of `decisions.py` (what the asyncio shell does between awaits) and
on a few of the model's transition functions, each called through a thin
wrapper that builds the smallest `World` it needs.  The model is not edited:
the wrappers state what its rules promise.

Run: ``crosshair check --analysis_kind=PEP316 sessionguard.reference.contracts``
(tests/test_crosshair.py does, with settings that can confirm, and also
checks that a deliberately broken copy of a contract is refuted).
"""

from __future__ import annotations

from sessionguard.model import DESIGNS
from sessionguard.model.vocabulary import DEAD, Message, Session, State
from sessionguard.model.world import World

from . import decisions as d


class Guard:
    """A stand-in for an asyncio.Event guard: only its identity matters."""


# --- the adapter's decisions -------------------------------------------------------


def release(current: Guard | None, guard: Guard | None) -> Guard | None:
    """What G[k] is after release(k, guard=guard), when it was `current`.

    post: __return__ is None or __return__ is current
    post: implies(guard is not None and guard is not current, __return__ is current)
    post: implies(guard is not None and guard is current, __return__ is None)
    post: implies(guard is None, __return__ is None)
    """
    return None if d.may_release(current, guard) else current


def heal(busy: bool, has_owner: bool, owner_done: bool) -> bool:
    """Does handle_message heal G[k] before deciding?  Only a finished recorded owner's guard.

    post: implies(__return__, busy and has_owner and owner_done)
    post: implies(not has_owner, not __return__)
    post: implies(busy and has_owner and owner_done, __return__)
    """
    return d.needs_heal(busy, has_owner, owner_done)


def merge(pending: list[int] | None, new: int) -> tuple[int, ...]:
    """The pending slot after a follow-up arrives: arrival order kept, nothing lost.

    pre: pending is None or len(pending) <= 3
    pre: pending is None or all(x < new for x in pending)
    pre: pending is None or all(a < b for a, b in zip(pending, pending[1:]))
    post: __return__[-1] == new
    post: list(__return__[:-1]) == list(pending or [])
    post: all(a < b for a, b in zip(__return__, __return__[1:]))
    """
    return d.merge_pending(pending, new)


def stale_reply(has_reply: bool, interrupted: bool, has_pending: bool) -> bool:
    """P2: a reply is dropped only when a follow-up interrupted and is waiting.

    post: implies(__return__, has_reply and interrupted and has_pending)
    post: implies(not has_pending, not __return__)
    """
    return d.reply_is_stale(has_reply, interrupted, has_pending)


def finish(design: str, has_pending: bool, owns_guard: bool) -> str:
    """F2's decision.  The reference never touches a session that a command took over.

    pre: design in ("prefix", "seed", "reference")
    post: implies(design == "reference" and not owns_guard, __return__ == "taken-over")
    post: implies(__return__ == "drain", has_pending)
    post: implies(design != "reference", __return__ != "taken-over")
    """
    return d.finish_action(design, has_pending, owns_guard)


def inbound(design: str, kind: str, busy: bool) -> str:
    """H: control inputs are never queued (SPEC 8); idle messages always start.

    pre: design in ("prefix", "seed", "reference")
    pre: kind in ("text", "photo", "/stop", "/new", "/reset", "/approve")
    post: implies(not busy, __return__ == "start")
    post: implies(busy and kind in ("/stop", "/new", "/reset", "/approve"), __return__ in ("command", "direct"))
    post: implies(design == "prefix", __return__ != "command")
    post: implies(__return__ == "interrupt", kind == "text")
    """
    return d.inbound_action(design, kind, busy)


# --- the model's transition functions ------------------------------------------------


def _world(guard: int | None = None, owner: int | None = None, pending: tuple[int, ...] | None = None) -> World:
    messages = tuple(Message("text", 0) for _ in range(1 + max(pending or (0,))))
    return World(State((Session(guard, owner, pending),), messages=messages))


def model_release(guard_now: int | None, given: int | None) -> int | None:
    """seed's release(k, guard=g) in the model: G[k] goes only if it is still g.

    pre: guard_now is None or 0 <= guard_now <= 2
    pre: given is None or 0 <= given <= 2
    post: implies(given is not None and given != guard_now, __return__ == guard_now)
    post: implies(given is None or given == guard_now, __return__ is None)
    """
    w = _world(guard=guard_now)
    DESIGNS["seed"].release(w, 0, guard=given)  # type: ignore[attr-defined]
    return w.sessions[0].guard


def model_merge(pending: tuple[int, ...] | None, new: int) -> tuple[int, ...] | None:
    """The model's merge into the pending slot appends in arrival order.

    pre: new >= 0 and new <= 4
    pre: pending is None or (len(pending) <= 3 and all(0 <= x < new for x in pending))
    post: __return__ == (pending or ()) + (new,)
    """
    w = _world(pending=pending)
    DESIGNS["seed"].merge_pending(w, 0, new)
    return w.sessions[0].pending


def model_busy_interrupts(photo: bool) -> bool:
    """The model's busy step: a photo is queued without interrupting, a text interrupts.

    post: __return__ == (not photo)
    """
    w = _world(guard=0)
    w.messages.append(Message("photo" if photo else "text", 0))
    DESIGNS["seed"].busy(w, 0, len(w.messages) - 1)
    return w.is_set(0)


def model_stale(owner: int | None) -> bool:
    """seed's stale(k): a recorded owner that finished.  No owner is not stale.

    pre: owner is None or -1 <= owner <= 2
    post: __return__ == (owner == -1)
    """
    w = _world(guard=0, owner=owner)
    return bool(DESIGNS["seed"].stale(w, 0))  # type: ignore[attr-defined]


def model_heal_forgets(pending: tuple[int, ...] | None) -> bool:
    """seed's heal empties G, O and P (the reference's R6 exists because P is lost here).

    pre: pending is None or (len(pending) <= 2 and all(0 <= x <= 3 for x in pending))
    post: __return__
    """
    w = _world(guard=0, owner=DEAD, pending=pending)
    DESIGNS["seed"].heal(w, 0)  # type: ignore[attr-defined]
    s = w.sessions[0]
    return s.guard is None and s.owner is None and s.pending is None


def implies(a: bool, b: bool) -> bool:
    return (not a) or b
