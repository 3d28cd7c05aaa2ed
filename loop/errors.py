"""What can end a controlled run other than the main coroutine finishing.

Each problem is an exception so that code driving a :class:`ControlledLoop`
directly (``loop.run_until_complete(...)``) gets a clear error instead of a
hang; :func:`sessionguard.loop.run` catches them and turns them into verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BlockedTask",
    "Deadlock",
    "Hung",
    "ReplayDivergence",
    "RunProblem",
    "ScheduleVersionError",
    "UncontrolledNondeterminism",
    "UnsupportedOperation",
]


@dataclass(frozen=True)
class BlockedTask:
    """A task that had not finished when a run stopped, and where it waits.

    ``stack`` is the chain of coroutine frames from the task's own coroutine
    down to the innermost ``await`` (``"qualname (file.py:line)"`` each), and
    ``awaiting`` describes the future at the bottom of that chain, if any.
    """

    label: str
    stack: tuple[str, ...]
    awaiting: str

    def __str__(self) -> str:
        where = " -> ".join(self.stack) if self.stack else "(not started)"
        tail = f", awaiting {self.awaiting}" if self.awaiting else ""
        return f"{self.label}: {where}{tail}"


class RunProblem(Exception):
    """Base class: the run could not finish normally (a verdict other than ok/error)."""

    verdict: str = "problem"


def _blocked_lines(blocked: Sequence[BlockedTask]) -> str:
    if not blocked:
        return "  (no unfinished task is known to the loop)"
    return "\n".join(f"  {b}" for b in blocked)


class Deadlock(RunProblem):
    """Nothing is ready, no timer is pending, and the main task has not finished.

    In stock asyncio this run would block forever in ``select()``; a controlled
    loop does no I/O and has no threads, so nothing could ever wake it up.
    """

    verdict = "deadlock"

    def __init__(self, step: int, virtual_time: float, blocked: Sequence[BlockedTask]) -> None:
        self.step = step
        self.virtual_time = virtual_time
        self.blocked = tuple(blocked)
        super().__init__(
            f"deadlock at step {step} (virtual time {virtual_time:g}): nothing is ready, "
            f"no timer is pending, and the main task has not finished. Blocked tasks:\n"
            f"{_blocked_lines(self.blocked)}"
        )


class Hung(RunProblem):
    """The run exceeded its step limit or its virtual-time limit.

    ``limit`` is ``"steps"`` or ``"virtual_time"``. A busy loop of
    ``await asyncio.sleep(0)`` hits the first; a task that only ever sleeps
    (or waits on a timeout far in the future) hits the second.
    """

    verdict = "hung"

    def __init__(
        self,
        limit: str,
        step: int,
        virtual_time: float,
        blocked: Sequence[BlockedTask],
        detail: str,
    ) -> None:
        self.limit = limit
        self.step = step
        self.virtual_time = virtual_time
        self.blocked = tuple(blocked)
        super().__init__(
            f"hung at step {step} (virtual time {virtual_time:g}): {detail}. "
            f"Unfinished tasks:\n{_blocked_lines(self.blocked)}"
        )


class ReplayDivergence(RunProblem):
    """A replayed run stopped matching its recorded schedule.

    ``expected`` is the label the schedule recorded for ``step`` (``None`` if the
    schedule had already ended) and ``ready`` the lanes that were actually
    ready. The usual causes are a code change, a different Python minor
    version, or nondeterminism in the program itself (iteration over a set of
    tasks, as ``asyncio.TaskGroup`` does when it cancels; ``id()``-based
    ordering; wall-clock time; randomness).
    """

    verdict = "divergence"

    def __init__(
        self, step: int, expected: str | None, ready: Sequence[str], reason: str = ""
    ) -> None:
        self.step = step
        self.expected = expected
        self.ready = tuple(ready)
        self.reason = reason
        want = "the schedule had ended" if expected is None else f"expected {expected!r}"
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"replay diverged at step {step}: {want}, but the ready lanes were "
            f"{list(self.ready)!r}{why}"
        )


class UncontrolledNondeterminism(RunProblem):
    """The program did something whose timing the loop cannot control.

    Examples: ``run_in_executor``/``asyncio.to_thread`` (a real thread decides
    when the result arrives) or another thread calling ``call_soon_threadsafe``.
    Exploring schedules of such a program would give irreproducible results,
    so the run stops with this verdict instead.
    """

    verdict = "nondeterminism"

    def __init__(self, step: int, what: str) -> None:
        self.step = step
        self.what = what
        super().__init__(
            f"uncontrolled nondeterminism at step {step}: {what}. A controlled loop cannot "
            f"decide when a thread's work completes; replace it with an awaitable fake."
        )


class ScheduleVersionError(ValueError):
    """A schedule recorded on one Python minor version was replayed on another."""


class UnsupportedOperation(RuntimeError):
    """The program asked the controlled loop for I/O, signals or subprocesses."""
