"""Named scenarios: who sends what, which faults the environment may inject.

A scenario is a list of *phases*.  Everything in a phase is started at once,
each inbound message and each fault as its own task, so the controlled loop
decides when each message arrives and when each fault is armed, relative to
every await of the adapter.  The next phase starts when the previous one
has gone quiet (nothing left to run but hung calls and timers), which is how
"a wedged runner, *then* /stop" is written.

A fault is armed when its task runs and strikes the next call that can
suffer it (the runner for runner faults, a send, the stop-typing hook); a
task cancellation strikes the oldest live processing task; shutdown happens
when its task runs.  So the explorer, not the scenario, picks where a fault
lands.  Scenarios are plain data and round-trip through JSON, so that a
failing run of an ad-hoc scenario (Hypothesis builds them) can be replayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sessionguard.model import Bounds
from sessionguard.model.vocabulary import (
    APPROVE,
    CLEANUP_CANCELLED,
    CLEANUP_RAISES,
    FAULTS,
    KINDS,
    NEW,
    PHOTO,
    RESET,
    RUNNER_HANGS,
    RUNNER_RAISES,
    SEND_HANGS,
    SEND_RAISES,
    SHUTDOWN,
    STOP,
    TASK_CANCELLED,
    TEXT,
)


@dataclass(frozen=True)
class Send:
    """An inbound message of `kind` for session `key`."""

    kind: str
    key: int = 0


@dataclass(frozen=True)
class Fault:
    """A fault of SPEC section 4 that the environment injects (see the module docstring)."""

    kind: str


Action = Send | Fault


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phases: tuple[tuple[Action, ...], ...]

    def __post_init__(self) -> None:
        for phase in self.phases:
            for a in phase:
                if isinstance(a, Send) and a.kind not in KINDS:
                    raise ValueError(f"unknown message kind {a.kind!r}; known: {', '.join(KINDS)}")
                if isinstance(a, Fault) and a.kind not in FAULTS:
                    raise ValueError(f"unknown fault {a.kind!r}; known: {', '.join(FAULTS)}")

    @property
    def actions(self) -> list[Action]:
        return [a for phase in self.phases for a in phase]

    @property
    def sessions(self) -> int:
        return 1 + max((a.key for a in self.actions if isinstance(a, Send)), default=0)

    def bounds(self) -> Bounds:
        """The model bounds that cover this scenario exactly."""
        sends = [a for a in self.actions if isinstance(a, Send)]
        faults = [a for a in self.actions if isinstance(a, Fault)]
        kinds = tuple(k for k in KINDS if any(s.kind == k for s in sends)) or (TEXT,)
        fault_kinds = tuple(f for f in FAULTS if any(x.kind == f for x in faults))
        return Bounds(
            messages=len(sends),
            faults=len(faults),
            sessions=self.sessions,
            kinds=kinds,
            fault_kinds=fault_kinds,
        )

    def describe(self) -> str:
        parts = []
        for i, phase in enumerate(self.phases):
            items = ", ".join(
                f"{a.kind}" + (f"@k{a.key}" if a.key else "") if isinstance(a, Send) else f"fault:{a.kind}"
                for a in phase
            )
            parts.append(f"phase {i + 1}: {items}")
        return "; then ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "phases": [
                [
                    {"send": a.kind, "key": a.key} if isinstance(a, Send) else {"fault": a.kind}
                    for a in phase
                ]
                for phase in self.phases
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        phases = []
        for phase in data["phases"]:
            actions: list[Action] = []
            for a in phase:
                if "send" in a:
                    actions.append(Send(str(a["send"]), int(a.get("key", 0))))
                else:
                    actions.append(Fault(str(a["fault"])))
            phases.append(tuple(actions))
        return cls(str(data["name"]), str(data.get("description", "")), tuple(phases))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))


def _s(name: str, description: str, *phases: tuple[Action, ...]) -> Scenario:
    return Scenario(name, description, phases)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _s("followups", "two follow-ups while the first message runs", (Send(TEXT), Send(TEXT), Send(TEXT))),
        _s("photo-burst", "a text, then a burst of photos queued without interrupting",
           (Send(TEXT), Send(PHOTO), Send(PHOTO))),
        _s("stop-midrun", "/stop while a message runs, with a follow-up",
           (Send(TEXT), Send(STOP), Send(TEXT))),
        _s("new-midrun", "/new while a message runs, with a follow-up",
           (Send(TEXT), Send(NEW), Send(TEXT))),
        _s("reset-midrun", "/reset while a message runs, with a follow-up",
           (Send(TEXT), Send(RESET), Send(TEXT))),
        _s("double-stop", "two /stop while a message runs and a follow-up waits",
           (Send(TEXT), Send(TEXT), Send(STOP), Send(STOP))),
        _s("approve-while-busy", "/approve answered directly while a run waits",
           (Send(TEXT), Send(APPROVE), Send(TEXT))),
        _s("dead-owner", "a cleanup hook raises, ending the finally early; then a new message",
           (Send(TEXT), Fault(CLEANUP_RAISES)), (Send(TEXT),)),
        _s("dead-owner-cancelled", "a cleanup hook is cancelled; then a new message",
           (Send(TEXT), Fault(CLEANUP_CANCELLED)), (Send(TEXT),)),
        _s("cancelled-task", "a processing task is cancelled from outside; then a new message",
           (Send(TEXT), Fault(TASK_CANCELLED)), (Send(TEXT),)),
        _s("wedged-stop", "the runner hangs (ignores interrupts), a follow-up waits; then /stop, then a message",
           (Send(TEXT), Fault(RUNNER_HANGS), Send(TEXT)), (Send(STOP),), (Send(TEXT),)),
        _s("cancel-followup", "a task is cancelled from outside while a follow-up waits",
           (Send(TEXT), Send(TEXT), Fault(TASK_CANCELLED))),
        _s("stop-error", "/stop while a message runs, and the runner fails on the /stop; then a message",
           (Send(TEXT), Send(STOP), Fault(RUNNER_RAISES)), (Send(TEXT),)),
        _s("runner-error", "the runner raises while a follow-up arrives", (Send(TEXT), Fault(RUNNER_RAISES), Send(TEXT))),
        _s("followup-error", "the runner fails on a follow-up while two more arrive",
           (Send(TEXT), Send(TEXT), Fault(RUNNER_RAISES), Send(TEXT), Send(TEXT))),
        _s("send-failure", "a send raises while a follow-up arrives", (Send(TEXT), Fault(SEND_RAISES), Send(TEXT))),
        _s("send-hangs", "a send never returns; then /stop, then a message",
           (Send(TEXT), Fault(SEND_HANGS)), (Send(STOP),), (Send(TEXT),)),
        _s("shutdown", "shutdown while messages arrive", (Send(TEXT), Send(TEXT), Fault(SHUTDOWN), Send(TEXT))),
        _s("all-faults", "every fault of SPEC 4 armed at once, while messages and /stop arrive",
           (Send(TEXT), Send(TEXT), Send(STOP), Send(PHOTO), Send(APPROVE),
            *(Fault(f) for f in FAULTS)), (Send(TEXT),)),
        _s("two-chats", "two sessions busy at once, with a follow-up each",
           (Send(TEXT, 0), Send(TEXT, 1), Send(TEXT, 0), Send(TEXT, 1))),
    )
}
