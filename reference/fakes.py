"""The adapter's surroundings, scripted: messages, the runner, the platform, faults.

The adapter (`adapter.py`) gets its runner (the agent back end) and its
platform (sends, the stop-typing hook) injected, so that tests and users can
supply their own.  The scripted ones here:

* take exactly one loop step to answer (`await asyncio.sleep(0)`): any other
  ready task may run in between, and the controlled loop decides when the
  call completes; that is the model's "the await resumes at any time";
* consult a `FaultPlan` when they resume: a fault armed by the environment is
  taken by the next call of the right kind, which then raises, hangs (waits on
  a future nobody completes, until it is cancelled) or, for the cleanup hook,
  ends with `CancelledError`; every fault of SPEC section 4;
* write down what happened in a `Ledger` (messages accepted, runner calls,
  replies sent, calls that hang), which is what the refinement check reads
  to map a running adapter to a model state.  Nothing in the ledger is
  inferred from the adapter's code: it is what the outside world saw.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sessionguard.model.vocabulary import (
    CLEANUP_CANCELLED,
    CLEANUP_HANGS,
    CLEANUP_RAISES,
    ORDINARY,
    RUNNER_HANGS,
    RUNNER_RAISES,
    SEND_HANGS,
    SEND_RAISES,
)

from .decisions import RESET_LIKE


@dataclass(eq=False)
class Message:
    """One inbound chat message (compared by identity, like the platform's events)."""

    key: int
    kind: str
    name: str = ""

    def __repr__(self) -> str:
        return f"Message({self.name or '?'}: {self.kind} for k{self.key})"

    def __sessionguard_state__(self) -> tuple[int, str]:
        """For stateful search (loop/stateful.py): the name only labels the message
        for people (nothing in the gateway or the world reads it), so two messages
        of one kind for one session are interchangeable."""
        return (self.key, self.kind)


@dataclass(frozen=True, eq=False)
class Event:
    """What the runner is given: one message, or follow-ups merged in arrival order.

    `direct` marks a bypass command answered while the session is busy (B1, C1):
    the runner treats it as a command, not as a turn of the agent.
    """

    key: int
    messages: tuple[Message, ...]
    direct: bool = False

    @property
    def kind(self) -> str:
        return self.messages[0].kind

    def merged(self, message: Message) -> Event:
        return Event(self.key, (*self.messages, message))


@dataclass(frozen=True, eq=False)
class Reply:
    """A text for the chat; `answers` are the messages it is the reply to (none for a notice)."""

    key: int
    text: str
    answers: tuple[Message, ...] = ()


class RunnerError(Exception):
    """The runner raised (an injected fault)."""


class SendError(Exception):
    """A send raised (an injected fault)."""


class CleanupError(Exception):
    """A cleanup hook raised (an injected fault)."""


RUNNER_SITE = (RUNNER_RAISES, RUNNER_HANGS)
SEND_SITE = (SEND_RAISES, SEND_HANGS)
CLEANUP_SITE = (CLEANUP_RAISES, CLEANUP_CANCELLED, CLEANUP_HANGS)
SITES = (RUNNER_SITE, SEND_SITE, CLEANUP_SITE)


@dataclass
class FaultPlan:
    """Faults armed by the environment, each taken by the next call that can suffer it."""

    armed: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    enabled: bool = True  # off after shutdown: the model injects no fault once stopped

    def arm(self, fault: str) -> None:
        self.armed.append(fault)

    def __sessionguard_state__(self) -> tuple[object, ...]:
        """For stateful search (loop/stateful.py): which faults fired matters, not in what order
        (the order is only reported). Of the armed ones, only the order within each site
        matters: a call takes the first armed fault of its own site, so whether a runner
        fault was armed before or after a send fault is never looked at."""
        armed = tuple(tuple(f for f in self.armed if f in site) for site in SITES)
        elsewhere = tuple(f for f in self.armed if not any(f in site for site in SITES))
        return (armed, elsewhere, sorted(self.fired), self.enabled)

    def take(self, site: tuple[str, ...]) -> str | None:
        if not self.enabled:
            return None
        for i, fault in enumerate(self.armed):
            if fault in site:
                del self.armed[i]
                self.fired.append(fault)
                return fault
        return None


@dataclass
class Ledger:
    """What the world outside the adapter saw, in model terms (message ids = arrival order)."""

    accepted: list[Message] = field(default_factory=list)
    ids: dict[Message, int] = field(default_factory=dict)
    runs: dict[Message, int] = field(default_factory=dict)
    answered: set[Message] = field(default_factory=set)
    sent: set[Message] = field(default_factory=set)
    last_run: dict[int, int] = field(default_factory=dict)
    hanging: set[asyncio.Task[object]] = field(default_factory=set)
    busy_acks: int = 0
    log: list[str] = field(default_factory=list)

    def __sessionguard_state__(self) -> tuple[object, ...]:
        """For stateful search (loop/stateful.py): what can change a later step or verdict.

        The counts of runner calls per message and the last run per session by
        message id, whatever order the calls came in (only looked up); not the
        log nor the count of busy acknowledgements, which are only reported.
        """
        ids = self.ids
        return (
            self.accepted,
            sorted((ids[m], n) for m, n in self.runs.items()),
            self.answered,
            self.sent,
            sorted(self.last_run.items()),
            self.hanging,
        )

    def accept(self, message: Message) -> int:
        mid = len(self.accepted)
        self.accepted.append(message)
        self.ids[message] = mid
        return mid

    def ran(self, event: Event) -> None:
        for m in event.messages:
            self.runs[m] = min(2, self.runs.get(m, 0) + 1)
            if m.kind in ORDINARY:
                self.last_run[event.key] = max(self.last_run.get(event.key, -1), self.ids[m])

    def name(self, event: Event | Reply) -> str:
        msgs = event.messages if isinstance(event, Event) else event.answers
        return "+".join(f"m{self.ids[m]}" for m in msgs if m in self.ids) or "-"


async def _hang(ledger: Ledger, task: asyncio.Task[Any] | None) -> None:
    """Wait forever: only a cancellation ends this (a wedged call).  While it
    waits, the ledger lists the task as hanging (the observation needs it)."""
    assert task is not None
    ledger.hanging.add(task)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        ledger.hanging.discard(task)


class ScriptedRunner:
    """The agent back end, with its per-session record R[k] of the running agent.

    A normal event occupies R[k] from the call until it ends.  A direct
    command acts when it returns: /stop answers "No active task to stop" if
    R[k] is empty, otherwise interrupts the agent and clears R[k]; /new and
    /reset clear R[k].  (An interrupted agent is cooperative in that the loop
    may let its call return at any step; a wedged one is a RUNNER_HANGS fault.)
    """

    def __init__(self, ledger: Ledger, faults: FaultPlan) -> None:
        self.ledger = ledger
        self.faults = faults
        self.active: dict[int, asyncio.Task[object] | None] = {}  # R[k]

    async def __call__(self, event: Event) -> Reply:
        task = asyncio.current_task()
        k = event.key
        ledger = self.ledger
        ledger.ran(event)
        if not event.direct:
            self.active[k] = task
        normal = False
        try:
            await asyncio.sleep(0)  # the agent works; anything else may run meanwhile
            fault = self.faults.take(RUNNER_SITE)
            if fault == RUNNER_RAISES:
                normal = True
                raise RunnerError(f"runner failed on {ledger.name(event)}")
            if fault == RUNNER_HANGS:
                await _hang(ledger, task)
            normal = True
            if event.direct:
                return Reply(k, self._command(event), event.messages)
            return Reply(k, f"reply to {ledger.name(event)}", event.messages)
        finally:
            if normal or event.direct:
                # A direct command's call ends as "answered" however it ends
                # (a timed-out command gets an error notice); an agent's turn
                # only when it returned or raised, not when it was cancelled.
                ledger.answered.update(event.messages)
            if not event.direct and self.active.get(k) is task:
                self.active[k] = None

    def _command(self, event: Event) -> str:
        kind = event.kind
        k = event.key
        if kind == "/stop":
            if self.active.get(k) is None:
                return "No active task to stop"
            self.active[k] = None
            return "stopped"
        if kind in RESET_LIKE:
            self.active[k] = None
            return "fresh conversation"
        return "answered"


class ScriptedPlatform:
    """The chat platform's side: sends, the busy acknowledgement, the stop-typing hook."""

    def __init__(self, ledger: Ledger, faults: FaultPlan) -> None:
        self.ledger = ledger
        self.faults = faults

    async def send(self, reply: Reply) -> None:
        task = asyncio.current_task()
        await asyncio.sleep(0)
        fault = self.faults.take(SEND_SITE)
        if fault == SEND_RAISES:
            raise SendError(f"send failed: {reply.text}")
        if fault == SEND_HANGS:
            await _hang(self.ledger, task)
        self.ledger.sent.update(reply.answers)
        self.ledger.log.append(f"sent k{reply.key}: {reply.text}")

    def busy_ack(self, key: int) -> None:
        """ "Interrupting current task..." (not awaited, as in the model)."""
        self.ledger.busy_acks += 1

    async def stop_typing(self, key: int) -> None:
        """The platform's stop-typing call and cleanup hooks: may raise, be cancelled, hang."""
        task = asyncio.current_task()
        await asyncio.sleep(0)
        fault = self.faults.take(CLEANUP_SITE)
        if fault == CLEANUP_RAISES:
            raise CleanupError("stop-typing hook failed")
        if fault == CLEANUP_CANCELLED:
            raise asyncio.CancelledError("stop-typing hook was cancelled")
        if fault == CLEANUP_HANGS:
            await _hang(self.ledger, task)
