"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each lane gets a random priority when first seen among others and the
highest-priority ready lane always runs, so one lane keeps running while it
can: the schedule is mostly sequential, which is what starving a task for a
long time needs.
At ``depth - 1`` random steps (the *change points*) the lane that just ran
drops below every initial priority. A bug that needs ``d`` ordering
constraints is found by one run with probability at least
``1 / (n * k**(d-1))`` for ``n`` lanes and ``k`` steps, independently of how
long the stretches between the constraints are.

Lanes are keyed by :func:`lane_key` (the callback lane keeps one identity
while its head changes).

``k`` is the length of the run being made, which is not known in advance:
it is estimated as the median length of the runs so far, starting from one
FIFO run. The bound assumes the change points fall inside the run; an
estimate from the *longest* run seen grows with every unusually long run
and puts more and more change points past the end of a typical run, where
they change nothing (on ``seed``'s ``double-stop`` it caught the
``release-by-owner`` violation in 1.3% of the runs, the median in 2.3%).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Unpack

from .controlled import lane_key
from .explore import Exploration, Harness, HarnessOptions
from .runner import CoroFactory

__all__ = ["PCTChooser", "RunLengths", "explore_pct"]


class PCTChooser:
    """One PCT run: random lane priorities, ``depth - 1`` change points in ``[0, k)``.

    A lane's priority matters only where it is compared with another's, so
    a lane draws its random priority when it is first offered together with
    another one (each priority is an independent draw, whenever it is made).
    A step with a single lane ready then has nothing to draw and nothing to
    decide, unless it is a change point: the loop asks the chooser only at
    decisions and at its change points (``decisions_only``, ``ask_at``), and
    the runs are the same as if it asked at every step.
    """

    decisions_only = True

    def __init__(self, seed: int, *, depth: int, k: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.seed = seed
        self.depth = depth
        self._rng = random.Random(seed)
        points = self._rng.sample(range(max(k, 1)), min(depth - 1, max(k, 1)))
        # The i-th sampled point lowers the running lane to priority i + 1;
        # initial priorities are all above depth, so a lowered lane only runs
        # when nothing unlowered is ready.
        self._change: dict[int, float] = {step: float(i + 1) for i, step in enumerate(points)}
        self.ask_at = self._change  # a change point demotes the lane that runs, alone or not
        self._priority: dict[str, float] = {}
        self._keys: dict[str, str] = {}

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        priority = self._priority
        keys = self._keys
        if len(lanes) == 1:  # nothing to compare: only a change point to apply
            lowered = self._change.get(step)
            if lowered is not None:
                priority[lane_key(lanes[0])] = lowered
            return 0
        best = 0
        best_key = ""
        best_priority = -1.0
        for i, label in enumerate(lanes):
            key = keys.get(label)
            if key is None:
                key = keys[label] = lane_key(label)  # once per label: this runs at every decision
            p = priority.get(key)
            if p is None:
                p = priority[key] = self.depth + self._rng.random()
            if p > best_priority:
                best, best_key, best_priority = i, key, p
        lowered = self._change.get(step)
        if lowered is not None:
            priority[best_key] = lowered
        return best


class RunLengths:
    """The lengths of the runs so far, for their median: PCT's estimate of ``k``.

    Kept as a count per length (runs of a scenario have few distinct
    lengths), so the median costs the same after a million runs as after ten.
    """

    def __init__(self) -> None:
        self._count: Counter[int] = Counter()
        self._runs = 0

    def add(self, steps: int) -> None:
        self._count[steps] += 1
        self._runs += 1

    def median(self) -> int:
        """The lower median (0 before any run)."""
        seen = 0
        for steps in sorted(self._count):
            seen += self._count[steps]
            if 2 * seen >= self._runs:
                return steps
        return 0


def explore_pct(
    coro_factory: CoroFactory,
    *,
    runs: int = 1000,
    depth: int = 3,
    seed: int = 0,
    **options: Unpack[HarnessOptions],
) -> Exploration:
    """Run one FIFO schedule and then up to ``runs - 1`` PCT schedules of bug depth ``depth``.

    ``options`` are :class:`Harness`'s (``is_failure``, ``stop_on_failure``, ...).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    harness = Harness(f"pct(depth={depth})", coro_factory, seed=seed, **options)
    master = random.Random(seed)
    lengths = RunLengths()
    # The FIFO run is a schedule worth checking, and it calibrates k.
    lengths.add(harness.run(None).steps)
    for _ in range(runs - 1):
        if harness.should_stop():
            break
        chooser = PCTChooser(master.getrandbits(64), depth=depth, k=lengths.median())
        lengths.add(harness.run(chooser).steps)
    return harness.done()
