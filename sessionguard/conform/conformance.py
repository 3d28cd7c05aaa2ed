"""Checking a scenario against a foreign adapter, safely, with a replayable result.

`check(target, binding, scenario, options)` explores schedules of one
scenario in a child process (so that an adapter that blocks the loop in
wall-clock time, crashes the interpreter or exits cannot take the tool down),
and returns a `ScenarioReport`: the verdict, the statistics, and for a
violation its findings, a short narrated schedule and the command that
replays it.  `replay(target, binding, token)` runs one schedule again.

Verdicts: ``pass`` (no violation within the budget), ``violation`` (a
property of SPEC section 5 failed), ``error`` (the adapter could not be
driven: its constructor raised, it blocked the loop, started a thread, hung
past every limit, or the binding failed on it).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from sessionguard.loop import (
    RunResult,
    Schedule,
    explore_dfs,
    explore_pct,
    explore_random,
    shrink,
)
from sessionguard.loop.errors import ScheduleVersionError
from sessionguard.model.properties import BY_NAME
from sessionguard.reference.harness import choices_chooser, pack_token, unpack_token
from sessionguard.reference.scenarios import SCENARIOS, Scenario

from .binding import Binding, BindingError, load_binding, load_object
from .run import ConformOutcome, Rig, Uncontrolled, conform_run, findings_of, is_failure, tell

STRATEGIES = ("random", "pct", "dfs")


@dataclass(frozen=True)
class Options:
    """How hard to look (keyword-only everywhere it is taken)."""

    strategy: str = "random"
    budget_seconds: float = 10.0  # wall-clock budget per scenario
    schedules: int | None = None  # at most this many schedules per scenario (None: the budget decides)
    seed: int = 0
    depth: int = 3  # PCT's bug depth
    step_seconds: float = 5.0  # one loop step longer than this in wall-clock time is a blocked loop
    max_steps: int = 20_000  # per schedule: longer is reported as hung


@dataclass
class ScenarioReport:
    scenario: str
    description: str
    verdict: str  # pass | violation | error
    strategy: str
    seed: int
    schedules: int = 0
    seconds: float = 0.0
    exhausted: bool = False
    findings: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None
    narrative: list[str] = field(default_factory=list)
    token: str | None = None
    replay: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- tokens -------------------------------------------------------------------------


def encode(scenario: Scenario, schedule: Schedule) -> str:
    named = SCENARIOS.get(scenario.name) == scenario
    return pack_token(
        {"k": "conform", "s": scenario.name if named else scenario.to_json(), "py": schedule.python, "c": list(schedule.choices)}
    )


def decode(token: str) -> tuple[Scenario, list[int]]:
    data = unpack_token(token)
    if data.get("k") != "conform":
        raise ValueError("not a conform replay token (explore's tokens replay with 'sessionguard replay')")
    try:
        scenario_data, python, choices = data["s"], data["py"], [int(c) for c in data["c"]]
        scenario = SCENARIOS[scenario_data] if isinstance(scenario_data, str) else Scenario.from_json(scenario_data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a conform replay token ({exc.__class__.__name__})") from None
    Schedule((), python).check_version()
    return scenario, choices


def replay_command(target: str, binding: str, token: str) -> str:
    option = "" if binding == "hermes" else f" --binding {binding}"
    return f"sessionguard conform {target}{option} --replay {token}"


# --- one scenario, in this process -------------------------------------------------------


def _describe(result: RunResult) -> str | None:
    """Why a run could not be judged (None: it ran to the end)."""
    if result.verdict == "ok":
        return None
    if result.verdict == "violation" and result.violation is not None:
        exc = result.violation
        if isinstance(exc, Uncontrolled | BindingError):
            return str(exc)
        return f"the harness failed on the adapter's state: {type(exc).__name__}: {exc}"
    if result.verdict == "error" and result.exception is not None:
        exc = result.exception
        if isinstance(exc, BindingError):
            return str(exc)
        return f"the run raised {type(exc).__name__}: {exc}"
    return result.describe()


def explore(
    target: Any, binding: Binding, scenario: Scenario, options: Options, *, after_step: Any = None
) -> tuple[Any, RunResult | None]:
    factory = conform_run(target, binding, scenario, after_step=after_step)
    common: dict[str, Any] = {
        "is_failure": is_failure,
        "max_seconds": options.budget_seconds,
        "max_steps": options.max_steps,
        "keep_failures": 1,
    }
    runs = options.schedules or 10**9
    if options.strategy == "random":
        ex = explore_random(factory, runs=runs, seed=options.seed, **common)
    elif options.strategy == "pct":
        ex = explore_pct(factory, runs=runs, depth=options.depth, seed=options.seed, **common)
    else:
        if options.schedules is not None:
            common["max_schedules"] = options.schedules
        ex = explore_dfs(factory, **common)
    failure = ex.first_failure
    if failure is not None and failure.verdict == "ok":
        # A property failed: look for the same failure with fewer deviations.
        props = set(findings_of(failure))
        smaller = shrink(
            factory, failure.schedule, lambda r: bool(props & set(findings_of(r))), max_runs=200,
            max_steps=options.max_steps,
        )
        if smaller is not None:
            failure = smaller
    return ex, failure


def narrate(target: Any, binding: Binding, scenario: Scenario, choices: list[int]) -> tuple[RunResult, list[str]]:
    """Run `choices` again and tell the steps up to the first violation."""
    rigs: list[Rig] = []
    from sessionguard.loop import run

    result = run(conform_run(target, binding, scenario, on_rig=rigs.append), choices_chooser(choices))
    found = findings_of(result)
    upto = min((f.step for f in found.values()), default=None)
    lines = tell(rigs[-1], list(result.schedule.choices), upto=upto) if rigs else []
    return result, lines


def _findings(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for f in sorted(findings_of(result).values(), key=lambda f: (f.step, BY_NAME[f.prop].number)):
        prop = BY_NAME[f.prop]
        out.append({"property": f.prop, "number": prop.number, "title": prop.title, "step": f.step, "label": f.label, "condition": f.why})
    return out


def check_here(
    target_spec: str, binding_spec: str, scenario: Scenario, options: Options, *, after_step: Any = None
) -> ScenarioReport:
    report = ScenarioReport(scenario.name, scenario.description, "pass", options.strategy, options.seed)
    target = load_object(target_spec, what="target")
    binding = load_binding(binding_spec)
    started = time.perf_counter()
    ex, failure = explore(target, binding, scenario, options, after_step=after_step)
    report.schedules, report.exhausted = ex.schedules, ex.exhausted
    report.seconds = round(time.perf_counter() - started, 3)
    if failure is None:
        return report
    token = encode(scenario, failure.schedule)
    report.token = token
    report.replay = replay_command(target_spec, binding_spec, token)
    if failure.verdict == "ok":
        report.verdict = "violation"
        result, report.narrative = narrate(target, binding, scenario, list(failure.schedule.choices))
        report.findings = _findings(result)
    else:
        report.verdict = "error"
        report.problem = _describe(failure)
    return report


# --- one scenario, in a child process ---------------------------------------------------


def _child(conn: Any, target_spec: str, binding_spec: str, scenario: Scenario, options: Options) -> None:
    def blocked(signum: int, frame: Any) -> None:
        import asyncio

        label = "?"
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
            labels = getattr(loop, "_labels", None)
            label = labels[-1] if labels else "?"
        except Exception:
            pass
        conn.send(
            ScenarioReport(
                scenario.name, scenario.description, "error", options.strategy, options.seed,
                problem=(
                    f"a loop step ({label}) ran longer than {options.step_seconds:g}s of wall-clock time: "
                    f"the adapter blocks the event loop (time.sleep, blocking I/O or a busy loop), "
                    f"which the controlled loop cannot schedule"
                ),
            ).to_json()
        )
        conn.close()
        os._exit(3)

    def rearm() -> None:
        signal.setitimer(signal.ITIMER_REAL, options.step_seconds)

    signal.signal(signal.SIGALRM, blocked)
    rearm()
    try:
        report = check_here(target_spec, binding_spec, scenario, options, after_step=rearm)
        payload = report.to_json()
    except BaseException as exc:  # anything the adapter or the binding did
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        payload = ScenarioReport(
            scenario.name, scenario.description, "error", options.strategy, options.seed, problem=detail
        ).to_json()
    signal.setitimer(signal.ITIMER_REAL, 0)
    conn.send(payload)
    conn.close()


def check(target_spec: str, binding_spec: str, scenario: Scenario, options: Options) -> ScenarioReport:
    """`check_here` in a child process, with a wall-clock limit on the whole and on each step."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, target_spec, binding_spec, scenario, options), daemon=True)
    process.start()
    child.close()
    # Past the budget: finish the schedule under way, shrink and narrate; a
    # child that takes far longer is stuck in a way the per-step limit missed.
    limit = options.budget_seconds * 2 + 60
    payload: dict[str, Any] | None = None
    timed_out = not parent.poll(limit)
    if not timed_out:
        try:
            payload = parent.recv()
        except EOFError:
            payload = None
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()
    if payload is None:
        why = (
            f"the check did not finish within {limit:g}s of wall-clock time"
            if timed_out
            else f"the process running the adapter died (exit code {process.exitcode}): "
            f"the adapter exited or crashed the interpreter"
        )
        return ScenarioReport(scenario.name, scenario.description, "error", options.strategy, options.seed, problem=why)
    return ScenarioReport(**payload)


def replay_token(target_spec: str, binding_spec: str, token: str) -> tuple[Scenario, RunResult, list[str]]:
    """One schedule again, told step by step (ValueError/ScheduleVersionError on a bad token)."""
    scenario, choices = decode(token)
    target = load_object(target_spec, what="target")
    binding = load_binding(binding_spec)
    result, lines = narrate(target, binding, scenario, choices)
    return scenario, result, lines


__all__ = [
    "STRATEGIES",
    "ConformOutcome",
    "Options",
    "ScenarioReport",
    "ScheduleVersionError",
    "check",
    "check_here",
    "replay_token",
]

if sys.platform == "win32":  # pragma: no cover
    raise ImportError("sessionguard.conform needs fork and SIGALRM (Linux, macOS)")
