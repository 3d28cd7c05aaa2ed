"""One run of a scenario against an adapter, checked step by step against the model.

`scenario_run(design, scenario)` is a coroutine factory for the controlled
loop (`sessionguard.loop.run`, `explore_dfs`, ...).  Each run builds a fresh
`Rig` (ledger, fault plan, scripted runner and platform, the adapter), starts
the scenario's phases, and registers a `Refinement` observer that maps the
adapter to the model after every loop step.  The run's value is an `Outcome`
with the properties the adapter violated; a step that is no model transition
ends the run with the loop's "violation" verdict (a `RefinementMismatch`).

Quiet: a phase ends when main's `sleep(QUIET)` returns.  The loop's clock only
jumps to a timer when nothing else is ready, so main wakes up only once every
task is done, hung, or waiting on a timer later than QUIET; QUIET is longer
than every timeout of the adapter, so timeouts fire inside the phase.
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessionguard.loop import RunResult, Schedule
from sessionguard.loop.controlled import add_observer
from sessionguard.model import DESIGNS, Design
from sessionguard.model.vocabulary import SHUTDOWN, STOP, TASK_CANCELLED

from .adapter import Adapter, make_adapter
from .fakes import FaultPlan, Ledger, Message, ScriptedPlatform, ScriptedRunner
from .refinement import Finding, Refinement, RefinementMismatch, model_index
from .scenarios import SCENARIOS, Action, Fault, Scenario, Send

QUIET = 3600.0  # virtual seconds; longer than the adapter's command timeout

AdapterFactory = Callable[..., Adapter]


@dataclass
class Rig:
    """Everything one run needs: the adapter and the world around it."""

    design: Design
    adapter: Adapter
    ledger: Ledger
    faults: FaultPlan
    runner: ScriptedRunner
    platform: ScriptedPlatform
    sessions: int
    refinement: Refinement | None = None
    names: dict[Message, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a run found: violated properties (first occurrence each) and statistics."""

    findings: dict[str, Finding]
    steps_checked: int
    candidates: int
    faults_fired: tuple[str, ...]
    messages: int

    @property
    def violated(self) -> set[str]:
        return set(self.findings)


def make_rig(design_name: str, sessions: int, adapter_factory: AdapterFactory | None = None) -> Rig:
    ledger = Ledger()
    faults = FaultPlan()
    runner = ScriptedRunner(ledger, faults)
    platform = ScriptedPlatform(ledger, faults)
    if adapter_factory is None:
        adapter = make_adapter(design_name, runner, platform)
    else:
        adapter = adapter_factory(runner, platform)
    return Rig(DESIGNS[design_name], adapter, ledger, faults, runner, platform, sessions)


async def _deliver(rig: Rig, message: Message) -> None:
    """The platform delivers one message: accepted (given an id), then handled."""
    if rig.adapter.stopped:
        return  # the gateway is down: nothing is accepted any more
    rig.ledger.accept(message)
    try:
        await rig.adapter.handle_message(message)
    except Exception as exc:  # the error ends the handling; the platform logs it
        rig.ledger.log.append(f"handle_message({message!r}) raised {exc!r}")


async def _inject(rig: Rig, kind: str) -> None:
    """The environment injects one fault (SPEC section 4)."""
    adapter = rig.adapter
    if adapter.stopped:
        return
    if kind == SHUTDOWN:
        adapter.shutdown()
        rig.faults.enabled = False
    elif kind == TASK_CANCELLED:
        for job in adapter.jobs:
            task = job.task
            # A task no one has cancelled yet (the model cancels a task at most
            # once from outside, and not while another cancellation is pending).
            if task is not None and not task.done() and task.cancelling() == 0:
                task.cancel()
                return
    else:
        rig.faults.arm(kind)


def _start(rig: Rig, action: Action, n: int) -> None:
    loop = asyncio.get_running_loop()
    if isinstance(action, Send):
        message = Message(action.key, action.kind, f"{action.kind}#{n}")
        loop.create_task(_deliver(rig, message), name=f"deliver-{action.kind}-k{action.key}")
    else:
        loop.create_task(_inject(rig, action.kind), name=f"fault-{action.kind}")


