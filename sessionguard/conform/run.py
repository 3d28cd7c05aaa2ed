"""One conformance run: a scenario against a foreign adapter, under the controlled loop.

`conform_run(target, binding, scenario)` is a coroutine factory for the
controlled loop, like `reference.harness.scenario_run` but for an adapter
known only through its binding.  Each run builds the world (`ConformWorld`:
the scripted runner and platform of `reference.fakes`, which can raise,
hang or be cancelled on cue, and the ledger of what the outside saw), the
adapter, and a `Monitor` that writes each loop step as a model state and
judges it with the model's properties.  The scenario's phases run as in the
reference harness; at the end the run checks that nothing is stranded (SPEC
9): after the recovery /stop for each wedged session, every message must
have reached a fate, and one more message per session must be processed.

Everything the adapter does that the loop cannot control ends the run with
a clear verdict rather than a hang: a thread it starts (`Uncontrolled`), a
step that blocks the loop in wall-clock time (see `isolate.py`), an
exception from the binding (`BindingError`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sessionguard.loop import RunResult
from sessionguard.loop.controlled import add_observer
from sessionguard.model.checker import stranded_work
from sessionguard.model.vocabulary import BYPASS, SHUTDOWN, STOP, TASK_CANCELLED, TEXT
from sessionguard.reference.fakes import (
    Event,
    FaultPlan,
    Ledger,
    Reply,
    ScriptedPlatform,
    ScriptedRunner,
)
from sessionguard.reference.fakes import Message as Inbox
from sessionguard.reference.harness import QUIET
from sessionguard.reference.refinement import Finding
from sessionguard.reference.scenarios import Fault, Scenario, Send

from .binding import TOKEN, Binding, BindingError, Inbound
from .monitor import Monitor, Observed


class Uncontrolled(Exception):
    """The adapter did something the controlled loop cannot schedule (a thread)."""


class ConformWorld:
    """The runner, the platform and the ledger around a foreign adapter (`binding.World`)."""

    def __init__(self) -> None:
        self.faults = FaultPlan()
        self.ledger = Ledger()
        self.runner = ScriptedRunner(self.ledger, self.faults)
        self.platform = ScriptedPlatform(self.ledger, self.faults)
        self.observed = Observed(runner=self.runner.active, hanging=self.ledger.hanging)  # type: ignore[arg-type]
        self.inbox: dict[int, Inbox] = {}  # serial -> the message, once created

    # --- binding.World --------------------------------------------------------------

    def messages_in(self, obj: object) -> tuple[int, ...]:
        texts: list[str] = []
        if isinstance(obj, str):
            texts.append(obj)
        else:
            for attribute in ("text", "content", "media_urls"):
                value = getattr(obj, attribute, None)
                if isinstance(value, str):
                    texts.append(value)
                elif isinstance(value, list | tuple):
                    texts.extend(str(v) for v in value)
            texts.append(repr(obj))
        found: list[int] = []
        for text in texts:
            for match in TOKEN.finditer(text):
                serial = int(match.group(1))
                if serial not in found:
                    found.append(serial)
        return tuple(found)

    def _accepted(self, obj: object) -> tuple[Inbox, ...]:
        ids = self.ledger.ids
        msgs = [self.inbox[s] for s in self.messages_in(obj) if s in self.inbox and self.inbox[s] in ids]
        return tuple(sorted(msgs, key=lambda m: ids[m]))

    async def run(self, key: int, event: object) -> str:
        messages = self._accepted(event)
        if not messages:
            await asyncio.sleep(0)  # an event the harness did not send: answered, nothing to record
            return "ok"
        task = asyncio.current_task()
        ids = tuple(self.ledger.ids[m] for m in messages)
        self.observed.calls.append((task, key, ids))
        assert task is not None
        self.observed.in_runner.add(task)
        direct = all(m.kind in BYPASS for m in messages)
        try:
            reply = await self.runner(Event(key, messages, direct))
        finally:
            self.observed.in_runner.discard(task)
            self.sync()
        return f"{reply.text} " + " ".join(m.name for m in messages)

    async def send(self, key: int, text: str) -> None:
        await self.platform.send(Reply(key, text, self._accepted(text)))

    async def cleanup(self, key: int) -> None:
        await self.platform.stop_typing(key)

    # --- for the monitor ---------------------------------------------------------------

    def accept(self, inbound: Inbound, in_flight: tuple[int, ...]) -> int:
        message = Inbox(inbound.key, inbound.kind, inbound.token)
        self.inbox[inbound.serial] = message
        mid = self.ledger.accept(message)
        obs = self.observed
        obs.kinds.append(inbound.kind)
        obs.keys.append(inbound.key)
        obs.during.append(in_flight)
        return mid

    def sync(self) -> None:
        """Copy the ledger's records (kept by message object) into the monitor's (by id)."""
        ids, obs = self.ledger.ids, self.observed
        obs.runs = {ids[m]: n for m, n in self.ledger.runs.items()}
        obs.answered = {ids[m] for m in self.ledger.answered}
        obs.sent = {ids[m] for m in self.ledger.sent}
        obs.last_run = dict(self.ledger.last_run)
        obs.faults_fired = len(self.faults.fired)


@dataclass
class ConformOutcome:
    """What one run found, with the monitor's trace for the narrative."""

    findings: dict[str, Finding]
    steps_checked: int
    faults_fired: tuple[str, ...]
    messages: int
    log: list[str]


