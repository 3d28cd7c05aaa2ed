"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each lane gets a random priority when first seen and the highest-priority
ready lane always runs, so one lane keeps running while it can: the schedule
is mostly sequential, which is what starving a task for a long time needs.
At ``depth - 1`` random steps (the *change points*) the lane that just ran
drops below every initial priority. A bug that needs ``d`` ordering
constraints is found by one run with probability at least
``1 / (n * k**(d-1))`` for ``n`` lanes and ``k`` steps, independently of how
long the stretches between the constraints are.

Lanes are keyed by :func:`lane_key` (the callback lane keeps one identity
while its head changes). ``k`` is estimated as the longest run seen so far,
starting from one FIFO run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Unpack

from .controlled import lane_key
from .explore import Exploration, Harness, HarnessOptions
from .runner import CoroFactory

__all__ = ["PCTChooser", "explore_pct"]


class PCTChooser:
    """One PCT run: random lane priorities, ``depth - 1`` change points in ``[0, k)``."""

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
        self._priority: dict[str, float] = {}

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        priority = self._priority
        best = 0
        best_priority = -1.0
        for i, label in enumerate(lanes):
            key = lane_key(label)
            p = priority.get(key)
            if p is None:
                p = priority[key] = self.depth + self._rng.random()
            if p > best_priority:
                best, best_priority = i, p
        lowered = self._change.get(step)
        if lowered is not None:
            priority[lane_key(lanes[best])] = lowered
        return best


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
    # The FIFO run is a schedule worth checking, and it calibrates k.
    harness.run(lambda step, lanes: 0)
    for _ in range(runs - 1):
        if harness.should_stop():
            break
        k = harness.exploration.longest_run
        harness.run(PCTChooser(master.getrandbits(64), depth=depth, k=k))
    return harness.done()
