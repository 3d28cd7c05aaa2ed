"""ControlledLoop: an asyncio event loop whose every scheduling decision is a choice.

How stock asyncio schedules
---------------------------
``BaseEventLoop._run_once()`` is one *iteration*: wait for I/O, move the timers
that are due onto the ready queue, then run every handle that was on the ready
queue when the iteration began, in FIFO order. Handles queued while that
batch runs wait for the next iteration. Tasks and futures (the C-accelerated
ones too) only ever reach the loop through ``call_soon``/``call_at``, so a
loop that owns those two queues owns the whole schedule.

What this loop changes
----------------------
``_run_once()`` runs exactly one handle per call (one *step*), chosen by a
*chooser* among the ready *lanes*, and ``time()`` is a virtual clock that
jumps to the next timer when nothing is ready. A lane is:

* per task, the oldest ready handle of that task (its next step), labelled
  ``"T<n>:<name>"`` with ``n`` a per-loop counter (never ``id()``, and never
  asyncio's process-wide ``Task-<n>`` names, which differ from run to run);
* one lane for plain callbacks (future callbacks, ``call_soon(f)``), FIFO
  inside the lane, labelled ``"cb:<callback qualname>"``;
* one lane per fired timer, labelled ``"timer:<creator>#<k>(<callback>)"``
  where the creator is the task that armed it and ``k`` counts its timers.

Lanes are offered sorted by the age of their oldest handle, so choice 0 is
always the handle at the head of asyncio's own FIFO queue: choosing 0 at
every step reproduces stock asyncio's order exactly, iteration boundaries
(and so the moment timers join the queue) included.

A run ends with a verdict rather than a hang: nothing ready and no timer
raises :class:`Deadlock`, too many steps or a timer beyond the virtual-time
limit raises :class:`Hung`, a thread or executor raises
:class:`UncontrolledNondeterminism`, and I/O raises
:class:`UnsupportedOperation`. :func:`sessionguard.loop.run` turns these into
verdicts; this class can also be used directly with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import os
import re
import sys
import threading
import weakref
from asyncio.format_helpers import extract_stack
from collections.abc import Callable, Container, Coroutine, Mapping, Sequence
from concurrent.futures import Executor
from contextvars import Context, copy_context
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, TypeVarTuple, Unpack

from .errors import (
    BlockedTask,
    Deadlock,
    Hung,
    RunProblem,
    UncontrolledNondeterminism,
    UnsupportedOperation,
)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MAX_VIRTUAL_TIME",
    "Chooser",
    "ControlledLoop",
    "LoopError",
    "Observer",
    "add_observer",
    "fifo",
    "lane_key",
]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

Chooser = Callable[[int, Sequence[str]], int]
"""``chooser(step, lanes) -> index``: pick one of the ready lanes (labels, FIFO-sorted).

A chooser with a true ``decisions_only`` attribute is asked only when two or
more lanes are ready; at the other steps the loop runs the only lane itself
(choice 0) without calling it. About half the steps of a typical run have a
single lane, so a chooser that has nothing to decide there saves a call each.
Such a chooser may also name, in an ``ask_at`` attribute (anything that
answers ``step in ask_at``, read once when the loop is made), the steps at
which it is to be asked even with a single lane ready: PCT's change points,
which demote whichever lane runs at that step.
"""

Observer = Callable[[int, str], None]
"""``observer(step, label)``: called after every step of the main phase of a run."""

DEFAULT_MAX_STEPS = 100_000
DEFAULT_MAX_VIRTUAL_TIME = 30 * 24 * 3600.0  # a month of virtual seconds

_CALLBACK_LANE = -1
_SHUTDOWN_ROUNDS = 100  # cancel-and-wait passes at shutdown (finally blocks may start tasks)
_DEFAULT_TASK_NAME = re.compile(r"Task-\d+|None")  # 3.13.0 names an unnamed factory task "None"
_DEFAULT_NAME_STARTS = ("Task-", "None")  # a cheap test first: most names are not default ones
_STEP_CALLBACKS = frozenset({"TaskStepMethWrapper", "task_wakeup", "__step", "__wakeup"})
_TASK_TYPES: tuple[type, ...] = tuple(
    {asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task)}
)


def fifo(step: int, lanes: Sequence[str]) -> int:
    """The chooser of stock asyncio: always the oldest ready handle."""
    return 0


def lane_key(label: str) -> str:
    """The identity of a lane across steps (its label, minus the callback detail).

    The callback lane's label names the callback at its head, which changes
    from step to step; strategies that track lanes over time (PCT priorities)
    should key them by this instead.
    """
    return "cb" if label.startswith("cb:") else label


@dataclass(frozen=True)
class LoopError:
    """A call of the loop's exception handler: an error nobody awaited."""

    message: str
    exception: BaseException | None
    task: str | None

    def __str__(self) -> str:
        who = f"{self.task}: " if self.task else ""
        exc = f": {self.exception!r}" if self.exception is not None else ""
        return f"{who}{self.message}{exc}"


