"""sessionguard.loop: a controlled asyncio event loop and schedule explorers.

Run a scenario under a chosen interleaving, on a virtual clock::

    from sessionguard.loop import run, replay, explore_dfs

    result = run(main)                      # stock FIFO order, timeouts instant
    found = explore_dfs(main, max_deviations=2)
    if found.first_failure:
        print(found.first_failure.describe())
        replay(main, found.first_failure.schedule)   # the same run, exactly

``main`` is a zero-argument callable returning a fresh coroutine per run.
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
from .dfs import FullExpansion, Node, Reduction, explore_dfs
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
from .runner import CoroFactory, ReplayChooser, RunResult, Verdict, replay, run
from .schedule import Schedule, python_version
from .shrink import IndexChooser, shrink

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MAX_VIRTUAL_TIME",
    "BlockedTask",
    "Chooser",
    "ControlledLoop",
    "CoroFactory",
    "Deadlock",
    "Exploration",
    "FailurePredicate",
    "FullExpansion",
    "HarnessOptions",
    "IndexChooser",
    "Node",
    "ObserverFactory",
    "PCTChooser",
    "RandomChooser",
    "Reduction",
    "Hung",
    "LoopError",
    "Observer",
    "ReplayChooser",
    "ReplayDivergence",
    "RunProblem",
    "RunResult",
    "Schedule",
    "ScheduleVersionError",
    "UncontrolledNondeterminism",
    "UnsupportedOperation",
    "Verdict",
    "add_observer",
    "any_failure",
    "explore_dfs",
    "explore_pct",
    "explore_random",
    "fifo",
    "lane_key",
    "python_version",
    "raised",
    "replay",
    "run",
    "shrink",
]
