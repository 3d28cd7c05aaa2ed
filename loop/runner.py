"""One controlled run from start to verdict, and exact replay of a recorded one.

``run(coro_factory, chooser)`` makes a fresh :class:`ControlledLoop`, runs the
coroutine to its end (or to a deadlock, a limit, a divergence), winds the
loop down like ``asyncio.run`` does, and reports a :class:`RunResult`. It
takes a *factory* rather than a coroutine because explorers run the same
scenario thousands of times, and a coroutine object can be run only once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .controlled import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_VIRTUAL_TIME,
    Chooser,
    ControlledLoop,
    LoopError,
    Observer,
)
from .errors import BlockedTask, ReplayDivergence, RunProblem
from .schedule import Schedule, python_version

__all__ = [
    "CoroFactory",
    "ReplayChooser",
    "RunResult",
    "Verdict",
    "replay",
    "run",
]

_PYTHON = python_version()  # the interpreter cannot change under a running process

CoroFactory = Callable[[], Coroutine[Any, Any, Any]]
"""A zero-argument callable that returns a fresh main coroutine for each run."""

Verdict = Literal["ok", "error", "deadlock", "hung", "divergence", "violation", "nondeterminism"]


@dataclass(frozen=True)
class RunResult:
    """How one controlled run ended.

    ``verdict``:

    * ``"ok"``: the main coroutine returned (``value``);
    * ``"error"``: it raised (``exception``);
    * ``"violation"``: an observer raised at step ``violation_step`` (``violation``);
    * ``"deadlock"``, ``"hung"``, ``"nondeterminism"``: see ``problem``
      (a :class:`Deadlock`, :class:`Hung` or :class:`UncontrolledNondeterminism`);
    * ``"divergence"``: a replayed schedule no longer matched (``problem`` is
      the :class:`ReplayDivergence`); nothing else about the run is meaningful.

    ``errors`` are the calls of asyncio's exception handler during the run and
    its shutdown, such as a background task's exception nobody retrieved.
    ``unfinished`` lists the other tasks still pending when the main task
    ended (shutdown then cancelled them): a wedged worker shows up here.
    """

    verdict: Verdict
    schedule: Schedule
    virtual_time: float
    value: object = None
    exception: BaseException | None = None
    violation: BaseException | None = None
    violation_step: int | None = None
    problem: RunProblem | None = None
    errors: tuple[LoopError, ...] = ()
    unfinished: tuple[BlockedTask, ...] = ()
    shutdown_problem: RunProblem | None = None

    @property
    def steps(self) -> int:
        return len(self.schedule)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def describe(self) -> str:
        """A short human account of the outcome (one line, or a few for a deadlock)."""
        if self.problem is not None and self.verdict != "violation":
            return str(self.problem)  # it names the step and the virtual time itself
        head = f"{self.verdict} after {self.steps} steps (virtual time {self.virtual_time:g})"
        if self.verdict == "error":
            return f"{head}: the main coroutine raised {self.exception!r}"
        if self.verdict == "violation":
            return f"{head}: an observer flagged step {self.violation_step}: {self.violation!r}"
        if self.errors:
            return f"{head}; unhandled: " + "; ".join(str(e) for e in self.errors)
        return head


def _check_factory(coro_factory: object) -> None:
    if asyncio.iscoroutine(coro_factory):
        coro_factory.close()
        raise TypeError(
            "pass a coroutine *factory* (e.g. `lambda: main()` or `main`), not a coroutine "
            "object: a scenario is run many times and a coroutine can be awaited only once"
        )
    if not callable(coro_factory):
        raise TypeError(f"coro_factory must be a zero-argument callable, got {coro_factory!r}")


def run(
    coro_factory: CoroFactory,
    chooser: Chooser | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_virtual_time: float = DEFAULT_MAX_VIRTUAL_TIME,
    observer: Observer | None = None,
) -> RunResult:
    """Run ``coro_factory()`` once on a fresh :class:`ControlledLoop`; return the verdict.

    ``chooser(step, lanes) -> int`` picks each step (``None``: stock FIFO).
    ``observer(step, label)`` is called after every step. If the chooser raises,
    the run is finished in FIFO order and shut down, and then the exception
    is re-raised (a :class:`ReplayDivergence` is reported as a verdict instead).
    """
    _check_factory(coro_factory)
    loop = ControlledLoop(
        chooser, max_steps=max_steps, max_virtual_time=max_virtual_time, observer=observer
    )
    loop.raise_abandoned = False
    value: object = None
    exception: BaseException | None = None
    problem: RunProblem | None = None
    try:
        coro = coro_factory()
        if not asyncio.iscoroutine(coro):
            raise TypeError(f"coro_factory() must return a coroutine, it returned {coro!r}")
        main = loop.create_task(coro, name="main")
        try:
            value = loop.run_until_complete(main)
        except RunProblem as exc:
            problem = exc
        except (Exception, asyncio.CancelledError) as exc:
            exception = exc
        if problem is None:
            # A thread may have called in after the last step that checked.
            problem = loop.pending_problem
        # The loop's own record is already ints and strs: no conversion needed.
        schedule = Schedule(
            loop.schedule_steps,
            _PYTHON,
            max_steps,
            max_virtual_time,
        )
        virtual_time = loop.time()
        unfinished = tuple(b for b in loop.blocked_tasks() if b.label != "T0:main")
        shutdown_problem = loop.finish()
    finally:
        loop.close()
    abandoned = loop.abandoned
    if abandoned is not None and not isinstance(abandoned, ReplayDivergence):
        raise abandoned
    verdict: Verdict
    if isinstance(abandoned, ReplayDivergence):
        verdict, problem = "divergence", abandoned
    elif loop.violation is not None:
        verdict = "violation"
    elif problem is not None:
        verdict = problem.verdict  # type: ignore[assignment]
    elif exception is not None:
        verdict = "error"
    else:
        verdict = "ok"
    return RunResult(
        verdict=verdict,
        schedule=schedule,
        virtual_time=virtual_time,
        value=value,
        exception=exception,
        violation=loop.violation,
        violation_step=loop.violation_step,
        problem=problem,
        errors=tuple(loop.errors),
        unfinished=unfinished,
        shutdown_problem=shutdown_problem,
    )


class ReplayChooser:
    """A chooser that follows a recorded schedule and refuses to guess.

    ``strict`` (the default): at each step the recorded choice must point at
    the recorded label. Otherwise the lane is looked up by label, which
    tolerates a changed order of ready lanes (after a small code change) but
    still never runs a lane the schedule did not name.
    """

    def __init__(self, schedule: Schedule, *, strict: bool = True) -> None:
        self.steps = schedule.steps
        self.strict = strict
        self.position = 0

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        if step >= len(self.steps):
            raise ReplayDivergence(step, None, lanes, "the recorded run had ended here")
        self.position = step + 1
        choice, label = self.steps[step]
        if 0 <= choice < len(lanes) and lanes[choice] == label:
            return choice
        if label in lanes:
            index = list(lanes).index(label)
            if not self.strict:
                return index
            raise ReplayDivergence(
                step,
                label,
                lanes,
                f"it is ready, but as lane {index}, not {choice}: the ready callbacks "
                f"arrived in a different order than in the recorded run, so the program "
                f"is not deterministic (iteration over a set of tasks, as TaskGroup does "
                f"when it cancels, is the usual cause)",
            )
        raise ReplayDivergence(step, label, lanes, "no ready lane has that label")


def replay(
    coro_factory: CoroFactory,
    schedule: Schedule,
    *,
    strict: bool = True,
    observer: Observer | None = None,
    max_steps: int | None = None,
    max_virtual_time: float | None = None,
) -> RunResult:
    """Run ``coro_factory()`` again following ``schedule`` exactly.

    Refuses (:class:`ScheduleVersionError`) a schedule recorded on another
    Python minor version. The limits default to the ones it was recorded
    under, so that a ``hung`` run hangs again at the same step. Any mismatch
    gives the verdict ``"divergence"``, with the step, the expected label and
    the lanes that were ready; a run that ends before the schedule does is a
    divergence too.
    """
    schedule.check_version()
    chooser = ReplayChooser(schedule, strict=strict)
    result = run(
        coro_factory,
        chooser,
        max_steps=max_steps or schedule.max_steps or DEFAULT_MAX_STEPS,
        max_virtual_time=max_virtual_time or schedule.max_virtual_time or DEFAULT_MAX_VIRTUAL_TIME,
        observer=observer,
    )
    if result.verdict != "divergence" and result.steps < len(schedule):
        missing = ReplayDivergence(
            result.steps,
            schedule.steps[result.steps][1],
            (),
            f"the run ended ({result.verdict}) after {result.steps} of the "
            f"{len(schedule)} recorded steps",
        )
        return replace(result, verdict="divergence", problem=missing)
    return result
