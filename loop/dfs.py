"""Exhaustive depth-first search over schedules, optionally deviation-bounded.

Stateless DFS: a running asyncio program cannot be snapshotted, so to take
another branch at step ``s`` the search re-runs the scenario from scratch,
replaying the first ``s`` choices, and then branches. The search tree is
kept as a stack of :class:`Node` (one per step of the current run: the lanes
that were ready and the alternatives still to try).

Re-running a prefix is only sound if the program is deterministic, so the
ready lanes of every replayed step are compared with the recorded ones; any
difference ends that run with the verdict ``"divergence"`` (see
:class:`ReplayDivergence`) instead of silently exploring something else.

``max_deviations=d`` explores only schedules with at most ``d`` non-FIFO
choices. Most concurrency bugs need very few (a check-then-act race needs
one), and the bounded space grows polynomially instead of exponentially.

Reduction (sleep sets, DPOR: ``reduction.py``) plugs in through
:class:`Reduction`: it decides which alternatives of a new node to try, and
may add alternatives to earlier nodes after seeing a complete run (the shape
DPOR's backtrack sets need). A reduction may also watch every step
(``begin_step``) and pick the first lane of a new node (``first``), or
declare the run redundant there (:class:`RedundantRun`): such a run is not
judged and not counted as a schedule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Unpack

from .errors import ReplayDivergence
from .explore import Exploration, Harness, HarnessOptions
from .runner import CoroFactory, RunResult

__all__ = ["FullExpansion", "Node", "RedundantRun", "Reduction", "explore_dfs"]


@dataclass(slots=True)
class Node:
    """One step of the current path: what was ready, what was taken, what is left."""

    step: int
    labels: tuple[str, ...]
    choice: int = 0
    todo: list[int] = field(default_factory=list)
    deviations: int = 0  # non-FIFO choices on the path *before* this node


class Reduction(Protocol):
    """Hook for partial-order reduction; the default explores every alternative.

    ``alternatives(node, path)`` is asked once, when ``node`` is first reached
    (``path`` holds the nodes before it): which other lane indices to explore
    from it. ``after_run(path, result)`` sees every completed run and may
    append indices to ``node.todo`` of nodes on ``path`` (DPOR's backtrack
    points). Footprints of steps, which both need, can be recorded by an
    observer the reduction installs itself.
    """

    def alternatives(self, node: Node, path: Sequence[Node]) -> Iterable[int]: ...

    def after_run(self, path: Sequence[Node], result: RunResult | None) -> None: ...


class RedundantRun(Exception):
    """Raised by a reduction's ``first()``: every schedule from here is covered elsewhere."""

    def __init__(self, step: int) -> None:
        super().__init__(f"redundant from step {step}")
        self.step = step


class FullExpansion:
    """No reduction: every ready lane is an alternative."""

    def alternatives(self, node: Node, path: Sequence[Node]) -> Iterable[int]:
        return range(1, len(node.labels))

    def after_run(self, path: Sequence[Node], result: RunResult | None) -> None:
        return None


class _PathChooser:
    """Replays ``path[:prefix]`` (checking the ready lanes), then extends it with FIFO."""

    def __init__(
        self, path: list[Node], prefix: int, max_deviations: int | None, reduction: Reduction
    ) -> None:
        self.path = path
        self.prefix = prefix
        self.max_deviations = max_deviations
        self.reduction = reduction
        # Optional hooks (a reduction that records footprints needs them).
        self.begin_step = getattr(reduction, "begin_step", None)
        self.first = getattr(reduction, "first", None)

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        path = self.path
        if self.begin_step is not None:
            self.begin_step(step, lanes, path)
        if step < self.prefix:
            node = path[step]
            if len(lanes) != len(node.labels) or tuple(lanes) != node.labels:
                raise ReplayDivergence(
                    step,
                    node.labels[node.choice],
                    lanes,
                    f"re-running the explored prefix, the ready lanes were {list(node.labels)!r} "
                    f"last time: the scenario is not deterministic, so exhaustive search "
                    f"cannot be trusted on it",
                )
            return node.choice
        if path:
            last = path[-1]
            deviations = last.deviations + (last.choice != 0)
        else:
            deviations = 0
        node = Node(step, tuple(lanes), 0, [], deviations)
        may_deviate = len(lanes) > 1 and (self.max_deviations is None or deviations < self.max_deviations)
        if self.first is not None:
            node.choice = self.first(node, path, may_deviate)
        if may_deviate:
            node.todo = [
                i for i in self.reduction.alternatives(node, path) if 0 <= i < len(lanes) and i != node.choice
            ]
        path.append(node)
        return node.choice


def explore_dfs(
    coro_factory: CoroFactory,
    *,
    max_deviations: int | None = None,
    reduction: Reduction | None = None,
    **options: Unpack[HarnessOptions],
) -> Exploration:
    """Run every schedule of ``coro_factory`` (with at most ``max_deviations`` non-FIFO choices).

    ``options`` are :class:`Harness`'s: ``is_failure``, ``stop_on_failure``
    (default True), ``observer_factory``, ``max_steps``, ``max_virtual_time``,
    ``max_schedules``, ``max_seconds``, ``keep_failures``. The result is
    ``exhausted`` when the whole bounded space was run.
    """
    if max_deviations is not None and max_deviations < 0:
        raise ValueError(f"max_deviations must be >= 0 or None, got {max_deviations}")
    name = "dfs" if max_deviations is None else f"dfs(max_deviations={max_deviations})"
    harness = Harness(name, coro_factory, **options)
    red: Reduction = reduction if reduction is not None else FullExpansion()
    start_search = getattr(red, "start_search", None)
    if start_search is not None:
        start_search(max_deviations)  # a state cache must know whether deviations are bounded
    path: list[Node] = []
    while True:
        result: RunResult | None
        try:
            result = harness.run(_PathChooser(path, len(path), max_deviations, red))
        except RedundantRun as redundant:
            # The loop keeps the exception (`abandoned`) and its traceback keeps
            # the loop: a cycle that holds every task of the run until the
            # cyclic collector runs. asyncio's set of all tasks then fills with
            # tasks of equal hashes (each loop numbers its own from 1), and
            # creating a task gets slower with every run. Break the cycle.
            redundant.__traceback__ = None
            result = None
        except BaseException:
            red.after_run(path, None)  # a reduction may have instruments to remove
            raise
        red.after_run(path, result)
        if max_deviations is not None:
            # Alternatives a reduction added after the run must respect the bound too.
            for node in path:
                if node.todo and node.deviations >= max_deviations:
                    node.todo.clear()
        if getattr(red, "restart", False):
            # The reduction has learnt that its pruning so far rested on an
            # assumption the program breaks (a stateful search that sees a
            # timer made already due): every run from here starts afresh.
            red.restart = False  # type: ignore[attr-defined]
            path.clear()
            if harness.should_stop():
                return harness.done()
            continue
        # Backtrack to the deepest node with an alternative left.
        while path and not path[-1].todo:
            path.pop()
        if not path:
            # A reduction may know that its pruning was not exact this time
            # (a stateful search whose runs reached the step limit).
            return harness.done(exhausted=getattr(red, "complete", True))
        if harness.should_stop():
            return harness.done()
        node = path[-1]
        node.choice = node.todo.pop(0)
