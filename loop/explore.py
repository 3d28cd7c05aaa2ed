"""What every exploration strategy shares: the failure predicate, the books, the limits.

A strategy (``dfs``, ``random_walk``, ``pct``) only decides which chooser to
use for the next run; :class:`Harness` runs it, classifies the result with
the caller's failure predicate, and decides when to stop (first failure,
schedule budget, time budget). The result is an :class:`Exploration`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from .controlled import DEFAULT_MAX_STEPS, DEFAULT_MAX_VIRTUAL_TIME, Chooser, Observer
from .runner import CoroFactory, RunResult, run

__all__ = [
    "Exploration",
    "FailurePredicate",
    "Harness",
    "HarnessOptions",
    "ObserverFactory",
    "any_failure",
    "raised",
]

FailurePredicate = Callable[[RunResult], bool]
"""``is_failure(result) -> bool``: does this run show the bug being looked for?"""

ObserverFactory = Callable[[], Observer | None]
"""Makes a fresh observer for each run (a refinement checker keeps per-run state)."""


def any_failure(result: RunResult) -> bool:
    """The default predicate: every verdict other than ``"ok"`` is a failure."""
    return result.verdict != "ok"


def raised(*types: type[BaseException]) -> FailurePredicate:
    """A predicate: the main coroutine or an observer raised one of ``types``.

    ``raised(AssertionError)`` is the usual one: a scenario that asserts its
    property at the end, or an observer that asserts an invariant per step.
    """
    if not types:
        raise TypeError("raised() needs at least one exception type, e.g. raised(AssertionError)")

    def predicate(result: RunResult) -> bool:
        return isinstance(result.exception, types) or isinstance(result.violation, types)

    predicate.__qualname__ = f"raised({', '.join(t.__name__ for t in types)})"
    return predicate


class HarnessOptions(TypedDict, total=False):
    """The options every strategy accepts (keyword-only), documented on :class:`Harness`."""

    is_failure: FailurePredicate
    stop_on_failure: bool
    observer_factory: ObserverFactory | None
    max_steps: int
    max_virtual_time: float
    max_schedules: int | None
    max_seconds: float | None
    keep_failures: int


@dataclass
class Exploration:
    """The outcome and the statistics of one exploration.

    ``failures`` keeps the first ``keep_failures`` failing runs (each with the
    schedule that replays it); ``failure_count`` counts them all. ``exhausted``
    is True only for a DFS that ran every schedule within its bound, or a
    random walk that ran every schedule of the program (see
    ``random_walk.py``): then "no failure" is a proof for that scenario (and
    bound), not just an absence of evidence.
    """

    strategy: str
    schedules: int = 0
    seconds: float = 0.0
    failure_count: int = 0
    failures: list[RunResult] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    exhausted: bool = False
    seed: int | None = None
    longest_run: int = 0

    @property
    def schedules_per_second(self) -> float:
        return self.schedules / self.seconds if self.seconds > 0 else float("inf")

    @property
    def first_failure(self) -> RunResult | None:
        return self.failures[0] if self.failures else None

    @property
    def found(self) -> bool:
        return self.failure_count > 0

    @property
    def divergences(self) -> int:
        """Runs whose prefix could not be re-run: the program is not deterministic."""
        return self.verdicts.get("divergence", 0)

    def summary(self) -> str:
        verdicts = ", ".join(f"{v}={n}" for v, n in sorted(self.verdicts.items()))
        state = "exhausted" if self.exhausted else "stopped"
        seed = "" if self.seed is None else f", seed={self.seed}"
        text = (
            f"{self.strategy}{seed}: {self.schedules} schedules in {self.seconds:.3f}s "
            f"({self.schedules_per_second:.0f}/s), {state}; {self.failure_count} failing; "
            f"verdicts: {verdicts}"
        )
        if self.first_failure is not None:
            text += f"\nfirst failure: {self.first_failure.describe()}"
        return text


class Harness:
    """Runs schedules for a strategy and keeps an :class:`Exploration` up to date.

    Options (keyword-only, shared by every strategy):

    * ``is_failure``: predicate on :class:`RunResult` (default: verdict not ``"ok"``);
    * ``stop_on_failure``: stop at the first failing run (default) or run all;
    * ``observer_factory``: a fresh observer per run (or ``None``);
    * ``max_steps``, ``max_virtual_time``: per-run limits (verdict ``"hung"``);
    * ``max_schedules``, ``max_seconds``: budgets for the whole exploration;
    * ``keep_failures``: how many failing runs to keep (all are counted).
    """

    def __init__(
        self,
        strategy: str,
        coro_factory: CoroFactory,
        *,
        is_failure: FailurePredicate = any_failure,
        stop_on_failure: bool = True,
        observer_factory: ObserverFactory | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_virtual_time: float = DEFAULT_MAX_VIRTUAL_TIME,
        max_schedules: int | None = None,
        max_seconds: float | None = None,
        keep_failures: int = 20,
        seed: int | None = None,
    ) -> None:
        if not callable(is_failure):
            raise TypeError(f"is_failure must be a predicate on RunResult, got {is_failure!r}")
        if max_schedules is not None and max_schedules < 1:
            raise ValueError(f"max_schedules must be at least 1, got {max_schedules}")
        self.coro_factory = coro_factory
        self.is_failure = is_failure
        self.stop_on_failure = stop_on_failure
        self.observer_factory = observer_factory
        self.max_steps = max_steps
        self.max_virtual_time = max_virtual_time
        self.max_schedules = max_schedules
        self.max_seconds = max_seconds
        self.keep_failures = keep_failures
        self.exploration = Exploration(strategy, seed=seed)
        self._started = time.perf_counter()

    def run(self, chooser: Chooser | None) -> RunResult:
        """One run with ``chooser`` (None: stock FIFO order), counted in the exploration."""
        observer = self.observer_factory() if self.observer_factory is not None else None
        result = run(
            self.coro_factory,
            chooser,
            max_steps=self.max_steps,
            max_virtual_time=self.max_virtual_time,
            observer=observer,
        )
        ex = self.exploration
        ex.schedules += 1
        ex.verdicts[result.verdict] += 1
        ex.longest_run = max(ex.longest_run, result.steps)
        if self.is_failure(result):
            ex.failure_count += 1
            if len(ex.failures) < self.keep_failures:
                ex.failures.append(result)
        return result

    def should_stop(self) -> bool:
        ex = self.exploration
        if self.stop_on_failure and ex.failure_count:
            return True
        if self.max_schedules is not None and ex.schedules >= self.max_schedules:
            return True
        return self.max_seconds is not None and self.elapsed() >= self.max_seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def done(self, *, exhausted: bool = False) -> Exploration:
        self.exploration.seconds = self.elapsed()
        self.exploration.exhausted = exhausted
        return self.exploration
