"""Seeded random schedules: at every step, a uniformly random ready lane.

Cheap and surprisingly effective for shallow races; weak for bugs that need
one task to be starved for many steps (use PCT for those). Each run draws its
own seed from the exploration's seed, so the same seed gives the same
sequence of schedules, and any failing run also comes with its schedule.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Unpack

from .explore import Exploration, Harness, HarnessOptions
from .runner import CoroFactory

__all__ = ["RandomChooser", "explore_random"]


class RandomChooser:
    """Pick a uniformly random lane (no draw at all when only one is ready)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        n = len(lanes)
        return self._rng.randrange(n) if n > 1 else 0


def explore_random(
    coro_factory: CoroFactory,
    *,
    runs: int = 1000,
    seed: int = 0,
    **options: Unpack[HarnessOptions],
) -> Exploration:
    """Run ``runs`` random schedules of ``coro_factory``, reproducibly from ``seed``.

    ``options`` are :class:`Harness`'s (``is_failure``, ``stop_on_failure``, ...).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    harness = Harness("random", coro_factory, seed=seed, **options)
    master = random.Random(seed)
    for _ in range(runs):
        harness.run(RandomChooser(master.getrandbits(64)))
        if harness.should_stop():
            break
    return harness.done()