@dataclass
class Rig:
    world: ConformWorld
    adapter: Any
    monitor: Monitor


def conform_run(
    target: Any,
    binding: Binding,
    scenario: Scenario,
    *,
    on_rig: Callable[[Rig], None] | None = None,
    probe: bool = True,
    after_step: Callable[[], None] | None = None,
) -> Callable[[], Coroutine[Any, Any, ConformOutcome]]:
    """A coroutine factory: one fresh run of `scenario` against a new adapter per call."""
    sessions = scenario.sessions

    async def main() -> ConformOutcome:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        world = ConformWorld()
        threads_before = threading.active_count()
        adapter = binding.build(target, world)

        def read(k: int) -> tuple[object | None, object | None, tuple[int, ...] | None]:
            view = binding.view(adapter, k)
            pending = None
            if view.pending is not None:
                ids = world.ledger.ids
                pending = tuple(ids[m] for m in world._accepted(view.pending))
            return view.guard, view.owner, pending

        monitor = Monitor(loop, sessions, read, world.observed)
        assert me is not None
        monitor.harness_task(me)
        rig = Rig(world, adapter, monitor)

        def observe(step: int, label: str) -> None:
            if threading.active_count() > threads_before:
                names = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
                raise Uncontrolled(
                    f"the adapter started a thread ({', '.join(names)}): its timing is outside "
                    f"the loop's control, so schedules cannot be explored or replayed"
                )
            world.sync()
            monitor(step, label)
            if after_step is not None:
                after_step()

        add_observer(observe)
        if on_rig is not None:
            on_rig(rig)

        async def deliver(inbound: Inbound) -> None:
            if world.observed.stopped:
                return  # the gateway is down: nothing is accepted any more
            task = asyncio.current_task()
            assert task is not None
            mid = world.accept(inbound, monitor.during(inbound.key))
            monitor.delivery(task, mid, inbound.key, inbound.kind)
            try:
                await binding.deliver(adapter, inbound)
            except BindingError:
                raise
            except Exception as exc:  # the error ends the handling; the platform logs it
                world.ledger.log.append(f"handle_message({inbound.token}) raised {exc!r}")

        async def inject(kind: str) -> None:
            if world.observed.stopped:
                return
            if kind == SHUTDOWN:
                world.faults.enabled = False
                world.observed.stopped = True
                result = binding.shutdown(adapter)
                if inspect.isawaitable(result):
                    await result
            elif kind == TASK_CANCELLED:
                for task, info in monitor.tracked.items():
                    if info.session_task and not task.done() and task.cancelling() == 0:
                        world.faults.fired.append(kind)
                        task.cancel()
                        return
            else:
                world.faults.arm(kind)

        serial = 0

        def start(action: Send | Fault) -> None:
            nonlocal serial
            if isinstance(action, Send):
                inbound = Inbound(serial, action.kind, action.key)
                name = f"deliver-{action.kind}-k{action.key}"
                monitor.incoming(loop.create_task(deliver(inbound), name=name))
            else:
                task = loop.create_task(inject(action.kind), name=f"fault-{action.kind}")
                monitor.harness_task(task)
            serial += 1

        for phase in scenario.phases:
            for action in phase:
                start(action)
            await asyncio.sleep(QUIET)
        # The user's way out of a wedged session (SPEC 9, 10): one /stop per
        # session in which a call hangs, as often as the scenario has faults.
        rounds = 1 + sum(1 for a in scenario.actions if isinstance(a, Fault))
        while rounds > 0 and not world.observed.stopped and (hung := _hung_sessions(monitor, world)):
            rounds -= 1
            for k in hung:
                start(Send(STOP, k))
            await asyncio.sleep(QUIET)
        world.sync()
        last = loop.steps  # type: ignore[attr-defined]
        why = stranded_work(monitor.state)
        if why is not None:
            monitor.note("no-trapped-session", last, "end of run", why)
        elif probe and not world.observed.stopped:
            # Is every session open again?  The next message must be processed.
            first = serial
            for k in range(sessions):
                start(Send(TEXT, k))
            await asyncio.sleep(QUIET)
            world.sync()
            for k in range(sessions):
                probe_message = world.inbox.get(first + k)
                mid = world.ledger.ids.get(probe_message) if probe_message is not None else None  # type: ignore[arg-type]
                if mid is not None and world.observed.runs.get(mid, 0) == 0:
                    monitor.note(
                        "no-trapped-session", loop.steps, "end of run",  # type: ignore[attr-defined]
                        f"session k{k} stays busy: a new message m{mid} sent once everything "
                        f"was quiet never reached the runner",
                    )
        return ConformOutcome(
            findings=dict(monitor.findings),
            steps_checked=monitor.steps_checked,
            faults_fired=tuple(world.faults.fired),
            messages=len(world.ledger.accepted),
            log=list(world.ledger.log),
        )

    return main