def scenario_run(
    design_name: str,
    scenario: Scenario,
    *,
    adapter_factory: AdapterFactory | None = None,
    check: bool = True,
) -> Callable[[], Coroutine[Any, Any, Outcome]]:
    """A coroutine factory: one fresh run of `scenario` on the named design per call."""
    if design_name not in DESIGNS:
        raise ValueError(f"unknown design {design_name!r}; known: {', '.join(DESIGNS)}")
    design = DESIGNS[design_name]
    bounds = scenario.bounds()

    async def main() -> Outcome:
        rig = make_rig(design_name, scenario.sessions, adapter_factory)
        refinement: Refinement | None = None
        if check:
            refinement = Refinement(rig, model_index(design, bounds))
            rig.refinement = refinement
            add_observer(refinement)
        loop = asyncio.get_running_loop()
        n = 0
        for phase in scenario.phases:
            for action in phase:
                _start(rig, action, n)
                n += 1
            await asyncio.sleep(QUIET)
        # The user's way out of a wedged session (SPEC 9, 10): one /stop per
        # session, beyond the scenario's own messages, when some call hangs.
        if rig.ledger.hanging and not rig.adapter.stopped:
            if refinement is not None:
                refinement.allow_recovery(rig.sessions)
            for k in range(rig.sessions):
                _start(rig, Send(STOP, k), n)
                n += 1
            await asyncio.sleep(QUIET)
        if refinement is not None:
            refinement.settle(loop.steps)  # type: ignore[attr-defined]
        return Outcome(
            findings=dict(refinement.findings) if refinement else {},
            steps_checked=refinement.steps_checked if refinement else 0,
            candidates=len(refinement.candidates()) if refinement else 0,
            faults_fired=tuple(rig.faults.fired),
            messages=len(rig.ledger.accepted),
        )

    return main


# --- judging a run ------------------------------------------------------------------


def findings_of(result: RunResult) -> dict[str, Finding]:
    value = result.value
    return dict(value.findings) if isinstance(value, Outcome) else {}


def mismatch_of(result: RunResult) -> RefinementMismatch | None:
    return result.violation if isinstance(result.violation, RefinementMismatch) else None


def failure_predicate(design_name: str, *, include_known: bool = False) -> Callable[[RunResult], bool]:
    """A run fails on a mismatch, a crash, or a property not declared known for the design."""
    known = set(DESIGNS[design_name].known)

    def is_failure(result: RunResult) -> bool:
        if result.verdict != "ok":
            return True
        found = set(findings_of(result))
        return bool(found if include_known else found - known)

    return is_failure


def violates(*props: str) -> Callable[[RunResult], bool]:
    """A predicate: the run violated one of `props` (or any property when none are given)."""

    def is_failure(result: RunResult) -> bool:
        found = set(findings_of(result))
        return bool(found & set(props)) if props else bool(found)

    return is_failure


# --- replay tokens ------------------------------------------------------------------


def encode_token(design: str, scenario: Scenario, schedule: Schedule) -> str:
    """A compact, copy-pasteable token: design, scenario and the schedule, zipped."""
    data = {"design": design, "scenario": scenario.to_json(), "schedule": json.loads(schedule.to_json())}
    raw = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, Scenario, Schedule]:
    padded = token + "=" * (-len(token) % 4)
    try:
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(padded)))
    except Exception as exc:
        raise ValueError(f"not a replay token ({exc.__class__.__name__})") from None
    return load_document(data)


def replay_document(design: str, scenario: Scenario, schedule: Schedule) -> dict[str, Any]:
    return {"design": design, "scenario": scenario.to_json(), "schedule": json.loads(schedule.to_json())}


def load_document(data: Any) -> tuple[str, Scenario, Schedule]:
    if not isinstance(data, dict) or not {"design", "scenario", "schedule"} <= set(data):
        raise ValueError("not a replay file: expected an object with design, scenario and schedule")
    scenario_data = data["scenario"]
    if isinstance(scenario_data, str):
        if scenario_data not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario_data!r}")
        scenario = SCENARIOS[scenario_data]
    else:
        scenario = Scenario.from_json(scenario_data)
    return str(data["design"]), scenario, Schedule.from_json(json.dumps(data["schedule"]))


def narrate(design_name: str, scenario: Scenario, schedule: Schedule) -> list[str]:
    """The schedule as a numbered story: which lane ran, and what the model saw it do."""
    lines: list[str] = []
    steps = schedule.steps
    from sessionguard.loop import replay

    seen: list[tuple[int, str, str]] = []

    def observer_factory() -> Callable[[int, str], None]:
        return lambda step, label: None

    factory = scenario_run(design_name, scenario)
    holder: dict[str, Refinement] = {}

    async def main() -> Outcome:
        # Wrap the scenario's own main to hear each transition the model took.
        coro = factory()
        return await coro

    _ = (observer_factory, holder, main)
    result = replay(factory, schedule)
    for i, (choice, label) in enumerate(steps):
        mark = f" [choice {choice}]" if choice else ""
        seen.append((i, label, mark))
    for i, label, mark in seen:
        lines.append(f"{i:3d}. {label}{mark}")
    lines.append(f"verdict: {result.verdict}")
    return lines


def choices_chooser(choices: Sequence[int]) -> Callable[[int, Sequence[str]], int]:
    """A chooser from raw choices (each taken modulo the ready lanes), then FIFO."""

    def chooser(step: int, lanes: Sequence[str]) -> int:
        if step < len(choices):
            return choices[step] % len(lanes)
        return 0

    return chooser
