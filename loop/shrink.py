"""Make a failing schedule tell a shorter story: fewer deviations from FIFO.

A schedule found by random search or PCT deviates from asyncio's natural
order at many steps, most of them irrelevant to the bug. Each deviation is
a sentence in the explanation a user must read ("here T3 ran before T2"), so
the measure to minimise is the number of non-FIFO choices, then their size,
then the length of the run.

The candidates are index lists, not labelled schedules: after one choice is
changed the later steps differ, so their labels cannot be checked. That is
fine here, since every candidate is judged by re-running it; the result is
a fresh run with a fresh, exactly replayable schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

from .controlled import DEFAULT_MAX_STEPS, DEFAULT_MAX_VIRTUAL_TIME, Chooser
from .explore import FailurePredicate, ObserverFactory, any_failure
from .runner import CoroFactory, RunResult, run
from .schedule import Schedule

__all__ = ["GuidedChooser", "IndexChooser", "OvertakeChooser", "shrink"]


class IndexChooser:
    """Follow a list of lane indices (clamped to what is ready), then FIFO."""

    def __init__(self, choices: Sequence[int]) -> None:
        self.choices = tuple(choices)

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        if step < len(self.choices):
            return min(self.choices[step], len(lanes) - 1)
        return 0


class GuidedChooser:
    """FIFO, except where the original schedule deviated: there, run the same lane.

    Dropping one deviation early in a run shifts the lane *indices* of every
    later step, so an index list would now point at other lanes; following
    the *labels* of the remaining deviations keeps their meaning ("T2 goes
    before T1 here") as long as those lanes are ready.
    """

    def __init__(self, steps: Sequence[tuple[int, str]], drop: int) -> None:
        self.steps = tuple(steps)
        self.drop = drop

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        if step >= len(self.steps) or step == self.drop:
            return 0
        choice, label = self.steps[step]
        if choice == 0 or label not in lanes:
            return 0
        return list(lanes).index(label)


class OvertakeChooser:
    """FIFO, except for a list of "lane W overtakes lane L" events, applied in order.

    Aligning deviations by step number breaks as soon as an earlier change
    shifts the run by a step; aligning them by *who overtook whom* does not.
    At each step, if the next pending event's L is the FIFO lane and its W is
    ready, W runs and the event is consumed.
    """

    def __init__(self, overtakes: Sequence[tuple[str, str]]) -> None:
        self.pending = list(overtakes)
        self._next = 0

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        if self._next < len(self.pending):
            winner, loser = self.pending[self._next]
            if lanes[0] == loser and winner in lanes:
                self._next += 1
                return list(lanes).index(winner)
        return 0


class _Recorder:
    """Wraps a chooser to remember which lane was first (FIFO) at every step."""

    def __init__(self, inner: Chooser) -> None:
        self.inner = inner
        self.fifo: list[str] = []

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        self.fifo.append(lanes[0])
        return self.inner(step, lanes)


def _cost(result: RunResult) -> tuple[int, int, int]:
    choices = result.schedule.choices
    return (sum(1 for c in choices if c), sum(choices), len(choices))


def shrink(
    coro_factory: CoroFactory,
    schedule: Schedule,
    is_failure: FailurePredicate = any_failure,
    *,
    max_runs: int = 500,
    observer_factory: ObserverFactory | None = None,
    max_steps: int | None = None,
    max_virtual_time: float | None = None,
) -> RunResult | None:
    """The failing run with the fewest deviations found by dropping them one at a time.

    Greedy: for each non-zero choice, last first, try the run without it
    (the other deviations kept as "who overtook whom", then by the label
    at the same step, then by index), then with that choice one lower; keep
    any candidate that still fails and costs less, and start over. Returns
    ``None`` if ``schedule`` itself does not fail when re-run by index.
    """
    schedule.check_version()
    steps = max_steps or schedule.max_steps or DEFAULT_MAX_STEPS
    vtime = max_virtual_time or schedule.max_virtual_time or DEFAULT_MAX_VIRTUAL_TIME
    runs = 0

    def attempt(chooser: Chooser) -> tuple[RunResult, list[str]] | None:
        nonlocal runs
        runs += 1
        observer = observer_factory() if observer_factory is not None else None
        recorder = _Recorder(chooser)
        result = run(
            coro_factory, recorder, max_steps=steps, max_virtual_time=vtime, observer=observer
        )
        return (result, recorder.fifo) if is_failure(result) else None

    first = attempt(IndexChooser(schedule.choices))
    if first is None:
        return None
    best, fifo = first
    improved = True
    while improved and runs < max_runs:
        improved = False
        recorded = best.schedule.steps
        choices = [c for c, _ in recorded]
        deviating = [i for i, c in enumerate(choices) if c]
        for i in reversed(deviating):
            overtakes = [(recorded[j][1], fifo[j]) for j in deviating if j != i]
            candidates: list[Chooser] = [
                OvertakeChooser(overtakes),
                GuidedChooser(recorded, i),
                IndexChooser(choices[:i] + [0] + choices[i + 1 :]),
            ]
            if choices[i] > 1:
                candidates.append(IndexChooser(choices[:i] + [choices[i] - 1] + choices[i + 1 :]))
            for chooser in candidates:
                if runs >= max_runs:
                    break
                found = attempt(chooser)
                if found is not None and _cost(found[0]) < _cost(best):
                    (best, fifo), improved = found, True
                    break
            if improved:
                break
    return best
