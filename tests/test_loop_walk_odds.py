"""The random walk's odds: the uniform walk, conditioned on a schedule not run yet."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from test_loop_explore import bank

from sessionguard.loop import run
from sessionguard.loop.random_walk import RandomChooser, ScheduleTree, _Branch

# A program with three schedules, driven by hand: at the first decision, lane
# "x" ends the run ("A", chance 1/2 under the uniform walk), lane "y" leads to
# a second decision between "p" ("B", 1/4) and "q" ("C", 1/4).


def one_run(chooser: RandomChooser) -> str:
    if chooser(0, ["x", "y"]) == 0:
        leaf = "A"
    else:
        leaf = "B" if chooser(1, ["p", "q"]) == 0 else "C"
    chooser.record(SimpleNamespace(verdict="ok"))  # type: ignore[arg-type]
    return leaf


def tree_after(leaf: str) -> ScheduleTree:
    """A tree in which exactly one run has been made, the one ending in `leaf`."""
    for seed in range(100):
        tree = ScheduleTree()
        if one_run(RandomChooser(seed, tree)) == leaf:
            return tree
    raise AssertionError(f"no seed below 100 runs {leaf}")


def test_after_a_run_the_others_keep_their_uniform_odds() -> None:
    # B has been run: the uniform walk, given that it does not run B again,
    # runs A with chance (1/2) / (3/4) = 2/3 and C with 1/3. (Drawing
    # uniformly among the open lanes would give A and C 1/2 each.)
    counts: dict[str, int] = {"A": 0, "B": 0, "C": 0}
    for seed in range(600):
        counts[one_run(RandomChooser(1000 + seed, tree_after("B")))] += 1
    assert counts["B"] == 0
    assert 360 <= counts["A"] <= 440  # 400 expected, standard deviation 11.5


def test_every_schedule_once_then_exhausted() -> None:
    tree = ScheduleTree()
    seen: list[str] = []
    for seed in range(20):
        seen.append(one_run(RandomChooser(seed, tree)))
        if tree.exhausted:
            break
    assert sorted(seen) == ["A", "B", "C"] and tree.exhausted
    root: Any = tree.root
    assert repr(root) == "CLOSED"


def test_a_first_draw_is_the_uniform_walks_own() -> None:
    # Nothing run under a decision yet: the same draw as a walk without a tree.
    for seed in range(50):
        assert one_run(RandomChooser(seed, ScheduleTree())) == one_run(RandomChooser(seed))


def test_unseen_shares_kept_by_differences_match_a_recount() -> None:
    tree = ScheduleTree()
    for seed in range(400):
        chooser = RandomChooser(seed, tree)
        chooser.record(run(bank(noise=1), chooser))
    assert not tree.exhausted and tree.branches > 50

    def recount(node: object) -> float:
        if node is None:
            return 1.0
        if not isinstance(node, _Branch):
            return 0.0  # closed
        share = sum(recount(child) for child in node.children) / len(node.children)
        assert abs(share - node.unseen) < 1e-12
        return share

    assert 0.0 < recount(tree.root) < 1.0
