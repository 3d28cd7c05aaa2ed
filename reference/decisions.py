"""The adapter's decisions, as pure synchronous functions (the sans-IO core).

Every choice the asyncio shell (`adapter.py`) makes between two awaits is one
of these functions of plain values: what to do with an inbound message, whether
a guard may be released, whether a lock is stale, how a follow-up merges into
the pending slot, whether a reply is stale, what the end of a task's `finally`
does.  Keeping them free of asyncio is what lets CrossHair check their
contracts (`contracts.py`): CrossHair skips `async def` functions, so anything
worth proving has to live out here.

Guards are compared with `is`, never `==`: in the gateway each guard is a
distinct `asyncio.Event`, and "still the same guard" is the whole point of
release-by-identity (SPEC 2, property 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

PREFIX, SEED, REFERENCE = "prefix", "seed", "reference"
DESIGNS = (PREFIX, SEED, REFERENCE)

TEXT, PHOTO = "text", "photo"
RESET_LIKE = frozenset({"/stop", "/new", "/reset"})
BYPASS = RESET_LIKE | {"/approve", "/deny", "/status"}

# What handle_message does with an inbound message (step H of SPEC's appendix).
START = "start"  # idle: install a guard and a background task
COMMAND = "command"  # busy, /stop /new /reset: the command handoff (C1..C4)
DIRECT = "direct"  # busy, another bypass command: runner, reply (B1, B2)
QUEUE = "queue"  # busy, a photo: merge into P[k], no interrupt
INTERRUPT = "interrupt"  # busy, anything else: merge into P[k] and set G[k]


def inbound_action(design: str, kind: str, busy: bool) -> str:
    """What step H does with a message of `kind` (after any heal).

    prefix has no handoff: every bypass command, reset-like or not, goes
    straight to the runner while the session is busy.
    """
    if not busy:
        return START
    if kind in RESET_LIKE and design != PREFIX:
        return COMMAND
    if kind in BYPASS:
        return DIRECT
    if kind == PHOTO:
        return QUEUE
    return INTERRUPT


def may_release(current: object | None, guard: object | None) -> bool:
    """release(k, guard=g): may G[k] (now `current`) be deleted?

    Only if something is installed and, when a guard is given, it is that very
    object.  No guard given means "whatever is there" (prefix's behaviour).
    """
    if current is None:
        return False
    return guard is None or current is guard


def is_stale(has_owner: bool, owner_done: bool) -> bool:
    """seed's stale(k): a recorded owner that has finished.  No owner is not stale."""
    return has_owner and owner_done


def needs_heal(busy: bool, has_owner: bool, owner_done: bool) -> bool:
    """On entry to handle_message: is G[k] a dead lock that must be healed first?"""
    return busy and is_stale(has_owner, owner_done)


def merge_pending(pending: Sequence[T] | None, new: T) -> tuple[T, ...]:
    """One pending slot: a follow-up is appended, so the merge keeps arrival order."""
    return (*(pending or ()), new)


def reply_is_stale(has_reply: bool, interrupted: bool, has_pending: bool) -> bool:
    """P2: a reply is superseded when a follow-up interrupted the run and waits in P[k]."""
    return has_reply and interrupted and has_pending


# What the end of a task's finally does (F2).
DRAIN = "drain"  # hand the pending slot to a new task
RELEASE = "release"  # delete G[k] (by identity, except in prefix)
TAKEN_OVER = "taken-over"  # reference: a command owns the session now; leave it alone


def finish_action(design: str, has_pending: bool, owns_guard: bool) -> str:
    """F2 for each design.

    prefix and seed drain whatever is pending, whoever holds G[k]; reference
    touches the pending slot and the guard only while G[k] is still the
    task's own guard (R4), otherwise a command has taken the session over and
    will start the follow-ups itself.
    """
    if design == REFERENCE and not owns_guard:
        return TAKEN_OVER
    return DRAIN if has_pending else RELEASE


def command_error_action(guard_is_cg: bool, has_owner: bool, has_old: bool) -> str:
    """seed's C-error: restore the old guard, release the command guard, or do nothing."""
    if not guard_is_cg:
        return "not-ours"
    if has_owner and has_old:
        return "restore-old"
    return RELEASE
