"""Seeded random schedules: at every step, a uniformly random ready lane; no schedule twice.

Cheap and surprisingly effective for shallow races; weak for bugs that need
one task to be starved for many steps (use PCT for those). Each run draws its
own seed from the exploration's seed, so the same seed gives the same
sequence of schedules, and any failing run also comes with its schedule.

The walk remembers the schedules it has run, as a tree of their *decisions*
(the steps with two or more ready lanes), and never runs one twice: it is
the uniform walk *conditioned on not repeating a run it has already made*.
Each decision of the tree knows how likely the uniform walk from there is to
make a run not recorded yet (its *unseen* share); the walk picks each choice
with the uniform walk's chance times the unseen share under that choice.
Multiplied along a run, these give every schedule not yet run exactly its
chance under the uniform walk, divided by the chance of any unseen one:
nothing else changes. At a decision nothing has been run under, the draw is
the uniform walk's own. A branch whose every schedule has been run is
*closed* and never drawn again. On a scenario with few likely schedules,
where a plain walk keeps re-drawing them, this saves runs; and once the root
closes, every schedule of the scenario has been run, so the exploration stops
and says ``exhausted``: a proof, as from DFS.

Since an exploration stops at the first failure, every run before it
passed: conditioning on a new run then only takes away passing schedules,
and a failing one's chance per run is its chance under the uniform walk
divided by the share not yet run, never less. Drawing uniformly among the
open choices (as this walk once did) looks similar but is not the uniform
walk: once a branch has been run under, it gives the rarely drawn branches
the same odds as the likely ones, whatever their chances, and a bug in a
likely branch is then found later than by the uniform walk.

Like DFS and replay, the tree assumes that the program is deterministic
(the same choices give the same ready lanes). A decision whose ready lanes
differ from those recorded at the same point proves it is not: the tree then
stops pruning and never claims ``exhausted``. It records at most
``MAX_BRANCHES`` decisions (memory stays bounded on long explorations);
beyond that the walk is plain uniform where nothing is recorded.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Unpack

from .explore import Exploration, Harness, HarnessOptions
from .runner import CoroFactory, RunResult

__all__ = ["MAX_BRANCHES", "RandomChooser", "ScheduleTree", "explore_random"]

MAX_BRANCHES = 100_000
"""How many decisions a :class:`ScheduleTree` records (about 21 MB, at three lanes a decision)."""


class _Closed:
    """The mark of a branch whose every schedule has been run."""

    unseen = 0.0  # nothing left to run under it (see _Branch.unseen)

    def __repr__(self) -> str:
        return "CLOSED"


_CLOSED: Final = _Closed()


class _Branch:
    """One decision of the recorded runs: the ready lanes, and what lies under each choice."""

    __slots__ = ("children", "lanes", "open", "unseen")

    def __init__(self, lanes: Sequence[str]) -> None:
        self.lanes = hash(tuple(lanes))  # enough to notice a nondeterministic program
        # None: not run yet; a _Branch: the next decision; _CLOSED: all run.
        self.children: list[_Branch | _Closed | None] = [None] * len(lanes)
        self.open = len(lanes)
        # The chance that the uniform walk from here makes a run not recorded yet.
        self.unseen = 1.0

    def draw(self, rng: random.Random) -> int:
        """A choice with the uniform walk's chance, given that the run will be a new one."""
        # Under each choice, the chance that the uniform walk from there makes a new run.
        shares = [1.0 if child is None else child.unseen for child in self.children]
        x = rng.random() * sum(shares)
        for i, share in enumerate(shares):
            x -= share
            if x < 0.0:
                return i
        # Rounding drew the very end: the last choice with anything unseen, then.
        return max(i for i, share in enumerate(shares) if share > 0.0)


class ScheduleTree:
    """The decisions of every run of one exploration, and which of their branches are closed."""

    def __init__(self, max_branches: int = MAX_BRANCHES) -> None:
        self.root: _Branch | _Closed | None = None
        self.branches = 0
        self.max_branches = max_branches
        self.deterministic = True  # False once two runs disagreed about the ready lanes

    @property
    def exhausted(self) -> bool:
        """Every schedule of the program has been run (and nothing said it is nondeterministic)."""
        return self.root is _CLOSED and self.deterministic


