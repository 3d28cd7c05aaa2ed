"""sessionguard.loop: a controlled asyncio event loop and schedule explorers.

asyncio runs ready callbacks in FIFO order, so a test that passes once may
still hide an interleaving that breaks it. This package owns the loop: at
every *step* exactly one ready callback runs, picked by a *chooser*, and time
is virtual (``sleep(3600)`` and timeouts cost no wall time).

Concepts
--------
* **lane**: what can run next. Each task's next step is a lane labelled
  ``"T<n>:<name>"`` (``n`` counts tasks per loop); plain callbacks share one
  lane ``"cb:<callback>"``; each fired timer is a lane
  ``"timer:T<n>#<k>(<callback>)"``. Lanes are offered oldest first, so
  choosing 0 everywhere is exactly stock asyncio's order.
* **schedule**: the ``(choice, label)`` of every step of a run, with the
  Python minor version (schedules do not carry over between versions).
* **verdict**: ``ok``, ``error`` (main raised), ``violation`` (an observer
  raised), ``deadlock``, ``hung`` (step or virtual-time limit),
  ``nondeterminism`` (threads, executors), ``divergence`` (replay mismatch).

Worked example: a check-then-act race::

    import asyncio
    from sessionguard.loop import explore_dfs, raised, replay, shrink

    async def main():
        state = {"balance": 100}

        async def withdraw(delay):
            for _ in range(delay):
                await asyncio.sleep(0)
            if state["balance"] >= 80:      # check
                await asyncio.sleep(0)      # another task may run here
                state["balance"] -= 80      # act

        await asyncio.gather(withdraw(0), withdraw(1))
        assert state["balance"] >= 0

    found = explore_dfs(main, max_deviations=1, is_failure=raised(AssertionError))
    print(found.summary())                  # 3 schedules, 1 failing
    bad = found.first_failure.schedule      # "[1]T2:withdraw" marks the deviation
    replay(main, bad)                       # the same failure, exactly

Debugging recipe: find with ``explore_dfs(max_deviations=1..3)`` (shallow
races, exhaustively) or ``explore_pct`` / ``explore_random`` (deeper ones);
``shrink`` the failing schedule to the fewest deviations; ``replay`` it with
an ``observer`` that prints the state after each step; store it with
``Schedule.to_json`` as a regression test.

Scenario rules: pass a zero-argument factory (each run needs a fresh
coroutine); no I/O, threads or executors (use in-memory fakes); an observer
per run comes from ``observer_factory`` or from ``add_observer`` inside the
scenario.
"""

from .controlled import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_VIRTUAL_TIME,
    Chooser,
    ControlledLoop,
    LoopError,
    Observer,
    add_observer,
    fifo,
    lane_key,
)
from .dfs import FullExpansion, Node, Reduction, RedundantRun, explore_dfs
from .errors import (
    BlockedTask,
    Deadlock,
    Hung,
    ReplayDivergence,
    RunProblem,
    ScheduleVersionError,
    UncontrolledNondeterminism,
    UnsupportedOperation,
)
from .explore import (
    Exploration,
    FailurePredicate,
    HarnessOptions,
    ObserverFactory,
    any_failure,
    raised,
)
from .pct import PCTChooser, explore_pct
from .random_walk import RandomChooser, explore_random
from .reduction import DPOR, Footprint, SleepSets, StepRecorder
from .runner import CoroFactory, ReplayChooser, RunResult, Verdict, replay, run
from .schedule import Schedule, python_version
from .shrink import IndexChooser, shrink
from .stateful import UnsupportedState, VisitedStates, fingerprint

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MAX_VIRTUAL_TIME",
    "DPOR",
    "BlockedTask",
    "Chooser",
    "ControlledLoop",
    "CoroFactory",
    "Deadlock",
    "Exploration",
    "FailurePredicate",
    "Footprint",
    "FullExpansion",
    "HarnessOptions",
    "IndexChooser",
    "Node",
    "ObserverFactory",
    "PCTChooser",
    "RandomChooser",
    "Reduction",
    "RedundantRun",
    "Hung",
    "LoopError",
    "Observer",
    "ReplayChooser",
    "ReplayDivergence",
    "RunProblem",
    "RunResult",
    "Schedule",
    "ScheduleVersionError",
    "SleepSets",
    "StepRecorder",
    "UncontrolledNondeterminism",
    "UnsupportedOperation",
    "UnsupportedState",
    "Verdict",
    "VisitedStates",
    "add_observer",
    "any_failure",
    "explore_dfs",
    "explore_pct",
    "explore_random",
    "fifo",
    "fingerprint",
    "lane_key",
    "python_version",
    "raised",
    "replay",
    "run",
    "shrink",
]
