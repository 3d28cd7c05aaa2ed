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


def _hung_sessions(rig: Rig) -> list[int]:
    """The sessions in which some call hangs: where the user sends a recovery /stop."""
    adapter = rig.adapter
    keys = set()
    for task in rig.ledger.hanging:
        job = adapter.job_of.get(task)  # type: ignore[arg-type]
        if job is not None:
            keys.add(job.key)
    for h in adapter.handlings.values():
        if h.task in rig.ledger.hanging:
            keys.add(h.message.key)
    return sorted(keys)


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
    record: bool = False,
    on_rig: Callable[[Rig], None] | None = None,
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
            if record:
                refinement.trace = []
            rig.refinement = refinement
            add_observer(refinement)
        if on_rig is not None:
            on_rig(rig)
        loop = asyncio.get_running_loop()
        n = 0
        for phase in scenario.phases:
            for action in phase:
                _start(rig, action, n)
                n += 1
            await asyncio.sleep(QUIET)
        # The user's way out of a wedged session (SPEC 9, 10): one /stop for
        # each session in which a call hangs, beyond the scenario's messages.
        # As in the model's liveness check, every hung state gets it, so this
        # repeats while calls still hang (a recovery may run into another
        # armed hang), at most once per fault of the scenario.
        rounds = 1 + sum(1 for a in scenario.actions if isinstance(a, Fault))
        while (hung := _hung_sessions(rig)) and not rig.adapter.stopped and rounds > 0:
            rounds -= 1
            if refinement is not None:
                refinement.allow_recovery(len(hung))
            for k in hung:
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
    """A compact, copy-pasteable token: design, scenario, Python version and the choices.

    Labels are left out (the choices determine the run); `decode_token` runs
    the choices once to get the labelled schedule back, and refuses a token
    made on another Python minor version.
    """
    named = SCENARIOS.get(scenario.name) == scenario
    data = {
        "d": design,
        "s": scenario.name if named else scenario.to_json(),
        "py": schedule.python,
        "c": list(schedule.choices),
    }
    return pack_token(data)


def pack_token(data: dict[str, Any]) -> str:
    """A JSON object as a compact, copy-pasteable token (zlib, URL-safe base64)."""
    raw = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unpack_token(token: str) -> dict[str, Any]:
    """The JSON object of `pack_token`; ValueError when `token` is not one."""
    padded = token.strip() + "=" * (-len(token.strip()) % 4)
    try:
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(padded)))
    except Exception as exc:
        raise ValueError(f"not a replay token ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ValueError("not a replay token (no object inside)")
    return data


def decode_token(token: str) -> tuple[str, Scenario, Schedule]:
    """Design, scenario and the labelled schedule of a token (see `encode_token`)."""
    from sessionguard.loop import run
    from sessionguard.loop.errors import ScheduleVersionError

    data = unpack_token(token)
    try:
        design, scenario_data, python, choices = data["d"], data["s"], data["py"], data["c"]
    except KeyError as exc:
        raise ValueError(f"not a replay token of explore (no {exc})") from None
    if not (isinstance(design, str) and isinstance(python, str) and isinstance(choices, list)
            and all(type(c) is int for c in choices)):
        raise ValueError("not a replay token of explore (a field of the wrong type)")
    scenario = _scenario(scenario_data)
    Schedule((), python).check_version()  # refuse another Python minor version, with the reason
    result = run(scenario_run(design, scenario, check=False), choices_chooser([int(c) for c in choices]))
    if result.steps < len(choices):
        raise ScheduleVersionError("the token's run ended early: it was made by different code")
    return str(design), scenario, result.schedule


def _scenario(data: Any) -> Scenario:
    if isinstance(data, str):
        if data not in SCENARIOS:
            raise ValueError(f"unknown scenario {data!r}")
        return SCENARIOS[data]
    try:
        return Scenario.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a malformed scenario ({exc.__class__.__name__}: {exc})") from None


def replay_document(design: str, scenario: Scenario, schedule: Schedule) -> dict[str, Any]:
    return {"design": design, "scenario": scenario.to_json(), "schedule": json.loads(schedule.to_json())}


def load_document(data: Any) -> tuple[str, Scenario, Schedule]:
    if not isinstance(data, dict) or not {"design", "scenario", "schedule"} <= set(data):
        raise ValueError("not a replay file: expected an object with design, scenario and schedule")
    scenario = _scenario(data["scenario"])
    try:
        schedule = Schedule.from_json(json.dumps(data["schedule"]))
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a replay file: a malformed schedule ({exc.__class__.__name__}: {exc})") from None
    return str(data["design"]), scenario, schedule


def narrate(design_name: str, scenario: Scenario, schedule: Schedule) -> tuple[RunResult, list[str]]:
    """Replay `schedule` and tell it: each loop step the model saw, with the rule it took.

    Loop steps that the model does not see (stutters: a typing indicator's own
    steps, asyncio's internal callbacks) are left out; a step marked
    ``[choice n]`` is where the schedule deviated from asyncio's FIFO order.
    """
    from sessionguard.loop import replay

    rigs: list[Rig] = []
    result = replay(scenario_run(design_name, scenario, on_rig=rigs.append, record=True), schedule)
    lines: list[str] = []
    trace = rigs[-1].refinement.trace if rigs and rigs[-1].refinement else None
    for step, label, rules in trace or []:
        if not rules:
            continue
        choice = schedule.steps[step][0] if step < len(schedule.steps) else 0
        mark = f" [choice {choice}]" if choice else ""
        lines.append(f"{step:4d}. {label}{mark}: {' | '.join(rules)}")
    return result, lines


def choices_chooser(choices: Sequence[int]) -> Callable[[int, Sequence[str]], int]:
    """A chooser from raw choices (each taken modulo the ready lanes), then FIFO."""

    def chooser(step: int, lanes: Sequence[str]) -> int:
        if step < len(choices):
            return choices[step] % len(lanes)
        return 0

    return chooser