class RandomChooser:
    """Pick a uniformly random lane (no draw at all when only one is ready).

    With a ``tree``, a choice whose branch is closed is never drawn, and the
    run is recorded in the tree by :meth:`record`.
    """

    decisions_only = True  # nothing to draw when one lane is ready: the loop need not ask

    def __init__(self, seed: int, tree: ScheduleTree | None = None) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._tree = tree
        # The decisions of this run so far, as (branch, choice); None: off the tree.
        self._path: list[tuple[_Branch, int]] | None = None if tree is None else []

    def __call__(self, step: int, lanes: Sequence[str]) -> int:
        n = len(lanes)
        if n < 2:
            return 0
        branch = self._branch(lanes) if self._path is not None else None
        if branch is None:
            return self._rng.randrange(n)
        if branch.unseen == 1.0:
            choice = self._rng.randrange(n)  # nothing run under here yet: the uniform walk's own draw
        else:
            choice = branch.draw(self._rng)
        assert self._path is not None
        self._path.append((branch, choice))
        return choice

    def _branch(self, lanes: Sequence[str]) -> _Branch | None:
        """The tree's branch for this decision, made if it is new; None when the run leaves the tree."""
        tree = self._tree
        path = self._path
        assert tree is not None and path is not None
        node = path[-1][0].children[path[-1][1]] if path else tree.root
        if node is None:
            if tree.branches >= tree.max_branches:
                self._path = None
                return None
            node = _Branch(lanes)
            tree.branches += 1
            if path:
                path[-1][0].children[path[-1][1]] = node
            else:
                tree.root = node
            return node
        if isinstance(node, _Closed) and not path:
            self._path = None  # every schedule has been run: nothing left to steer
            return None
        if isinstance(node, _Closed) or node.lanes != hash(tuple(lanes)):
            # A closed branch is never chosen, and the same choices must give
            # the same lanes: the program is not deterministic.
            tree.deterministic = False
            self._path = None
            return None
        return node

    def record(self, result: RunResult) -> None:
        """Close the schedule just run (and every branch it completes) in the tree."""
        tree = self._tree
        path = self._path
        if tree is None or path is None or result.verdict == "divergence":
            return  # no tree, or off the tree
        # (A run the loop abandoned is re-raised by run(): every run that gets
        # here was chosen by this chooser to its end.)
        end = path[-1][0].children[path[-1][1]] if path else tree.root
        if end is _CLOSED and not path:
            return  # a run without decisions, already recorded
        if end is not None:
            tree.deterministic = False  # an earlier run went on to another decision from here
            return
        # The run's own end is closed: its unseen share drops from 1 to 0.
        # Each branch above it loses 1/n of what its chosen child lost (n:
        # its choices), and closes in its parent once all of its schedules
        # have been run. (Updated by differences, not summed again: the
        # rounding this leaves is far below any chance that matters.)
        closed = True
        lost = 1.0  # how much of its chance the child just below lost
        for branch, choice in reversed(path):
            if closed:
                branch.children[choice] = _CLOSED
                branch.open -= 1
                closed = branch.open == 0
            before = branch.unseen
            branch.unseen = 0.0 if closed else before - lost / len(branch.children)
            lost = before - branch.unseen
        if closed:
            tree.root = _CLOSED


def explore_random(
    coro_factory: CoroFactory,
    *,
    runs: int = 1000,
    seed: int = 0,
    **options: Unpack[HarnessOptions],
) -> Exploration:
    """Run up to ``runs`` random schedules of ``coro_factory``, reproducibly from ``seed``.

    Stops early, ``exhausted``, once every schedule has been run (see the
    module docstring). ``options`` are :class:`Harness`'s (``is_failure``,
    ``stop_on_failure``, ...).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    harness = Harness("random", coro_factory, seed=seed, **options)
    master = random.Random(seed)
    tree = ScheduleTree()
    for _ in range(runs):
        chooser = RandomChooser(master.getrandbits(64), tree)
        chooser.record(harness.run(chooser))
        if harness.should_stop():
            break
        if tree.exhausted:
            return harness.done(exhausted=True)
    return harness.done()
