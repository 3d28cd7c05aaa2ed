"""The shared vocabulary of every design: messages, faults, bounds and states.

A state of the model is one immutable, hashable value (`State`).  Every design
(`prefix`, `seed`, `reference`) uses these same types; the designs differ only
in their rules (see `model/design.py` and the three design modules).

Names follow SPEC.md: per session key `k` the adapter keeps a guard `G[k]`, an
owner task `O[k]` and a pending slot `P[k]`; the runner keeps `R[k]`.  Guards
are tokens (small integers): two guards are the same guard only if their
tokens are equal, which is what "identity matters" means in the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

# --- inbound message kinds (SPEC section 2) ----------------------------------

TEXT = "text"
PHOTO = "photo"
STOP = "/stop"
NEW = "/new"
RESET = "/reset"
APPROVE = "/approve"

KINDS: tuple[str, ...] = (TEXT, PHOTO, STOP, NEW, RESET, APPROVE)
RESET_LIKE = frozenset({STOP, NEW, RESET})
BYPASS = frozenset({STOP, NEW, RESET, APPROVE})  # answered directly, never queued
ORDINARY = frozenset({TEXT, PHOTO})

# --- faults the environment may inject (SPEC section 4) ----------------------

RUNNER_RAISES = "runner-raises"
RUNNER_HANGS = "runner-hangs"  # a wedged agent: ignores interrupts, ends only if cancelled
SEND_RAISES = "send-raises"
SEND_HANGS = "send-hangs"
CLEANUP_RAISES = "cleanup-raises"
CLEANUP_CANCELLED = "cleanup-cancelled"
CLEANUP_HANGS = "cleanup-hangs"
TASK_CANCELLED = "task-cancelled"  # a processing task cancelled from outside
SHUTDOWN = "shutdown"

FAULTS: tuple[str, ...] = (
    RUNNER_RAISES,
    RUNNER_HANGS,
    SEND_RAISES,
    SEND_HANGS,
    CLEANUP_RAISES,
    CLEANUP_CANCELLED,
    CLEANUP_HANGS,
    TASK_CANCELLED,
    SHUTDOWN,
)
HANGS = frozenset({RUNNER_HANGS, SEND_HANGS, CLEANUP_HANGS})

# --- fates of an accepted message (SPEC section 5, property 5) ---------------

ANSWERED = "answered"  # the runner finished on it (a reply, or an error notice)
DISCARDED = "discarded"  # dropped by an explicit /stop, /new or /reset
ABORTED = "aborted"  # its own task was cancelled by a fault (the fault's own cost)
SHUT_DOWN = "shut-down"  # the gateway shut down before it ran
DONE = "done"  # one of the above, forgotten once nothing can depend on which (symmetry.py)
OK_FATES = frozenset({ANSWERED, DISCARDED, ABORTED, SHUT_DOWN, DONE})

# Reply states of a message whose runner call returned a reply.
OWED = "owed"
SENT = "sent"
STALE = "stale"  # superseded by a follow-up (the design's stale-reply rule)
SEND_FAILED = "send-failed"  # its own send raised or hung
DROPPED = "dropped"  # its holder was cancelled before sending (by a command or a fault)

DEAD = -1  # O[k] names a task that has finished

# Positions of a processing task, one per await of SPEC's appendix.
START = "start"  # created, first step (P1) not yet run
RUNNER = "P1:runner"  # awaiting runner(e)
SEND_REPLY = "P2:send"  # awaiting send(reply)
INBAND = "P3:cleanup"  # awaiting the in-band cleanup before the inline follow-up
SEND_ERROR = "E1:send-error"  # awaiting send(error notice)
TYPING = "F1:typing"  # first cleanup await (waits for the cancelled typing task)
HOOKS = "F1:hooks"  # second cleanup await (the platform's stop-typing call, hooks)
REAP = "done:callback"  # the task is done; its done-callback has yet to run (reference)

# Positions of an inbound handler that awaits (bypass commands and the handoff).
B_RUNNER = "B1:runner"
B_SEND = "B2:send"
C_RUNNER = "C1:runner"
C_AWAIT = "C2:await-owner"
C_SEND = "C3:send"


@dataclass(frozen=True)
class Bounds:
    """How much of the environment the checker explores.

    messages: inbound messages in all (every kind counts, commands included).
    faults: faults in all, of the kinds in `fault_kinds`.
    sessions: session keys (chats); sessions interact only at shutdown.
    kinds: which inbound kinds may arrive.
    """

    messages: int = 3
    faults: int = 1
    sessions: int = 1
    kinds: tuple[str, ...] = (TEXT, PHOTO, STOP, APPROVE)
    fault_kinds: tuple[str, ...] = FAULTS

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown message kind {kind!r}; known: {', '.join(KINDS)}")
        for fault in self.fault_kinds:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")


class Message(NamedTuple):
    """An accepted inbound message and what became of it."""

    kind: str
    session: int
    runs: int = 0  # runner calls on an event containing it (2 means "twice or more")
    fate: str | None = None
    reply: str | None = None
    during: tuple[int, ...] = ()  # reset-like commands in flight for its session at arrival


class Session(NamedTuple):
    """The adapter's and the runner's records for one session key."""

    guard: int | None = None  # G[k]
    owner: int | None = None  # O[k]: a live task id, DEAD, or None
    pending: tuple[int, ...] | None = None  # P[k]: merged follow-ups in arrival order
    runner: int | None = None  # R[k]: the task whose agent is running, or None
    last_run: int = -1  # highest ordinary message id the runner was called with


class Level(NamedTuple):
    """One activation of process(e) inside a task (P3 recurses in the same task)."""

    event: tuple[int, ...]
    guard: int | None = None  # g, taken in P1
    popped: tuple[int, ...] | None = None  # P3 popped this and runs it after the cleanup
    reply: bool = False  # a reply is about to be sent (between P2 and its send)


class Task(NamedTuple):
    """A background processing task `process(e)`."""

    tid: int
    session: int
    pc: str
    levels: tuple[Level, ...]
    cancel: str | None = None  # a pending cancellation: 'command', 'fault' or 'shutdown'
    hung: bool = False  # its current await never completes unless cancelled
    unwind: str | None = None  # exception passing through the finally: 'cancel' | 'error'


class Handler(NamedTuple):
    """An inbound handle_message call that is awaiting (bypass or command handoff)."""

    mid: int  # the message it handles
    session: int
    pc: str
    old: int | None = None  # C1: the guard the command replaced
    cg: int | None = None  # C1: the command guard it installed
    target: int | None = None  # C2: the task it cancelled and awaits
    hung: bool = False


class State(NamedTuple):
    sessions: tuple[Session, ...]
    tasks: tuple[Task, ...] = ()
    handlers: tuple[Handler, ...] = ()
    messages: tuple[Message, ...] = ()
    set_guards: frozenset[int] = frozenset()  # guards whose event is set (interrupt asked)
    faults_used: int = 0
    stopped: bool = False  # the gateway has shut down
    extra: int = 0  # recovery /stop inputs still allowed beyond the bound (liveness)


def initial_state(bounds: Bounds) -> State:
    return State(sessions=tuple(Session() for _ in range(bounds.sessions)))


@dataclass(slots=True)  # one is made for every transition: slots make that cheaper
class Step:
    """One transition: who moved, which rule of the design, and what happened."""

    actor: str
    rule: str
    detail: str = ""
    fault: str | None = None
    message: int | None = None  # the inbound message, for an arrival
    effects: tuple[tuple[Any, ...], ...] = ()  # guard changes and runner calls (see world.py)

    def __str__(self) -> str:
        text = f"{self.actor}: {self.rule}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class Trace:
    """A path through the model: the states and the steps between them."""

    states: list[State] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)