class _ReadyHandle(asyncio.Handle):
    """A Handle that knows its lane; ``seq`` orders every handle of the loop.

    ``batch`` is the number of the iteration during which the handle joined
    the ready queue: it belongs to the batch of every later iteration.
    """

    __slots__ = ("batch", "label", "lane", "seq")

    seq: int
    lane: int
    label: str | None
    batch: int

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: ControlledLoop,
        context: Context | None,
        seq: int,
        lane: int,
        label: str | None,
        batch: int,
    ) -> None:
        # asyncio.Handle.__init__, written out: a handle is made for every
        # step of a run, and one call less per step is measurable.
        self._context = copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = (
            extract_stack(sys._getframe(1)) if loop._debug else None  # noqa: SLF001
        )
        self.seq = seq
        self.lane = lane
        self.label = label
        self.batch = batch


class _Timer(asyncio.TimerHandle):
    __slots__ = ("batch", "label", "lane", "seq")

    seq: int
    lane: int
    label: str | None
    batch: int


_Entry = _ReadyHandle | _Timer


class Task(asyncio.Task[_T]):
    """A Task that hashes by a per-loop number instead of by its address.

    asyncio keeps tasks in sets (``TaskGroup._tasks``, the sets of
    ``asyncio.wait``, ``all_tasks()``), and a set iterates in hash order. With
    address-based hashes the order in which a TaskGroup cancels its members
    changes from one run to the next, so no schedule of such a program could
    be replayed or searched. Equality stays identity: nothing but set order
    can tell the difference, and set order was arbitrary to begin with.
    """

    __slots__ = ("_sg_hash", "_sg_lane")

    def __init__(
        self, coro: Coroutine[Any, Any, _T], *, sg_hash: int, sg_lane: int | None = None, **kwargs: Any
    ) -> None:
        self._sg_hash = sg_hash  # before Task.__init__, which adds self to a WeakSet
        # The task's number on its loop, set when the loop first sees it (or
        # before Task.__init__ schedules its first step): a slot read is much
        # cheaper than a dict lookup through __hash__, and the loop needs it
        # for every step the task schedules.
        self._sg_lane: int | None = sg_lane
        super().__init__(coro, **kwargs)

    def __hash__(self) -> int:
        return self._sg_hash


class Future(asyncio.Future[_T]):
    """A Future with a per-loop hash, for the same reason as :class:`Task`."""

    __slots__ = ("_sg_hash",)

    def __init__(self, *, loop: asyncio.AbstractEventLoop, sg_hash: int) -> None:
        self._sg_hash = sg_hash
        super().__init__(loop=loop)

    def __hash__(self) -> int:
        return self._sg_hash


_EAGER_TASK_FACTORY = getattr(asyncio, "eager_task_factory", None)  # 3.12+
_RUN_UNTIL_COMPLETE_CB = getattr(asyncio.base_events, "_run_until_complete_cb", None)


_CALLBACK_LABELS: dict[str, str] = {}
"""The label of a callback lane by the callback's qualname (a program has few of them)."""


def _callable_name(cb: object) -> str:
    """A short, run-independent name: the qualname after its last ``<locals>``."""
    name = getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None)
    if name is None:
        inner = getattr(cb, "func", None)  # functools.partial
        name = _callable_name(inner) if inner is not None else type(cb).__name__
    return str(name).rpartition("<locals>.")[2]


def _step_owner(cb: object) -> asyncio.Task[Any] | None:
    """The task whose step this callback is, if it is one (``__step``/``__wakeup``).

    Other methods of a task scheduled by someone else (``call_soon(t.cancel)``)
    are plain callbacks: they run on behalf of whoever scheduled them.
    """
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, _TASK_TYPES):
        name = getattr(cb, "__name__", None) or type(cb).__name__
        if name in _STEP_CALLBACKS:
            return owner  # type: ignore[return-value]
    return None


def _frame_of(obj: object) -> Any:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attr, None)
        if frame is not None:
            return frame
    return None


def _awaited_by(obj: object) -> object:
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(obj, attr, None)
        if inner is not None:
            return inner
    return None


def _coroutine_stack(coro: object) -> tuple[str, ...]:
    """``qualname (file:line)`` for each frame of the await chain, outermost first."""
    out: list[str] = []
    obj = coro
    for _ in range(64):  # a bound, in case of a pathological awaitable
        if obj is None:
            break
        frame = _frame_of(obj)
        if frame is not None:
            code = frame.f_code
            out.append(
                f"{code.co_qualname.rpartition('<locals>.')[2]} "
                f"({os.path.basename(code.co_filename)}:{frame.f_lineno})"
            )
        obj = _awaited_by(obj)
    return tuple(out)