def _hung_sessions(monitor: Monitor, world: ConformWorld) -> list[int]:
    keys = set()
    for task in world.ledger.hanging:
        key = monitor.session_of(task)  # type: ignore[arg-type]
        if key is not None:
            keys.add(key)
    return sorted(keys)


# --- judging a run -------------------------------------------------------------------


def findings_of(result: RunResult) -> dict[str, Finding]:
    value = result.value
    return dict(value.findings) if isinstance(value, ConformOutcome) else {}


def is_failure(result: RunResult) -> bool:
    """A run fails on a property violation, and on anything but a clean end."""
    return result.verdict != "ok" or bool(findings_of(result))


# --- telling a run -----------------------------------------------------------------


def tell(rig: Rig, choices: list[int], *, upto: int | None = None, limit: int = 40) -> list[str]:
    """The run's steps that changed something the model sees, each with what changed.

    A step marked ``[choice n]`` is where the schedule left asyncio's FIFO
    order.  Steps after `upto` (the violating one) are left out; a long
    prefix is cut in the middle.
    """
    from sessionguard.model.narrative import changes

    lines: list[str] = []
    before = None
    for step, label, state, _ in rig.monitor.trace:
        if upto is not None and step > upto:
            break
        if before is not None:
            what = changes(before, state)
            if ":fault-" in label:
                what = [f"the environment injects {label.partition(':fault-')[2]}", *what]
            if what:
                mark = f" [choice {choices[step]}]" if step < len(choices) and choices[step] else ""
                lines.append(f"{step:4d}. {label}{mark}: {'; '.join(what)}")
        before = state
    if len(lines) > limit:
        keep = limit // 2
        lines = [*lines[:keep], f"      ... {len(lines) - 2 * keep} steps ...", *lines[-keep:]]
    return lines
