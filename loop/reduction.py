"""Partial-order reduction for the exhaustive DFS: sleep sets and source-set DPOR.

Two schedules that differ only in the order of *independent* steps (steps
that commute) reach the same state and judge the same; exploring one
schedule per class (per Mazurkiewicz trace) is enough. ``SleepSets`` and
``DPOR`` plug into :func:`explore_dfs` through its ``reduction`` hook.

The footprint of a loop step
----------------------------
While a run is explored, a :class:`StepRecorder` watches each step and
writes down, as a set of named objects, everything the step may have read or
written (every access counts as a write: simpler, and never less safe):

* ``lane:<lane>``: its own lane (a task's steps, the callback lane's FIFO,
  a timer) and every lane it put a handle into or took one out of
  (``call_soon``, ``call_at``, cancelling a handle). Waking a task, creating
  it, scheduling a callback: all of them write the lane that will run it.
* ``obj:<n>``: every task and future of the loop it touched, by the loop's own
  per-run number (``_sg_hash``): awaiting one, adding or removing a done
  callback, completing or cancelling it, asking ``done()`` or ``result()``.
  The controlled loop's tasks and futures are given a subclass (same layout,
  recording methods) for the length of the run, so the C code of asyncio,
  which calls these methods by name on anything but its own exact types,
  reports to the recorder too. A task's step also touches the task itself.
* ``shared``: the program's own shared state, as a single object. A step
  touches it unless it ran no code but asyncio's scheduling plumbing (the
  callbacks listed in ``PLUMBING``: a timer completing a ``sleep``, the
  completion callback of ``asyncio.wait``) or code declared *local*. Which
  code ran is known from a trace of every Python frame the step entered
  (``sys.settrace``, call events only). A step that cancels a task that is
  not local touches ``shared`` too (an observer may read ``cancelling()``).

Two steps are **dependent** when their footprints share an object; otherwise
independent. So all steps of ordinary program code are dependent on each
other (they all touch ``shared``): the reduction removes the interleavings of
asyncio's own plumbing and of local tasks (in the gateway: the typing
indicator, the completion callbacks of ``asyncio.wait``, the timers of
``sleep``) with everything else, which is where most schedules come from.

Why independent steps commute
-----------------------------
Let ``a`` and ``b`` be enabled in state ``s`` with disjoint footprints. Each
reads and writes only objects of its own footprint: its lane and the handles
it adds or cancels, the tasks and futures it calls methods on, the program
state if it ran program code. The loop state a step depends on is the head of
its own lane (written only by steps that write that lane), and the objects it
touches. Since ``b`` writes none of ``a``'s objects, ``a`` finds in ``b(s)``
exactly what it found in ``s``, does the same, and ``a(b(s)) = b(a(s))``; and
neither enables nor disables the other (enabling a step means putting a handle
into its lane, which would be a write of that lane). Creating an object is not
an access: nobody else can hold a reference to an object made by a step that
has not run yet. The one global effect left is the passing of virtual time:
a timer becomes ready only when nothing else is; the search never assumes a
timer could have run earlier (it falls back to every ready lane, below).

Observers (the refinement check) run after every step and judge the run. They
read program state and the state of tasks that are not local; every step that
writes either touches ``shared``, so all those steps are ordered the same way
in every schedule of a class and an observer sees the same sequence of states,
up to repetitions that a stutter cannot change: such steps change nothing the
observer reads.

Assumptions, for code other than this project's adapters
--------------------------------------------------------
The reduction is sound for a program that (1) shares state between tasks only
through Python code that runs inside its tasks and callbacks (any such step
touches ``shared``), or through the loop's tasks and futures (every asyncio
primitive makes its futures with ``loop.create_future``); a Future made by
instantiating a class directly and shared between tasks is not tracked; (2)
does not depend on the order of creation of tasks and futures by
independent steps (their hash, hence the iteration order of a set of them,
follows creation); (3) declares as *local* only code that touches no shared
state but fresh futures of its own (the gateway's typing indicator awaits a
future of its own until it is cancelled); (4) has observers that read only
program state and non-local tasks; (5) uses the controlled loop's own task
factory. This project's adapters satisfy all five; ``tests/test_loop_reduction.py``
checks that the verdicts and the violated properties are the same with and
without reduction on the named scenarios.

The algorithms
--------------
``SleepSets``: every ready lane is an alternative, except those asleep. When
a node's alternative has been explored, its lane sleeps in the later siblings'
subtrees until a step dependent with it runs. A run whose ready lanes are all
asleep is redundant: it is abandoned (:class:`RedundantRun`) and counted
apart.

``DPOR`` (source sets, Abdulla, Aronis, Jonsson and Sagonas, POPL 2014, with
sleep sets): each run starts with no alternatives; after a run, for every
*race* (two dependent steps of different lanes, with no step ordered between
them), the lane that starts the reversed race is added at the node before the
first step, unless a lane of the same class is already explored, scheduled
or asleep there. If none of those lanes is ready at that node (a timer that
waits for quiet), every ready lane is added instead.

With a deviation bound (``max_deviations``) both are applied to the bounded
search as they are; since the reversed schedule of a race may need more
deviations than the bound allows, a bounded reduced search is not
guaranteed to cover every class that the bounded full search covers. Only the
unbounded search is exhaustive in the strict sense.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Literal

from . import controlled
from .controlled import ControlledLoop, lane_key
from .dfs import Node, RedundantRun
from .runner import RunResult

__all__ = ["DPOR", "PLUMBING", "Footprint", "SleepSets", "StepRecorder"]

SHARED = "shared"

#: asyncio callbacks that touch nothing but loop tasks and futures (all recorded)
#: and state private to one call: ``(module file, qualname)``.
PLUMBING = frozenset(
    {
        ("tasks.py", "_wait.<locals>._on_completion"),
        ("tasks.py", "_release_waiter"),
        ("futures.py", "_set_result_unless_cancelled"),
    }
)

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_LOOP_DIR = os.path.dirname(__file__)

Kind = Literal["shared", "local", "plumbing"]


@dataclass(frozen=True, slots=True)
class Footprint:
    """What one step touched (see the module docstring): its lane and the objects."""

    lane: str
    objects: frozenset[str]
    kind: Kind
    everything: bool = False  # unknown: conflicts with every step

    def conflicts(self, other: Footprint) -> bool:
        return self.everything or other.everything or not self.objects.isdisjoint(other.objects)


def _name(obj: object) -> str:
    return f"obj:{getattr(obj, '_sg_hash', id(obj))}"


_RECORDER: StepRecorder | None = None  # the recorder of the run in progress, if any


def _touch(obj: object) -> None:
    recorder = _RECORDER
    if recorder is not None and recorder.recording:
        recorder.objects.add(_name(obj))


class _Touching:
    """What both tracked classes report: every read of a task's or future's state.

    A mixin with no slots of its own, so that `__class__` can be switched to a
    tracked class in place (the layout stays the loop's Task or Future)."""

    __slots__ = ()

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        _touch(self)
        super().add_done_callback(fn, context=context)  # type: ignore[misc]

    def remove_done_callback(self, fn: Any) -> int:
        _touch(self)
        return super().remove_done_callback(fn)  # type: ignore[misc, no-any-return]

    def cancelled(self) -> bool:
        _touch(self)
        return super().cancelled()  # type: ignore[misc, no-any-return]

    def done(self) -> bool:
        _touch(self)
        return super().done()  # type: ignore[misc, no-any-return]

    def result(self) -> Any:
        _touch(self)
        return super().result()  # type: ignore[misc]

    def exception(self) -> Any:
        _touch(self)
        return super().exception()  # type: ignore[misc]

    def __await__(self) -> Any:
        _touch(self)
        return super().__await__()  # type: ignore[misc]

    __iter__ = __await__


class _TrackedFuture(_Touching, controlled.Future[Any]):
    """The loop's Future, reporting every access to the recorder (same layout)."""

    __slots__ = ()

    def set_result(self, result: Any) -> None:
        _touch(self)
        super().set_result(result)

    def set_exception(self, exception: Any) -> None:
        _touch(self)
        super().set_exception(exception)

    def cancel(self, msg: Any = None) -> bool:
        _touch(self)
        return super().cancel(msg)


class _TrackedTask(_Touching, controlled.Task[Any]):
    """The loop's Task, reporting every access to the recorder (same layout)."""

    __slots__ = ()

    def cancel(self, msg: Any = None) -> bool:
        recorder = _RECORDER
        if recorder is not None and recorder.recording:
            recorder.objects.add(_name(self))
            if _name(self) not in recorder.local_tasks:
                recorder.cancels_shared = True
        return super().cancel(msg)

    def uncancel(self) -> int:
        _touch(self)
        return super().uncancel()

    def cancelling(self) -> int:
        _touch(self)
        return super().cancelling()


class StepRecorder:
    """Records the footprint of every step of one run of a :class:`ControlledLoop`.

    ``start`` is called from the chooser before the first step (the loop is
    running then); ``begin`` and ``go`` by the chooser before every step; the
    recorder's own observer, registered before any other of the run, ends
    each step, so that the code of later observers (the refinement check) is
    not charged to the step. An observer given to the harness itself
    (``observer_factory``) runs before it and is charged: more dependence,
    never less.
    """

    def __init__(self, loop: ControlledLoop, local: frozenset[str]) -> None:
        self.loop = loop
        self.local = local
        self.recording = False
        self.objects: set[str] = set()
        self.local_tasks: set[str] = set()
        self.cancels_shared = False
        self._kinds: dict[CodeType, str] = {}
        self._saw: set[str] = set()
        self._first: str | None = None
        self._handles: dict[asyncio.Handle, bool] = {}
        self.lane = ""  # the lane of the step being recorded
        self._closed: Footprint | None = None
        self._prev_trace: Any = None

    # --- installing and removing the instruments ------------------------------------

    def start(self) -> None:
        global _RECORDER
        loop = self.loop
        make_future, make_task = loop.create_future, loop.create_task

        def create_future() -> asyncio.Future[Any]:
            fut = make_future()
            # A subclass that adds methods and no slots has the same layout,
            # so the object can change class in place; asyncio keeps working on
            # it exactly as before, and every call now reports to the recorder.
            if type(fut) is controlled.Future:
                fut.__class__ = _TrackedFuture
            return fut

        def create_task(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            code = getattr(coro, "cr_code", None)
            task = make_task(coro, **kwargs)
            self._adopt(task, code)
            return task

        # Instance attributes shadow the methods for this loop only; asyncio
        # (the C part included) looks both up by name on the loop.
        loop.create_future = create_future  # type: ignore[method-assign]
        loop.create_task = create_task  # type: ignore[method-assign]
        for task in loop.tasks():
            self._adopt(task, getattr(task.get_coro(), "cr_code", None))
        loop.add_observer(self._end)
        self._prev_trace = sys.gettrace()
        sys.settrace(self._trace)
        _RECORDER = self

    def stop(self) -> None:
        global _RECORDER
        if _RECORDER is self:
            sys.settrace(self._prev_trace)
            _RECORDER = None
        self.recording = False

    def _adopt(self, task: asyncio.Task[Any], code: CodeType | None) -> None:
        if type(task) is not controlled.Task:
            if isinstance(task, _TrackedTask):
                return
            raise TypeError(
                "partial-order reduction needs the controlled loop's own tasks; this program "
                "sets its own task factory: run it with reduction='none'"
            )
        task.__class__ = _TrackedTask
        if code is not None and code.co_qualname in self.local:
            self.local_tasks.add(_name(task))

    # --- one step ----------------------------------------------------------------

    def begin(self) -> Footprint | None:
        """Start recording the next step; returns the previous step's footprint.

        Recording starts at ``go``, once the chooser knows which lane runs.
        """
        previous = self._close()
        self.lane = ""
        self._closed = None
        self.objects = set()
        self.cancels_shared = False
        self._saw = set()
        self._first = None
        self._handles = self._queued()
        return previous

    def go(self, lane: str) -> None:
        """The chooser has picked ``lane``: record from here until the step ends.

        Called last in the chooser, so that none of the search's own code (a
        dataclass's generated ``__init__`` has no file, and would count as
        program code) is charged to the step.
        """
        self.lane = lane
        self.recording = True

    def _end(self, step: int, label: str) -> None:
        self._closed = self._close()

    def finish(self) -> Footprint | None:
        """The last step's footprint (conservative when the loop is already closed)."""
        if self._closed is not None or not self.recording:
            fp = self._closed
        elif self.loop.is_closed():
            # The loop has dropped its queues: assume the step touched everything.
            fp = Footprint(self.lane, frozenset({SHARED, f"lane:{self.lane}"}), "shared", everything=True)
        else:
            fp = self._close()
        self.stop()
        return fp

    def _queued(self) -> dict[asyncio.Handle, bool]:
        loop = self.loop
        out: dict[asyncio.Handle, bool] = {h: h.cancelled() for h in loop._ready}
        for t in loop._scheduled:
            out[t] = t.cancelled()
        return out

    def _close(self) -> Footprint | None:
        if not self.recording:
            return self._closed
        self.recording = False
        loop = self.loop
        objects = self.objects
        lane = self.lane
        objects.add(f"lane:{lane}")
        if lane.startswith("T"):
            n = int(lane[1:].partition(":")[0])
            objects.add(_name(loop._task_list[n]))
        before = self._handles
        for h in self._queued():
            if h not in before:  # scheduled by this step (call_soon, call_at, a wake-up)
                objects.add(f"lane:{lane_key(loop._label(h))}")  # type: ignore[arg-type]
        for h, was in before.items():  # cancelled by this step
            if not was and h.cancelled():
                objects.add(f"lane:{lane_key(loop._label(h))}")  # type: ignore[arg-type]
        kind = self._kind()
        if kind == "shared" or self.cancels_shared:
            objects.add(SHARED)
            kind = "shared"
        return Footprint(lane, frozenset(objects), kind)

    def _kind(self) -> Kind:
        saw = self._saw
        if "user" in saw:
            return "shared"
        if "local" in saw:
            return "local"
        if self._first == "plumbing":
            # A vetted callback; the asyncio code it calls (Handle.__init__ for
            # the wake-ups it schedules) is part of what was vetted.
            return "plumbing"
        return "shared"

    # --- which code ran ------------------------------------------------------------

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.recording and event == "call":
            code = frame.f_code
            kind = self._kinds.get(code)
            if kind is None:
                kind = self._kinds[code] = self._classify(code)
            if kind != "infra":
                self._saw.add(kind)
                if self._first is None:
                    self._first = kind
        prev = self._prev_trace
        return prev(frame, event, arg) if prev is not None else None

    def _classify(self, code: CodeType) -> str:
        path = code.co_filename
        directory = os.path.dirname(path)
        if directory == _LOOP_DIR:
            return "infra"  # the controlled loop and these instruments
        if code.co_qualname in self.local:
            return "local"
        if directory == _ASYNCIO_DIR:
            if (os.path.basename(path), code.co_qualname) == ("events.py", "Handle._run"):
                return "infra"  # runs the step's callback, which is what gets classified
            return "plumbing" if (os.path.basename(path), code.co_qualname) in PLUMBING else "asyncio"
        return "user"


# --- the search ------------------------------------------------------------------------


@dataclass(slots=True)
class _Visit:
    """The reduction's side of one node of the DFS path."""

    node: Node
    sleep: dict[str, Footprint]  # lanes asleep on entering the node, with their step's footprint
    current: str  # the lane taken from it now
    done: dict[str, Footprint] = field(default_factory=dict)  # lanes fully explored from it
    footprint: Footprint | None = None  # of the step taken now, in the current run


@dataclass
class ReductionStats:
    """What the reduction did during one exploration."""

    redundant_runs: int = 0  # abandoned: every ready lane was asleep (not counted as schedules)
    races: int = 0  # races found over all runs
    backtracks: int = 0  # alternatives added to earlier nodes


class SleepSets:
    """Every ready lane is an alternative, except the lanes asleep (see the module docstring).

    ``local``: qualnames of coroutine functions declared local (assumption 3).
    """

    name = "sleep"

    def __init__(self, local: Iterable[str] = ()) -> None:
        self.local = frozenset(local)
        self.visits: list[_Visit] = []  # parallel to the DFS path
        self.recorder: StepRecorder | None = None
        self.stats = ReductionStats()

    # --- the hooks explore_dfs calls ----------------------------------------------

    def begin_step(self, step: int, lanes: Sequence[str], path: Sequence[Node]) -> None:
        if step == 0:
            self._start_run(len(path))
        recorder = self.recorder
        assert recorder is not None
        previous = recorder.begin()
        if step > 0:
            self.visits[step - 1].footprint = previous
        if step < len(path):  # replaying the prefix
            visit = self.visits[step]
            taken = lane_key(visit.node.labels[visit.node.choice])
            if taken != visit.current:
                # The DFS has moved on to another alternative here: the old one is explored.
                if visit.footprint is not None:
                    visit.done[visit.current] = visit.footprint
                visit.current = taken
                visit.footprint = None
            recorder.go(taken)

    def first(self, node: Node, path: Sequence[Node], may_deviate: bool) -> int:
        sleep = self._sleep_at(node.step)
        choice = 0
        if lane_key(node.labels[0]) in sleep:
            awake = [i for i, label in enumerate(node.labels) if lane_key(label) not in sleep]
            if not awake:
                # Every ready lane sleeps: each way on from here has been explored.
                self.stats.redundant_runs += 1
                raise RedundantRun(node.step)
            if may_deviate:
                choice = awake[0]
        taken = lane_key(node.labels[choice])
        self.visits.append(_Visit(node, sleep, taken))
        assert self.recorder is not None
        self.recorder.go(taken)
        return choice

    def alternatives(self, node: Node, path: Sequence[Node]) -> Iterable[int]:
        sleep = self.visits[node.step].sleep
        return [i for i, label in enumerate(node.labels) if lane_key(label) not in sleep]

    def after_run(self, path: Sequence[Node], result: RunResult | None) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        last = recorder.finish()
        self.recorder = None
        n = len(path)
        if n and self.visits[n - 1].footprint is None:
            self.visits[n - 1].footprint = last

    # --- internals -------------------------------------------------------------------

    def _start_run(self, prefix: int) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, ControlledLoop):
            raise TypeError("partial-order reduction needs a ControlledLoop (sessionguard.loop.run)")
        if self.recorder is not None:
            self.recorder.stop()
        del self.visits[prefix:]  # nodes the DFS has popped
        self.recorder = StepRecorder(loop, self.local)
        self.recorder.start()

    def _sleep_at(self, step: int) -> dict[str, Footprint]:
        """The sleep set on entering the node of ``step``: what slept or was explored at the
        parent, minus what the parent's step conflicts with (it may have changed it)."""
        if step == 0:
            return {}
        parent = self.visits[step - 1]
        fp = parent.footprint
        if fp is None or fp.everything:
            return {}
        return {
            lane: other
            for lane, other in (parent.sleep | parent.done).items()
            if lane != parent.current and not other.conflicts(fp)
        }


class DPOR(SleepSets):
    """Source-set dynamic partial-order reduction with sleep sets (see the module docstring)."""

    name = "dpor"

    def alternatives(self, node: Node, path: Sequence[Node]) -> Iterable[int]:
        return ()  # alternatives come from the races of complete runs

    def after_run(self, path: Sequence[Node], result: RunResult | None) -> None:
        super().after_run(path, result)
        steps = [v.footprint for v in self.visits[: len(path)]]
        if any(fp is None for fp in steps):
            # Footprints missing (the run stopped early): fall back to full expansion.
            for visit in self.visits[: len(path)]:
                self._add_all(visit)
            return
        self._reverse_races([fp for fp in steps if fp is not None])

    def _reverse_races(self, steps: list[Footprint]) -> None:
        # Happens-before as bit sets. Every access counts as a write, so the
        # steps touching one object are totally ordered, and the last one
        # before j stands for all of them.
        before: list[int] = []  # before[j]: the steps that happen before step j
        last: dict[str, int] = {}
        for j, fp in enumerate(steps):
            if fp.everything:
                mask = (1 << j) - 1
                candidates = set(range(j))
            else:
                candidates = {last[o] for o in fp.objects if o in last}
                mask = 0
                for c in candidates:
                    mask |= before[c] | (1 << c)
            before.append(mask)
            for o in fp.objects:
                last[o] = j
            dominated = 0
            for c in candidates:
                dominated |= before[c]
            for i in candidates:
                if (dominated >> i) & 1 or steps[i].lane == fp.lane:
                    continue
                self.stats.races += 1
                self._reverse(i, j, steps, before)

    def _reverse(self, i: int, j: int, steps: list[Footprint], before: list[int]) -> None:
        """Make sure some schedule runs step j's race partner before step i."""
        # v: the steps after i that do not happen after it, then j.
        v = [k for k in range(i + 1, j) if not (before[k] >> i) & 1] + [j]
        in_v = 0
        for k in v:
            in_v |= 1 << k
        initials = {steps[k].lane for k in v if not before[k] & in_v}
        visit = self.visits[i]
        node = visit.node
        covered = {visit.current} | set(visit.done) | set(visit.sleep)
        covered.update(lane_key(node.labels[c]) for c in node.todo)
        if initials & covered:
            return
        for index, label in enumerate(node.labels):
            if lane_key(label) in initials:
                node.todo.append(index)
                self.stats.backtracks += 1
                return
        # None of them is ready here (a timer waits for quiet): every ready lane.
        self._add_all(visit)

    def _add_all(self, visit: _Visit) -> None:
        node = visit.node
        covered = {visit.current} | set(visit.done) | set(visit.sleep)
        covered.update(lane_key(node.labels[c]) for c in node.todo)
        for index, label in enumerate(node.labels):
            if lane_key(label) not in covered:
                covered.add(lane_key(label))
                node.todo.append(index)
                self.stats.backtracks += 1