class ControlledLoop(asyncio.BaseEventLoop):
    """An event loop that runs one chosen ready handle per step, on a virtual clock.

    ``chooser(step, lanes)`` is called before every step of the main phase
    with the labels of the ready lanes (index 0 = stock FIFO) and returns the
    index to run; ``None`` means FIFO (see :data:`Chooser` for
    ``decisions_only``). If the chooser raises (Hypothesis does,
    to abandon an example), the loop notes the exception in ``abandoned`` and
    finishes the run in FIFO order, so that every coroutine unwinds through
    its ``finally`` blocks normally; :func:`sessionguard.loop.run` re-raises it
    afterwards. Observers are called after every step with ``(step, label)``;
    one that raises an ``Exception`` flags a *violation* (kept in
    ``violation``) and is not called again in that run.
    """

    # BaseEventLoop internals this class relies on (present on 3.11 to 3.13).
    _ready: collections.deque[_Entry]
    _scheduled: list[_Timer]
    _stopping: bool
    _thread_id: int | None
    _clock_resolution: float
    _timer_cancelled_count: int
    _asyncgens: weakref.WeakSet[Any]
    _asyncgens_shutdown_called: bool
    _debug: bool
    _task_factory: Any

    def __init__(
        self,
        chooser: Chooser | None = None,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_virtual_time: float = DEFAULT_MAX_VIRTUAL_TIME,
        observer: Observer | None = None,
    ) -> None:
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if not max_virtual_time > 0:
            raise ValueError(f"max_virtual_time must be positive, got {max_virtual_time!r}")
        if chooser is not None and not callable(chooser):
            raise TypeError(f"chooser must be callable as chooser(step, lanes), got {chooser!r}")
        super().__init__()
        self._chooser = chooser
        self._decisions_only = bool(getattr(chooser, "decisions_only", False))
        self._ask_at: Container[int] = (getattr(chooser, "ask_at", None) or ()) if self._decisions_only else ()
        self._observers: list[Observer] = [] if observer is None else [observer]
        self.max_steps = max_steps
        self.max_virtual_time = float(max_virtual_time)
        self._now = 0.0
        self._seq = 0
        # Stock iterations, counted: a handle queued during iteration i runs
        # in the batch of iteration i + 1 or later; `_batch_left` counts the
        # handles of the current batch that have not run yet.
        self._iteration = 0
        self._batch_left = 0
        self._steps = 0
        self._recording = True  # main phase: chooser, schedule and observers are live
        self._choices: list[int] = []
        self._labels: list[str] = []
        self._task_index: dict[asyncio.Task[Any], int] = {}
        self._task_list: list[asyncio.Task[Any]] = []
        self._parents: dict[int, int | None] = {}  # task number -> number of the task that created it
        self._running: _Entry | None = None  # the handle being run by the current step
        self._coro_names: list[str] = []
        self._task_labels: dict[int, str] = {}
        self._timer_counts: dict[str, int] = {}
        self.due_timers_made = 0  # timers made with a deadline already reached (see call_at)
        self._owner_thread = threading.get_ident()
        self._pending_problem: RunProblem | None = None
        # Made by the first async generator: most runs have none, and the
        # dictionary is not cheap to make.
        self._agen_order: weakref.WeakKeyDictionary[Any, int] | None = None
        self.abandoned: BaseException | None = None
        self.violation: BaseException | None = None
        self.violation_step: int | None = None
        self.errors: list[LoopError] = []
        self.raise_abandoned = True  # run() turns this off and re-raises after shutdown
        self.set_exception_handler(self._collect_error)

    # ------------------------------------------------------------------ clock

    def time(self) -> float:
        """Virtual seconds since the loop was made; moves only when nothing is ready."""
        return self._now

    # ------------------------------------------------------- public run state

    @property
    def steps(self) -> int:
        """Steps run so far in the current phase (the main phase, until shutdown)."""
        return self._steps

    @property
    def schedule_steps(self) -> tuple[tuple[int, str], ...]:
        """The recorded ``(choice, label)`` of every main-phase step so far."""
        return tuple(zip(self._choices, self._labels, strict=True))

    @property
    def pending_problem(self) -> RunProblem | None:
        """Uncontrolled nondeterminism noticed but not yet raised by a step."""
        return self._pending_problem

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(step, label)`` after every following main-phase step."""
        if not callable(observer):
            raise TypeError(f"observer must be callable as observer(step, label), got {observer!r}")
        self._observers.append(observer)

    def task_label(self, task: asyncio.Task[Any]) -> str:
        """The stable label of a task of this loop (``"T<n>:<name>"``)."""
        return self._label_of_task(self._register(task))

    def tasks(self) -> list[asyncio.Task[Any]]:
        """Every task the loop has seen, in the order it first saw them."""
        return list(self._task_list)

    def task_by_label(self, label: str) -> asyncio.Task[Any] | None:
        """The task whose step a lane label names (``"T<n>:..."``); None for callbacks and timers."""
        head, sep, _ = label.partition(":")
        if not sep or not head.startswith("T") or not head[1:].isdigit():
            return None
        n = int(head[1:])
        return self._task_list[n] if n < len(self._task_list) else None

    def _callback_task(self) -> asyncio.Task[Any] | None:
        """In a plain callback (a task's done-callback): the task it was called for."""
        handle = self._running
        for arg in getattr(handle, "_args", None) or ():
            if isinstance(arg, asyncio.Task) and arg in self._task_index:
                return arg
        return None

    def callbacks_pending(self) -> set[asyncio.Task[Any]]:
        """Finished tasks whose done-callbacks are queued but have not run yet."""
        out: set[asyncio.Task[Any]] = set()
        for handle in self._ready:
            for arg in getattr(handle, "_args", None) or ():
                if isinstance(arg, asyncio.Task) and arg.done():
                    out.add(arg)
        return out

    def parent_of(self, task: asyncio.Task[Any]) -> asyncio.Task[Any] | None:
        """The task that was running when `task` was created (None: created outside any task)."""
        parent = self._parents.get(self._register(task))
        return None if parent is None else self._task_list[parent]

    def blocked_tasks(self) -> list[BlockedTask]:
        """The unfinished tasks, in creation order, with where each one waits."""
        out = []
        for n, task in enumerate(self._task_list):
            if task.done():
                continue
            waiter = getattr(task, "_fut_waiter", None)
            if isinstance(waiter, asyncio.Task) and waiter in self._task_index:
                awaiting = f"task {self.task_label(waiter)}"
            elif waiter is not None:
                awaiting = type(waiter).__name__
            else:
                awaiting = ""
            stack = _coroutine_stack(task.get_coro())
            out.append(BlockedTask(self._label_of_task(n), stack, awaiting))
        return out

    # ------------------------------------------------------------- scheduling

    def call_soon(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        # The hottest method of a run (every wake-up of every task comes
        # through here), so the helpers it needs are inlined.
        if self._closed:  # type: ignore[attr-defined]
            self._check_closed()  # type: ignore[attr-defined]
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_soon")  # type: ignore[attr-defined]
        # The task whose step this is (see _step_owner): our own tasks carry
        # their lane number in a slot, set when the loop first saw them.
        owner = getattr(callback, "__self__", None)
        lane = getattr(owner, "_sg_lane", None)
        if lane is None:
            owner = None if owner is None else _step_owner(callback)
            lane = _CALLBACK_LANE if owner is None else self._register(owner)
        elif (getattr(callback, "__name__", None) or type(callback).__name__) not in _STEP_CALLBACKS:
            lane = _CALLBACK_LANE  # another method of a task, e.g. call_soon(t.cancel)
        self._seq = seq = self._seq + 1
        # A task's label never changes once made; others are made when needed.
        handle = _ReadyHandle(
            callback,
            args,
            self,
            context,
            seq,
            lane,
            self._task_labels.get(lane) if lane >= 0 else None,
            self._iteration,
        )
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        # From the loop's own thread this is just call_soon (asyncio itself does
        # that when an async generator is finalized). From another thread the
        # moment of the call is up to the OS scheduler, not to our chooser.
        here = threading.get_ident()
        if here == (self._thread_id or self._owner_thread):
            return self.call_soon(callback, *args, context=context)
        name = threading.current_thread().name
        self._note_nondeterminism(
            f"call_soon_threadsafe({_callable_name(callback)}) from thread {name!r}"
        )
        dropped = asyncio.Handle(callback, args, self, context)
        dropped.cancel()
        return dropped

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = _Timer(when, callback, args, self, context)
        if when < self._now + self._clock_resolution:
            # Due already, yet it joins the queue only when the next stock
            # iteration begins: where the current batch ends starts to matter
            # (a stateful search counts on knowing whether that ever happens).
            self.due_timers_made += 1
        self._seq = timer.seq = self._seq + 1
        timer.lane = -2 - timer.seq
        creator = asyncio.current_task(self)
        who = "cb" if creator is None else f"T{self._register(creator)}"
        k = self._timer_counts.get(who, 0) + 1
        self._timer_counts[who] = k
        timer.label = f"timer:{who}#{k}({_callable_name(callback)})"
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, _T],
        *,
        name: object = None,
        context: Context | None = None,
        **kwargs: Any,
    ) -> asyncio.Task[_T]:
        self._check_closed()  # type: ignore[attr-defined]
        factory = self._task_factory
        task: asyncio.Task[_T]
        self._seq = seq = self._seq + 1
        if factory is None and not kwargs.get("eager_start"):
            # Registered up front, under the number _register would give it
            # (no other task can be made while the constructor runs): the
            # call_soon of its first step then finds its lane in the slot.
            n = len(self._task_list)
            coro_name = _callable_name(coro)
            if name is None or (
                isinstance(name, str) and name.startswith(_DEFAULT_NAME_STARTS) and _DEFAULT_TASK_NAME.fullmatch(name)
            ):
                name = f"T{n}:{coro_name}"  # a per-loop name (see _register)
            task = Task(coro, loop=self, name=name, context=context, sg_hash=seq, sg_lane=n, **kwargs)
            self._task_index[task] = n
            self._task_list.append(task)
            self._coro_names.append(coro_name)
        elif factory is None or factory is _EAGER_TASK_FACTORY:
            # Not registered up front: the first step runs in the constructor,
            # and may create tasks of its own first.
            kwargs.setdefault("eager_start", True)
            task = Task(coro, loop=self, name=name, context=context, sg_hash=seq, **kwargs)
        else:
            # A user's own factory: its tasks hash by address, and if the
            # program puts them in sets, replay will report the divergence.
            task = super().create_task(coro, name=name, context=context, **kwargs)
        # With an eager factory (3.12+) the task's first step has already run
        # inside the constructor, and the task may even be finished. Register
        # it now anyway, so that its per-loop number follows creation order.
        # (Our own non-eager tasks are registered already.)
        lane: int | None = getattr(task, "_sg_lane", None)
        n = self._register(task, coro) if lane is None else lane
        parent = asyncio.current_task(self) or self._callback_task()
        if parent is None or parent is task:
            self._parents.setdefault(n, None)
        else:
            parent_n = getattr(parent, "_sg_lane", None)
            self._parents.setdefault(n, self._register(parent) if parent_n is None else parent_n)
        return task

    def create_future(self) -> asyncio.Future[Any]:
        self._seq = seq = self._seq + 1
        return Future(loop=self, sg_hash=seq)

    def run_until_complete(self, future: Any) -> Any:
        """As stock, then re-raise a chooser's exception once the run has finished."""
        try:
            return super().run_until_complete(future)
        finally:
            exc = self.abandoned
            if exc is not None and self.raise_abandoned:
                self.abandoned = None
                raise exc

    # ------------------------------------------------------------- one step

    def _run_once(self) -> None:
        """One step (not one stock iteration): run one chosen ready handle.

        Stock asyncio finishes the batch in which stop() was called before
        run_forever() returns; so does this (more steps, while stopping), so
        that choice 0 stays faithful. This is the loop's innermost code: it
        runs once per step of every run, so it avoids helper calls on the
        common path (each one is a measurable share of a short run).
        """
        ready = self._ready
        while True:
            problem = self._pending_problem
            if problem is not None and self._recording:
                self._pending_problem = None
                raise problem
            while True:
                if self._batch_left <= 0 and not self._next_iteration():
                    return  # stopping, and nothing is ready
                if len(ready) == 1 and not ready[0]._cancelled:
                    heads: list[_Entry] = [ready[0]]  # one lane: the common case, no scan
                    break
                heads = self._lane_heads()
                if heads:
                    break
            step = self._steps
            if step >= self.max_steps:
                raise Hung(
                    "steps",
                    step,
                    self._now,
                    self.blocked_tasks(),
                    f"the step limit max_steps={self.max_steps} was reached",
                )
            if not self._recording:  # the teardown: FIFO, not recorded, not observed
                handle = heads[0]
                self._remove(handle)
                self._steps = step + 1
                handle._run()
            else:
                chooser = self._chooser
                if (
                    chooser is None
                    or self.abandoned is not None
                    or (self._decisions_only and len(heads) == 1 and step not in self._ask_at)
                ):
                    choice = 0
                    handle = heads[0]
                    label = handle.label or self._label(handle)
                else:
                    labels = [h.label or self._label(h) for h in heads]
                    choice = self._choose(step, labels)
                    handle = heads[choice]
                    label = labels[choice]
                if ready[0] is handle:  # _remove, inlined for the usual case
                    ready.popleft()
                    if handle.batch < self._iteration:
                        self._batch_left -= 1
                else:
                    self._remove(handle)
                self._steps = step + 1
                self._choices.append(choice)
                self._labels.append(label)
                self._running = handle
                try:
                    handle._run()
                finally:
                    self._running = None
                if self._observers and self.abandoned is None and self.violation is None:
                    self._observe(step, label)
            if not (self._stopping and self._batch_left > 0):
                return

    def _choose(self, step: int, labels: list[str]) -> int:
        """Ask the chooser for one of the ready lanes; 0 (FIFO) if it fails or gives up."""
        chooser = self._chooser
        if chooser is None or self.abandoned is not None:
            return 0
        try:
            choice = chooser(step, labels)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # any reason to abandon the run
            # Do not let the exception out now: coroutines would be closed in
            # the middle of their finally blocks ("coroutine ignored
            # GeneratorExit"). Finish the run in FIFO order; run() re-raises.
            self.abandoned = exc
            return 0
        if type(choice) is int and 0 <= choice < len(labels):
            return choice
        if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(labels):
            self.abandoned = ValueError(
                f"chooser returned {choice!r} at step {step}; expected an index in "
                f"range({len(labels)}) into the ready lanes {labels!r}"
            )
            return 0
        return choice

    def _observe(self, step: int, label: str) -> None:
        for observer in self._observers:
            try:
                observer(step, label)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                self.violation = exc
                self.violation_step = step
                return
            except BaseException as exc:  # e.g. a test framework stopping the run
                self.abandoned = exc
                return

    def _next_iteration(self) -> bool:
        """Start a stock-style iteration: due timers join the queue, a new batch begins.

        Returns False when nothing is ready and the loop is stopping. Raises
        Deadlock or Hung when nothing could ever become ready in time.
        """
        ready = self._ready
        for h in ready:
            if h._cancelled:
                self._purge_cancelled()
                break
        scheduled = self._scheduled
        if scheduled:  # usually one timer far ahead (a sleep), neither due nor cancelled
            head = scheduled[0]
            if head._cancelled or head._when < self._now + self._clock_resolution or self._timer_cancelled_count:  # type: ignore[attr-defined]
                self._drop_cancelled_timers()
                self._promote_due_timers()
        if not ready:
            if self._stopping:
                return False
            if not self._scheduled:
                raise Deadlock(self._steps, self._now, self.blocked_tasks())
            when = self._scheduled[0]._when  # type: ignore[attr-defined]
            if when > self.max_virtual_time:
                raise Hung(
                    "virtual_time",
                    self._steps,
                    self._now,
                    self.blocked_tasks(),
                    f"nothing is ready and the next timer is at virtual time {when:g}, beyond "
                    f"max_virtual_time={self.max_virtual_time:g}",
                )
            # Nothing can happen before the next timer: jump there. This is
            # where a sleep(3600) or a wait_for timeout costs no wall time.
            self._now = max(self._now, when)
            self._promote_due_timers()
        # Everything ready now is this iteration's batch (promoted timers
        # included); what its handles queue waits for the next iteration.
        self._iteration += 1
        self._batch_left = len(ready)
        return True

    def _promote_due_timers(self) -> None:
        scheduled = self._scheduled
        end = self._now + self._clock_resolution
        if not scheduled or scheduled[0]._when >= end:  # type: ignore[attr-defined]
            return
        due: list[_Timer] = []
        while scheduled and scheduled[0]._when < end:  # type: ignore[attr-defined]
            timer = heapq.heappop(scheduled)
            timer._scheduled = False  # type: ignore[attr-defined]
            if not timer._cancelled:
                due.append(timer)
        # A heap does not keep equal deadlines in creation order, and on a
        # virtual clock equal deadlines are common (two sleep(1) from the same
        # instant). On a real clock the earlier-made timer has the earlier
        # deadline, so order ties by creation to stay faithful to stock asyncio.
        due.sort(key=lambda t: (t._when, t.seq))  # type: ignore[attr-defined]
        for timer in due:
            timer.batch = self._iteration
        self._ready.extend(due)

    def _drop_cancelled_timers(self) -> None:
        scheduled = self._scheduled
        if len(scheduled) > 100 and self._timer_cancelled_count * 2 > len(scheduled):
            live = []
            for t in scheduled:
                if t._cancelled:
                    t._scheduled = False  # type: ignore[attr-defined]
                else:
                    live.append(t)
            heapq.heapify(live)
            self._scheduled = live
            self._timer_cancelled_count = 0
            return
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            timer = heapq.heappop(scheduled)
            timer._scheduled = False  # type: ignore[attr-defined]

    def _lane_heads(self) -> list[_Entry]:
        """The oldest ready handle of each lane, oldest first (index 0 = stock FIFO)."""
        heads: dict[int, _Entry] = {}  # insertion-ordered: queue order of the heads
        cancelled = False
        for h in self._ready:
            if h._cancelled:
                cancelled = True
            elif h.lane not in heads:
                heads[h.lane] = h
        if cancelled:
            self._purge_cancelled()
        return list(heads.values())

    def _purge_cancelled(self) -> None:
        ready = self._ready
        for h in ready:
            if h._cancelled:
                break
        else:
            return
        keep = []
        iteration = self._iteration
        for h in ready:
            if not h._cancelled:
                keep.append(h)
            elif h.batch < iteration:
                self._batch_left -= 1  # a cancelled handle of the batch never runs
        ready.clear()
        ready.extend(keep)

    def _remove(self, handle: _Entry) -> None:
        ready = self._ready
        if ready[0] is handle:
            ready.popleft()
        else:
            # By identity: a TimerHandle compares equal to another with the
            # same deadline and callback, so deque.remove could take the wrong one.
            for i, h in enumerate(ready):
                if h is handle:
                    del ready[i]
                    break
        if handle.batch < self._iteration:
            self._batch_left -= 1

    # ------------------------------------------------------------- labelling

    def _register(self, task: asyncio.Task[Any], coro: object = None) -> int:
        n: int | None = getattr(task, "_sg_lane", None)
        if n is not None:
            return n
        n = self._task_index.get(task)
        if n is None:
            n = len(self._task_list)
            self._task_index[task] = n
            if isinstance(task, Task):
                task._sg_lane = n
            self._task_list.append(task)
            # Never ask a finished task for its coroutine: on 3.12.0/3.12.1,
            # get_coro() of a task that completed eagerly crashes the
            # interpreter. create_task passes the coroutine in instead.
            if coro is None and not task.done():
                coro = task.get_coro()
            self._coro_names.append("task" if coro is None else _callable_name(coro))
            if _DEFAULT_TASK_NAME.fullmatch(task.get_name()):
                # asyncio's default names count tasks process-wide; a per-loop
                # name keeps user logs (and labels) identical between runs.
                task.set_name(f"T{n}:{self._coro_names[n]}")
        return n

    def _label_of_task(self, n: int) -> str:
        label = self._task_labels.get(n)
        if label is None:
            # Computed at first use, not at registration: with an eager task
            # factory on 3.12 the user's name is set only after the first step.
            name = self._task_list[n].get_name()
            prefix = f"T{n}:"
            if name.startswith(_DEFAULT_NAME_STARTS) and _DEFAULT_TASK_NAME.fullmatch(name):
                name = self._coro_names[n]
            label = name if name.startswith(prefix) else prefix + name
            self._task_labels[n] = label
        return label

    def _label(self, h: _Entry) -> str:
        label = h.label
        if label is None:
            lane = h.lane
            if lane >= 0:
                label = self._task_labels.get(lane) or self._label_of_task(lane)
            else:
                callback = h._callback  # type: ignore[union-attr]
                name = getattr(callback, "__qualname__", None)
                label = _CALLBACK_LABELS.get(name) if isinstance(name, str) else None
                if label is None:
                    label = f"cb:{_callable_name(callback)}"
                    if isinstance(name, str):
                        _CALLBACK_LABELS[name] = label
            h.label = label
        return label

    # -------------------------------------------- nondeterminism and errors

    def _note_nondeterminism(self, what: str) -> None:
        if self._pending_problem is None:
            self._pending_problem = UncontrolledNondeterminism(self._steps, what)

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[_Ts]], _T], *args: *_Ts
    ) -> asyncio.Future[_T]:
        """Refused: a thread's timing is outside the loop's control (see the verdict)."""
        self._note_nondeterminism(f"run_in_executor({_callable_name(func)})")
        assert self._pending_problem is not None
        # Raise in the caller too, so that it cannot go on as if the work had
        # been submitted; the run stops at the next step even if it is caught.
        raise self._pending_problem

    def _collect_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        who = context.get("task") or context.get("future")
        label = (
            self._label_of_task(self._task_index[who])
            if isinstance(who, asyncio.Task) and who in self._task_index
            else None
        )
        exc = context.get("exception")
        self.errors.append(
            LoopError(
                str(context.get("message", "")),
                exc if isinstance(exc, BaseException) else None,
                label,
            )
        )

    # ----------------------------------------------------------- shutdown

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._agen_order is None:
            self._agen_order = weakref.WeakKeyDictionary()
        self._seq += 1
        self._agen_order[agen] = self._seq
        super()._asyncgen_firstiter_hook(agen)  # type: ignore[misc]

    async def shutdown_asyncgens(self) -> None:
        """Close live async generators, in the order they started (not set order)."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        order: Mapping[Any, int] = self._agen_order or {}
        closing = sorted(self._asyncgens, key=lambda ag: order.get(ag, 1 << 62))
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    def finish(self) -> RunProblem | None:
        """Wind down after the main phase like ``asyncio.run``, but deterministically and fully.

        Cancels every unfinished task in creation order (``asyncio.run`` uses
        ``all_tasks()``, a set) and runs them to their end in FIFO order, then
        closes async generators in the order they started. Unlike
        ``asyncio.run`` it repeats the cancellation while tasks remain: a
        ``finally`` block that starts a new task (a drain of pending work, in
        a gateway) would otherwise leave it pending when the loop closes, and
        thousands of runs would flood stderr with "coroutine ignored
        GeneratorExit". A task that survives every round (it swallows its
        cancellation and waits forever) has its coroutine closed here, where
        the error can be caught and reported in ``errors``.

        These steps are not recorded, chosen or observed: they are asyncio's
        teardown, not the system under test. They share one budget of
        ``max_steps``. Returns the problem that cut the teardown short, if any.
        """
        self._recording = False
        self._steps = 0
        self._pending_problem = None
        # A run cut short by a limit right after the main task finished leaves
        # the callback that ends its run_until_complete queued. Run during the
        # teardown it would stop the loop before the teardown's own future is
        # done ("Event loop stopped before Future completed"): drop it.
        for handle in self._ready:
            if getattr(handle, "_callback", None) is _RUN_UNTIL_COMPLETE_CB:
                handle.cancel()
        self._report_unretrieved()
        cancelled: dict[asyncio.Task[Any], None] = {}
        problem = self._cancel_until_quiet(cancelled)
        if problem is None and len(self._asyncgens):
            try:
                self.run_until_complete(self.shutdown_asyncgens())
            except RunProblem as exc:
                problem = exc
            else:
                problem = self._cancel_until_quiet(cancelled)
        for task in self._task_list:
            if not task.done():
                self._close_stuck(task)
        for task in cancelled:
            if task.done() and not task.cancelled() and task.exception() is not None:
                self.call_exception_handler(
                    {
                        "message": "unhandled exception during shutdown",
                        "exception": task.exception(),
                        "task": task,
                    }
                )
        self._report_unretrieved()
        return problem

    def _cancel_until_quiet(self, cancelled: dict[asyncio.Task[Any], None]) -> RunProblem | None:
        for _ in range(_SHUTDOWN_ROUNDS):
            pending = [t for t in self._task_list if not t.done()]
            if not pending:
                return None
            for task in pending:
                task.cancel()
                cancelled[task] = None
            try:
                self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except RunProblem as exc:
                return exc
        return None

    def _close_stuck(self, task: asyncio.Task[Any]) -> None:
        coro = task.get_coro()  # safe: the task has not finished
        error: BaseException | None = None
        if coro is not None and hasattr(coro, "close"):
            try:
                coro.close()
            except RuntimeError as exc:  # "coroutine ignored GeneratorExit"
                error = exc
        self.call_exception_handler(
            {
                "message": "task still running after shutdown cancelled it; its coroutine was closed",
                "exception": error,
                "task": task,
            }
        )

    def _report_unretrieved(self) -> None:
        # asyncio reports these from Task.__del__, i.e. whenever the garbage
        # collector gets to it, possibly during a later run. Report them now.
        for task in self._task_list:
            if task.done() and getattr(task, "_log_traceback", False):
                task._log_traceback = False  # type: ignore[attr-defined]
                self.call_exception_handler(
                    {
                        "message": "Task exception was never retrieved",
                        "exception": task.exception(),
                        "task": task,
                    }
                )


def _refuse(name: str) -> Callable[..., NoReturn]:
    def refused(self: ControlledLoop, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsupportedOperation(
            f"ControlledLoop does no I/O: loop.{name}() is not available. A controlled run "
            f"must be closed (no sockets, pipes, subprocesses or signals); replace the "
            f"I/O with an in-memory fake whose waits are asyncio futures."
        )

    refused.__name__ = refused.__qualname__ = name
    return refused


_IO_METHODS = (
    "add_reader remove_reader add_writer remove_writer add_signal_handler "
    "remove_signal_handler getaddrinfo getnameinfo create_connection create_server "
    "create_datagram_endpoint create_unix_connection create_unix_server "
    "connect_accepted_socket connect_read_pipe connect_write_pipe subprocess_exec "
    "subprocess_shell sock_recv sock_recv_into sock_recvfrom sock_recvfrom_into "
    "sock_sendall sock_sendto sock_connect sock_accept sock_sendfile sendfile start_tls"
).split()
for _name in _IO_METHODS:
    setattr(ControlledLoop, _name, _refuse(_name))


def add_observer(observer: Observer) -> None:
    """Register ``observer(step, label)`` on the running controlled loop.

    For scenario code that builds its own checker: call it from inside the
    main coroutine. Outside a :class:`ControlledLoop` this is an error, since
    the observer would silently never be called.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, ControlledLoop):
        raise RuntimeError(
            "add_observer() needs a running ControlledLoop (sessionguard.loop.run); "
            f"the running loop is a {type(loop).__name__}"
        )
    loop.add_observer(observer)
