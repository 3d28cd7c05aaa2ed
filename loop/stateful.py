"""Stateful search: run every reachable program state once, not every path to it.

The exhaustive DFS (``dfs.py``) is stateless: it re-runs the scenario for
each schedule, and two schedules that reach the same program state explore
everything after it twice. A gateway scenario has few states and very many
paths to them (each order of two independent deliveries is a path; both end
in the same dictionaries and the same suspended tasks), so most of a
stateless search repeats itself. :class:`VisitedStates` plugs into
:func:`explore_dfs` and ends a run as soon as it reaches a state that an
earlier run already reached (with no more deviations spent, under a bound):
everything that can happen from there is explored from the first visit.
With every lane an alternative at every new state, the search still visits
every reachable state and runs every step out of it: with no bound it is
exhaustive in the strict sense.

The number of steps taken is not part of the state: two schedules often
reach the same heap in a different number of steps (a wake-up that one of
them spends as a step of its own, a cancellation that lands before or after
one), and counting steps would keep them apart (twice as many states on
``stop-midrun``). Two consequences, both handled. A run can come back to a
state it was in (a loop that never settles): it then goes on, without
branching again, until the step limit ends it as the stateless search's run
would. And a state first reached late in a run has less of the step limit
left than when it is reached early, so once any run has reached the step
limit the search no longer claims to be exhaustive (``complete`` is False,
and the DFS reports the search as not exhausted); runs of the gateway's
scenarios are far shorter than the limit.

What a state is
---------------
:func:`fingerprint` writes the whole state of a run between two steps as one
hashable value, built by walking every object reachable from:

* the loop: virtual time, the ready handles (their lane, callback and
  arguments, and, for a program that makes timers already due, whether they
  belong to the loop's current batch: see below) in queue order, or, with no
  deviation bound, lane by lane in a canonical order (``lane_rank``: where
  two lanes stand in the queue only decides which is the FIFO choice, and an
  unbounded search tries them all),
  the live timers in firing order, each task's name, and the errors
  collected so far (not the labels of lanes, which are made from the rest
  and from counts of what was made before: see ``_lane_of``);
* every task of the run: its state, result or exception, done callbacks,
  the future it waits on, a pending cancellation, ``cancelling()``, and its
  coroutine: the code, the position in it (``f_lasti``) and every slot of the
  suspended frame, the value stack included, down the whole await chain;
* the observers (the refinement check), through ``__sessionguard_state__``
  when they keep caches or reports that cannot change a verdict.

The walk numbers each mutable object at its first visit and writes a later
visit as a reference to that number, so two heaps that are the same graph
(same values, same sharing) give the same fingerprint no matter where their
objects live in memory or in which order they were made. Values that compare
by content all the way down (numbers, strings, tuples and frozensets of them,
named tuples such as the model's states) enter as they are; lists, dicts,
sets and deques by their contents in iteration order (the order the program
itself would see); an object by its class and its attributes. Classes,
modules, code objects and functions without a closure are the same objects in
every run and enter by identity.

The value stack of a suspended coroutine is not visible from Python (a
half-built argument list, a ``for`` loop's iterator, the exception a
``finally`` is running for all live there), so :func:`frame_slots` reads it
from the interpreter frame with ``ctypes``: the frame's ``stacktop`` and its
``localsplus`` array lie at the same offsets on CPython 3.11, 3.12 and 3.13.
:func:`check_support` confirms the layout on a probe coroutine before any
search starts, and refuses (``UnsupportedState``) on an interpreter where it
does not hold, rather than merge states it cannot see.

An object the walk cannot look into (a C object with no ``__dict__`` and no
slots that the walk does not know) makes the state *opaque*: it gets a
fingerprint of its own that equals no other, so it is never merged. That is
always safe; ``VisitedStates.opaque`` counts such states and names their
types, so a user can see when caching does not work for their program.

Why a merge is safe, and what it assumes
----------------------------------------
Runs are deterministic (the DFS checks that on every replayed prefix), so the
steps that can follow a state depend only on that state. The fingerprint
holds everything a step can read, under four assumptions, stated here so
they can be checked for code other than this project's adapters: (1) module
globals do not change during a run (the walk does not enter modules); (2)
the program does not depend on the order of creation of tasks and futures by
independent steps: their hash follows creation and decides where a *later*
insertion lands in a set (the same assumption as the partial-order
reduction's, ``reduction.py``; the order a set has *now* is in the
fingerprint); (3) an object's ``__sessionguard_state__``, where defined,
returns everything about it that can change what the program or a verdict
does later; (4) nothing reads how often a task that has finished was asked
to cancel (``cancelling()``): asyncio itself reads it only in the task's own
steps (``uncancel()`` in timeouts and task groups), and a finished task has
none left.

Which ready handles belong to the loop's current iteration (the batch that
stock asyncio runs before it looks at its timers again) is left out at
first: with time standing still while anything is ready, where a batch ends
decides nothing but when a timer that is due joins the queue, and the only
such timer is one made already due (``call_later(0)``). Schedules reaching
the same heap with different batches are common (a fifth fewer states on
``stop-midrun``). The loop counts the timers made already due; once a run
has made one, the search starts over with the batches in the state
(``restarts``), so a program that makes them is searched exactly, and one
that does not is searched once.

Verdicts: a run's verdict is judged from its end state and its observers'
state (the properties found so far are in the fingerprint), so a run cut at
a visited state could only have ended as one of the runs through the first
visit did. A step flagged by an observer is never cut: the run goes on to be
judged.

State caching is not combined with partial-order reduction here: the two
together need extra care to stay sound (a state first reached with a sleep
set may not have had all of its steps explored). ``VisitedStates`` expands
every lane.
"""

from __future__ import annotations

import _ctypes
import asyncio
import contextvars
import ctypes
import decimal
import functools
import hashlib
import itertools
import re
import sys
import types
import weakref
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from enum import Enum
from typing import Any

from .controlled import _CALLBACK_LANE, ControlledLoop, lane_key
from .dfs import Node, RedundantRun
from .errors import Hung
from .runner import RunResult

__all__ = ["UnsupportedState", "VisitedStates", "check_support", "fingerprint", "frame_slots"]

_PTR = ctypes.sizeof(ctypes.c_void_p)
# Offsets, in pointers, shared by CPython 3.11 to 3.13: PyFrameObject.f_frame
# comes after the object header (2 words) and f_back; in _PyInterpreterFrame,
# eight pointer-sized fields come before ``int stacktop``, and ``localsplus``
# starts one word later (stacktop, a flag or two and padding share that word).
_F_FRAME = 3
_STACKTOP = 8
_LOCALSPLUS = 9

def _cast_object_at(address: int) -> object:
    return ctypes.cast(address, ctypes.py_object).value


#: The object at an address, with a new reference. ``_ctypes.PyObj_FromPtr``
#: does what ``ctypes.cast(address, py_object).value`` does, three to eight
#: times faster (it is on every CPython the search supports; the cast is the
#: fallback).
_object_at: Callable[[int], object] = getattr(_ctypes, "PyObj_FromPtr", _cast_object_at)

#: A frame slot that holds nothing (a local not yet assigned).
_EMPTY = ("<empty slot>",)


class UnsupportedState(RuntimeError):
    """This interpreter's frames cannot be read, so states cannot be compared."""


def frame_slots(frame: types.FrameType) -> list[object]:
    """Every local, cell and value-stack entry of a *suspended* frame, in slot order.

    Only for a frame that is not running (a suspended coroutine or generator,
    or one not yet started): the stack top is saved in the frame only then.
    """
    base = ctypes.c_void_p.from_address(id(frame) + _F_FRAME * _PTR).value
    if not base:
        return []
    top = ctypes.c_int.from_address(base + _STACKTOP * _PTR).value
    if top <= 0:
        return []
    pointers = (ctypes.c_void_p * top).from_address(base + _LOCALSPLUS * _PTR)
    return [_EMPTY if not pointer else _object_at(pointer) for pointer in pointers]


class _Suspend:
    def __await__(self) -> Any:
        yield None


_PROBE_A = ("<probe a>",)
_PROBE_B = ("<probe b>",)


async def _probe(arg: object) -> object:
    held = [_PROBE_A]
    # `arg`, `_PROBE_B` and `held` sit on the value stack while this awaits.
    return (arg, _PROBE_B, held, await _Suspend())


def _check_c_readers() -> None:
    """The C objects read by layout must hold what the walk expects, or be absent."""
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        waiter = fut.__await__()
        ok = type(waiter).__name__ != "FutureIter" or _c_field(waiter, 2) is fut
        task = loop.create_task(_probe("step"))
        step = loop._ready[-1]._callback  # type: ignore[attr-defined]
        if type(step).__name__ == "TaskStepMethWrapper":
            ok = ok and _c_field(step, 2) is task and _c_field(step, 3) is None
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()
    if not ok:
        raise UnsupportedState(
            f"asyncio's C objects on CPython {sys.version.split()[0]} are not laid out as stateful "
            f"search expects: use --reduction none or dpor"
        )


@functools.cache
def check_support() -> None:
    """Raise :class:`UnsupportedState` unless :func:`frame_slots` reads this interpreter right."""
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 13):
        raise UnsupportedState(
            f"stateful search reads suspended frames of CPython 3.11 to 3.13; this is "
            f"{sys.implementation.name} {sys.version.split()[0]}: use --reduction none or dpor"
        )
    coro = _probe("probe")
    try:
        coro.send(None)
        frame: types.FrameType | None = getattr(coro, "cr_frame", None)
        slots = frame_slots(frame) if frame is not None else []
    finally:
        coro.close()
    _check_c_readers()
    found = [any(s is x for s in slots) for x in ("probe", _PROBE_B)]
    if not all(found) or not any(isinstance(s, list) and s and s[0] is _PROBE_A for s in slots):
        raise UnsupportedState(
            f"the frame layout of CPython {sys.version.split()[0]} is not the one stateful search "
            f"knows, so it cannot see a suspended coroutine's value stack: use --reduction none or dpor"
        )


# --- the walk -------------------------------------------------------------------------

_ATOMS = frozenset({type(None), int, str, bytes, type(Ellipsis)})
#: Objects that are the same in every run: they enter the fingerprint by identity.
_SHARED_TYPES = (type, types.ModuleType, types.CodeType, contextvars.ContextVar, Enum)
_opaque_ids = itertools.count()


#: Tuples and frozensets found to be values by `_is_value`, by id, with the
#: object itself (kept alive, so that its id is not reused while the entry lives).
#: Sound because neither can change its members; the model's states, which
#: the refinement check keeps and reuses, are judged once.
_VALUE_MEMO: dict[int, tuple[object, bool]] = {}  # (the object, True)
_VALUE_MEMO_SIZE = 100_000


def _is_value(obj: object) -> bool:
    """Does `obj` compare by content all the way down (and hash)?"""
    t = type(obj)
    if t in _ATOMS or t is bool or t is float:
        return True
    if isinstance(obj, (tuple, frozenset)):
        hit = _VALUE_MEMO.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if not all(_is_value(x) for x in obj):
            return False  # not kept: it holds objects of the run, which must not outlive it
        if len(_VALUE_MEMO) >= _VALUE_MEMO_SIZE:
            _VALUE_MEMO.clear()
        _VALUE_MEMO[id(obj)] = (obj, True)
        return True
    return isinstance(obj, _SHARED_TYPES) or _is_shared_builtin(obj)


_CANONICAL: dict[int, tuple[object, str]] = {}


def _canonical(obj: object) -> str:
    """The text of a value (see `_is_value`) that equal values share, whatever their history.

    `repr` would do but for frozensets, whose iteration order depends on the
    order of insertion when members collide: their members are sorted by text.
    Memoised like `_VALUE_MEMO` (the model's states recur in every state).
    """
    if type(obj) in _ATOMS:
        return repr(obj)
    hit = _CANONICAL.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    if isinstance(obj, frozenset):
        text = "frozenset{" + ",".join(sorted(_canonical(x) for x in obj)) + "}"
    elif isinstance(obj, tuple):
        text = type(obj).__qualname__ + "(" + ",".join(_canonical(x) for x in obj) + ")"
    elif type(obj) is bool or type(obj) is float:
        text = f"{type(obj).__name__}:{obj!r}"
    else:  # a class, module, code object, enum member or builtin: alive for the whole process
        text = repr(obj)
    if len(_CANONICAL) >= _VALUE_MEMO_SIZE:
        _CANONICAL.clear()
    _CANONICAL[id(obj)] = (obj, text)
    return text


def _is_shared_builtin(obj: object) -> bool:
    """A function written in C and not bound to an object of the run (`len`, `time.monotonic`)."""
    if not isinstance(obj, types.BuiltinFunctionType):
        return False
    owner = obj.__self__
    return owner is None or isinstance(owner, types.ModuleType)


class _Walk:
    """One fingerprint: numbers mutable objects at first visit, writes later visits as refs."""

    def __init__(self, loop: ControlledLoop) -> None:
        self.loop = loop
        self.seen: dict[int, int] = {}
        self.alive: list[object] = []  # keeps every visited object alive, so ids stay unique
        self.opaque: list[str] = []
        self.sets: list[set[Any] | frozenset[Any]] = []

    def deferred_sets(self) -> tuple[tuple[str, ...], ...]:
        """The contents of every set met by the walk, each sorted by its text (walking them may meet more)."""
        out: list[tuple[str, ...]] = []
        while len(out) < len(self.sets):
            members = self.sets[len(out)]
            out.append(tuple(sorted(repr(self.value(x)) for x in members)))
        return tuple(out)

    def value(self, obj: object) -> Hashable:
        t = type(obj)
        kind = _KINDS.get(t)
        if kind is None:
            kind = _KINDS[t] = _classify(t)
        if kind == "atom":
            return obj  # type: ignore[return-value]
        if kind == "tagged":
            return (t.__name__, obj)  # 1, 1.0 and True are equal as keys; not as state
        if kind == "shared" or (kind == "builtin" and _is_shared_builtin(obj)):
            return obj  # type: ignore[return-value]
        if kind == "tuple" and _is_value(obj):
            return ("value", _canonical(obj))
        n = self.seen.get(id(obj))
        if n is not None:
            return ("@", n)
        self.seen[id(obj)] = len(self.seen)
        self.alive.append(obj)
        if obj is self.loop:
            return ("loop",)
        return _WRITERS[kind](self, obj, t)

    def values(self, items: Iterable[object]) -> tuple[Hashable, ...]:
        return tuple([self.value(x) for x in items])

    # One method per kind of object (see `_classify`), each writing what the object holds.

    def _tuple(self, obj: Any, t: type) -> Hashable:
        if isinstance(obj, frozenset):
            return self._set(obj, t)
        return (t, self.values(obj))

    _sequence = _tuple

    def _dict(self, obj: dict[Any, Any], t: type) -> Hashable:
        return (t, tuple([(self.value(k), self.value(v)) for k, v in obj.items()]))

    def _set(self, obj: Any, t: type) -> Hashable:
        # A set's order follows its members' hashes: memory addresses for most
        # objects, creation order for the loop's tasks and futures. Neither is
        # part of the state (assumption 2), so a set enters as an unordered
        # collection, and after everything else: its members are numbered at
        # their places outside the set wherever they have one.
        self.sets.append(obj)
        return (t, "set", len(self.sets) - 1)

    def _function(self, obj: types.FunctionType, t: type) -> Hashable:
        # By its code, not by identity: a nested function is made anew in every run.
        return (
            "fn",
            obj.__code__,
            self.values(_cell(c) for c in obj.__closure__ or ()),
            self.value(obj.__defaults__),
            self.value(obj.__kwdefaults__),
        )

    def _method(self, obj: types.MethodType, t: type) -> Hashable:
        return ("method", self.value(obj.__func__), self.value(obj.__self__))

    def _builtin(self, obj: types.BuiltinMethodType, t: type) -> Hashable:
        return ("builtin-method", obj.__name__, self.value(obj.__self__))  # bound to an object of the run

    def _cell(self, obj: types.CellType, t: type) -> Hashable:
        return ("cell", self.value(_cell(obj)))

    def _partial(self, obj: functools.partial[Any], t: type) -> Hashable:
        return ("partial", self.value(obj.func), self.value(obj.args), self.value(obj.keywords))

    def _context(self, obj: contextvars.Context, t: type) -> Hashable:
        return ("context", tuple([(var, self.value(v)) for var, v in obj.items()]))

    def _decimal(self, obj: decimal.Context, t: type) -> Hashable:
        return (t, repr(obj))  # in every task's context once `decimal` is used; its repr lists every setting

    def _exception(self, obj: BaseException, t: type) -> Hashable:
        # The traceback only tells where it was raised; it cannot change what runs.
        return (
            t,
            self.value(obj.args),
            self.value(getattr(obj, "__dict__", None)),
            self.value(obj.__cause__),
            self.value(obj.__context__),
            obj.__suppress_context__,
        )

    def _weakref(self, obj: weakref.ref[Any], t: type) -> Hashable:
        return ("weakref", self.value(obj()))

    def _future_iter(self, obj: object, t: type) -> Hashable:
        # `await fut` on asyncio's C future: the iterator holds the future and nothing else.
        return ("future-iter", self.value(_c_field(obj, 2)))

    def _task_step(self, obj: object, t: type) -> Hashable:
        # A C task's scheduled step: the task, and what to throw into it (a cancellation).
        return ("task-step", self.value(_c_field(obj, 2)), self.value(_c_field(obj, 3)))

    def _iterator(self, obj: Any, t: type) -> Hashable:
        # A `for` loop's iterator over a list, tuple, range, dict: its sequence and position.
        return ("iterator", t, self.value(obj.__reduce__()))

    def _declared(self, obj: Any, t: type) -> Hashable:
        return (t, self.value(obj.__sessionguard_state__()))

    def _object(self, obj: object, t: type) -> Hashable:
        fields = _fields(obj)
        if fields is None:
            self.opaque.append(f"{t.__module__}.{t.__qualname__}")
            return ("opaque", next(_opaque_ids))
        return (t, tuple([(name, self.value(v)) for name, v in fields]))

    def _future(self, fut: asyncio.Future[Any], t: type) -> Hashable:
        state = fut._state  # type: ignore[attr-defined]
        parts: list[Hashable] = [
            type(fut),
            state,
            self.value(fut._result),  # type: ignore[attr-defined]
            self.value(fut._exception),  # type: ignore[attr-defined]
            self.values(fut._callbacks or ()),  # type: ignore[attr-defined]
            self.value(fut._cancel_message),  # type: ignore[attr-defined]
            # An exception nobody retrieved is reported when the run ends.
            getattr(fut, "_log_traceback", False),
        ]
        if isinstance(fut, asyncio.Task):
            done = state != "PENDING"
            parts += [
                _NUMBERED_NAME.sub("T:", fut.get_name(), count=1),  # the loop's number for it is history
                self.value(fut._coro),  # type: ignore[attr-defined]
                self.value(fut._fut_waiter),  # type: ignore[attr-defined]
                # How often a finished task was asked to cancel is history (assumption 4).
                None if done else fut._must_cancel,  # type: ignore[attr-defined]
                None if done else fut.cancelling(),
                self.value(fut.get_context()) if hasattr(fut, "get_context") else None,
            ]
        return tuple(parts)

    def _coroutine(self, coro: Any, t: type) -> Hashable:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None) or getattr(coro, "ag_code", None)
        if frame is None:
            return ("finished", code)
        running = getattr(coro, "cr_running", False) or getattr(coro, "gi_running", False)
        if running:  # never between two steps; a running frame's stack top is not saved
            self.opaque.append("running coroutine")
            return ("opaque", next(_opaque_ids))
        return ("frame", code, frame.f_lasti, self.values(frame_slots(frame)))

    def _handle(self, handle: asyncio.Handle, t: type) -> Hashable:
        callback = handle._callback  # type: ignore[attr-defined]
        args = handle._args  # type: ignore[attr-defined]
        return (
            type(handle),
            handle.cancelled(),
            self.value(callback),
            self.values(args or ()),
            handle.when() if isinstance(handle, asyncio.TimerHandle) else None,
            _lane_of(self, handle),
            self.value(handle._context),  # type: ignore[attr-defined]
        )


#: The kind of every type met so far: which `_Walk` method writes its objects.
_KINDS: dict[type, str] = {}
#: Each kind's method, looked up once (the walk calls one for every object it meets).
_WRITERS: dict[str, Callable[[_Walk, Any, type], Hashable]] = {
    name[1:]: method for name, method in vars(_Walk).items() if name.startswith("_") and not name.startswith("__")
}


def _classify(t: type) -> str:
    """Which method of `_Walk` writes objects of type `t` (`value` itself handles the first five)."""
    if t in _ATOMS:
        return "atom"
    if t is bool or t is float:
        return "tagged"
    if issubclass(t, _SHARED_TYPES):
        return "shared"
    if issubclass(t, types.BuiltinFunctionType):
        return "builtin"  # shared unless bound to an object of the run
    if issubclass(t, (tuple, frozenset)):
        return "tuple"  # a value if everything in it is one
    by_base: tuple[tuple[type | tuple[type, ...], str], ...] = (
        ((list, deque), "sequence"),
        (dict, "dict"),
        (set, "set"),
        (asyncio.Future, "future"),
        ((types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType), "coroutine"),
        (types.FunctionType, "function"),
        (types.MethodType, "method"),
        (types.CellType, "cell"),
        (functools.partial, "partial"),
        (asyncio.Handle, "handle"),
        (contextvars.Context, "context"),
        (decimal.Context, "decimal"),
        (BaseException, "exception"),
        (weakref.ref, "weakref"),
    )
    for base, kind in by_base:
        if issubclass(t, base):
            return kind
    if t.__name__ == "FutureIter" and t.__module__ == "_asyncio":
        return "future_iter"
    if t.__name__ == "TaskStepMethWrapper":
        return "task_step"
    if t.__module__ == "builtins" and t.__name__.endswith("iterator"):
        return "iterator"
    if callable(getattr(t, "__sessionguard_state__", None)):
        return "declared"
    return "object"


def _c_field(obj: object, index: int) -> object:
    """The object pointer `index` words into a C object (0 and 1 are its header)."""
    pointer = ctypes.c_void_p.from_address(id(obj) + index * _PTR).value
    return None if not pointer else _object_at(pointer)


def _cell(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY


def _fields(obj: object) -> list[tuple[str, object]] | None:
    """An object's attributes: its __dict__ and its slots (None: neither, a C object)."""
    t = type(obj)
    slots = _SLOTS.get(t)
    if slots is None:
        names = []
        for klass in t.__mro__:
            declared = klass.__dict__.get("__slots__", ())
            names += [declared] if isinstance(declared, str) else list(declared)
        slots = _SLOTS[t] = tuple(n for n in names if n not in ("__dict__", "__weakref__"))
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict):
        if not slots and not t.__flags__ & _HEAPTYPE:
            return None  # written in C, and nothing to read it by
        d = {}
    return [*d.items(), *((name, getattr(obj, name, _EMPTY)) for name in slots)]


_SLOTS: dict[type, tuple[str, ...]] = {}
#: A task name the loop gave (``T<n>:<coroutine>``): its number follows the order tasks were made.
_NUMBERED_NAME = re.compile(r"^T\d+:")
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement, not written in C


def _lane_of(walk: _Walk, handle: Any) -> Hashable:
    """A handle's lane, as far as it is state (its label never is: it is made from the rest).

    A task's lane is written as the task (the loop numbers tasks in the order
    it made them: history, see assumption 2), the callbacks' lane as the one
    it is. A timer's lane is its own, numbered by the loop's count of every
    handle made so far: history again (two runs that made a different number
    of handles on the way would differ by it and nothing else). Every timer
    is alone in its lane, so writing "a timer's lane" loses nothing: where it
    stands among the others is the order of the ready queue, or of the timers
    by due time. (A timer's label counts the timers its creator made before
    it: history.)
    """
    lane = getattr(handle, "lane", None)
    if not isinstance(lane, int):
        return lane
    if lane >= 0:
        return ("task", walk.value(walk.loop._task_list[lane]))  # noqa: SLF001
    return "timer" if lane < _CALLBACK_LANE else lane


def _in_current_batch(loop: Any, handle: Any) -> bool:
    """Will `handle` run before the loop starts its next stock iteration (promoting timers)?"""
    batch = getattr(loop, "_batch", None)
    if batch is not None:  # the seqs of the current iteration's handles
        return handle.seq in batch
    return bool(handle.batch < loop._iteration)  # numbered by the iteration that queued it


def lane_rank(label: str) -> str:
    """Where a lane stands in a state's canonical order of ready lanes (ties: queue order).

    A task's lane by the task's name without the loop's number (``T<n>:``:
    history), every timer alike (their labels count timers made before), and
    the callbacks' lane as the one lane it is.
    """
    if label.startswith("timer:"):
        return "timer:"
    return lane_key(_NUMBERED_NAME.sub("", label, count=1))


def canonical_position(labels: Sequence[str], index: int) -> int:
    """The position of ``labels[index]`` once the lanes are in canonical order (``lane_rank``)."""
    rank = lane_rank(labels[index])
    return sum(1 for j, other in enumerate(labels) if (r := lane_rank(other)) < rank or (r == rank and j < index))


def fingerprint(loop: ControlledLoop, *, batches: bool = True, queue_order: bool = True) -> tuple[str, list[str]]:
    """The state of a run between two steps as text, and the types the walk could not look into.

    Equal texts mean equal states (see the module docstring for what is
    assumed); a state with opaque parts equals no other. The text is canonical
    (every set in it is sorted), and everything in it that is not a number, a
    string or a structure of them is an object alive for the whole process (a
    class, a code object), written with its address.

    ``batches=False`` leaves out which ready handles belong to the loop's
    current iteration. That only decides when timers that are due join the
    queue, and with time standing still while anything is ready, only a timer
    made already due (``call_later(0)``) can be waiting for it: a caller that
    leaves it out must watch for those (``ControlledLoop.due_timers_made``).

    ``queue_order=False`` writes the ready handles lane by lane in a canonical
    order (``lane_rank``), each lane's own handles in queue order, rather than
    in the order of the whole queue. The controlled loop runs the head of
    whichever lane the scheduler picks, so where two lanes' handles stand
    relative to each other only decides which lane is the FIFO choice: a
    search that tries every lane (no deviation bound) never depends on it.
    """
    walk = _Walk(loop)
    handles = [h for h in loop._ready if not h.cancelled()]  # type: ignore[attr-defined]
    if not queue_order:
        handles.sort(key=lambda h: lane_rank(loop._label(h)))  # stable: each lane keeps its order
    ready = tuple((_lane_of(walk, h), batches and _in_current_batch(loop, h), walk.value(h)) for h in handles)
    timers = tuple(
        walk.value(t)
        for t in sorted(loop._scheduled, key=lambda t: (t.when(), t.seq))  # type: ignore[attr-defined]
        if not t.cancelled()
    )
    state = (
        loop.time(),
        loop._stopping,  # type: ignore[attr-defined]
        ready,
        timers,
        # The loop's list is in the order it made them: history. A finished
        # task that nothing else holds can change nothing later, unless the
        # end of the run reports an exception of it that nobody retrieved.
        walk.value({t for t in loop.tasks() if not t.done() or getattr(t, "_log_traceback", False)}),
        tuple(str(e) for e in loop.errors),
        walk.values(loop._observers),  # noqa: SLF001
    )
    return repr((state, walk.deferred_sets())), walk.opaque


def digest(text: str) -> bytes:
    """A 128-bit digest of a state's text: what the search keeps of each state.

    Two different states share a digest with probability about 2**-128 per
    pair: below 10**-26 for any search of a million states.
    """
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


# --- the search hook ------------------------------------------------------------------


_END = -1  # the successor of a run's last step
_PASS = -2  # on the current run: a state with one ready lane, not written down


class VisitedStates:
    """A :class:`~sessionguard.loop.dfs.Reduction` that never explores a state twice.

    ``states``: distinct states reached; ``pruned``: runs cut at a state reached
    before (each of them a run not finished, not counted as a schedule);
    ``opaque``: states that could not be fingerprinted (never merged), by the
    type that made them so; ``complete``: False once a run has reached the
    step limit (see the module docstring: the search then claims no
    exhaustion); ``restarts``: how often the search started over with the
    loop's iteration batches in the state (at most once, see ``after_run``).

    It also keeps the state graph it explored (which lane leads from which
    state to which), so that after an unbounded search :meth:`paths` can say
    how many schedules the stateless DFS would have run to cover the same
    ground, without running them.
    """

    def __init__(self, *, exact: bool = False) -> None:
        check_support()
        self.exact = exact  # keep each state's whole text instead of its digest (tests, diagnosis)
        self.seen: dict[str | bytes, tuple[int, int]] = {}  # state -> (its number, deviations spent)
        self.pruned = 0
        self.opaque: Counter[str] = Counter()
        self.complete = True
        self.restart = False  # read by the DFS: start over, every table emptied
        self.restarts = 0
        self._batches = False  # are the loop's iteration batches part of the state?
        self._loop: ControlledLoop | None = None  # the loop of the current run
        self._count = 0
        self._bounded = False
        self._path: list[int] = []  # state numbers along the current run, by loop step
        self._edges: dict[tuple[int, int], int] = {}  # (state, lane index taken) -> next state or _END
        self._whole = True  # every state of every run was fingerprinted
        self._cycle = False  # the node just reached closes a cycle of the current run

    @property
    def states(self) -> int:
        return self._count

    def start_search(self, max_deviations: int | None) -> None:
        """Called by the DFS before its first run."""
        self._bounded = max_deviations is not None

    def alternatives(self, node: Node, path: Sequence[Node]) -> Iterable[int]:
        # At a state the run has been in before, its other lanes are explored
        # from that earlier visit.
        return () if self._cycle else range(1, len(node.labels))

    def after_run(self, path: Sequence[Node], result: RunResult | None) -> None:
        loop = self._loop
        if loop is not None and loop.due_timers_made and not self._batches:
            # States that differed only in where the loop's current batch ends
            # were merged; a timer made already due joins the queue only when
            # the batch ends, so for this program they are not the same. Start
            # over with the batches in the state.
            self._start_over()
            return
        if result is None:
            return
        if isinstance(result.problem, Hung) and result.problem.limit == "steps":
            self.complete = False
        if path:
            origin = self._origin(len(path), path)
            if origin is not None:
                self._edge(origin, _END)

    def _start_over(self) -> None:
        self._batches = True
        self.restart = True
        self.restarts += 1
        self.seen.clear()
        self._edges.clear()
        self._path.clear()
        self._count = 0
        self.pruned = 0
        self.complete = True
        self._whole = True

    def _edge(self, origin: tuple[int, int], target: int) -> None:
        """Write down that a lane leads from a state to `target` (a state, or the end of a run)."""
        known = self._edges.setdefault(origin, target)
        if known != target:
            # Runs are deterministic, so this can only be a lane the canonical
            # order could not tell from another of the same name: the graph
            # can no longer be counted (the search itself is not affected).
            self._whole = False

    def _origin(self, step: int, path: Sequence[Node]) -> tuple[int, int] | None:
        """The last written-down state before loop step `step`, and the lane taken from it."""
        i = step - 1
        while i >= 0 and self._path[i] == _PASS:
            i -= 1
        if i < 0 or self._path[i] < 0:
            return None
        node = path[i]
        if self._bounded:
            return (self._path[i], node.choice)
        # The state was written with its lanes in canonical order: so is the edge.
        return (self._path[i], canonical_position(node.labels, node.choice))

    def first(self, node: Node, path: Sequence[Node], may_deviate: bool) -> int:
        del self._path[node.step :]
        self._cycle = False
        if len(node.labels) == 1 and node.step > 0:
            # One ready lane: nothing to choose, and the state is written down
            # at the next choice anyway (a run that got here by another path is
            # cut there). Most steps of a run are such steps.
            self._path.append(_PASS)
            return 0
        loop = asyncio.get_running_loop()
        if isinstance(loop, ControlledLoop):
            self._loop = loop
        if not isinstance(loop, ControlledLoop) or loop.violation is not None:
            # A flagged run is always run to its verdict, never cut.
            self._whole = False
            self._path.append(-1)
            return 0
        text, opaque = fingerprint(loop, batches=self._batches, queue_order=self._bounded)
        if opaque:
            self.opaque.update(set(opaque))
        key = text if self.exact else digest(text)
        spent = node.deviations
        before = self.seen.get(key)
        number = before[0] if before is not None else self._count
        origin = self._origin(node.step, path)
        if origin is not None:
            self._edge(origin, number)
        if before is not None and number in self._path:
            # The run is back in a state it was in: a loop that never settles
            # (the stateless search would go round until the step limit, and
            # so does this run, without branching again).
            self._cycle = True
            self._path.append(number)
            return 0
        # Under a deviation bound a state reached with fewer deviations spent
        # has more schedules ahead of it: explore it again, unless it was
        # already explored with at most as many spent.
        if before is not None and (not self._bounded or before[1] <= spent):
            self.pruned += 1
            raise RedundantRun(node.step)
        if before is None:
            self._count += 1
        self.seen[key] = (number, spent)
        self._path.append(number)
        return 0

    def paths(self) -> int | None:
        """How many schedules an unbounded stateless DFS runs over the graph explored.

        One per path from the first state to the end of a run (a lane taken
        from a state is one edge). Only meaningful after an exhausted,
        unbounded search in which every state was fingerprinted and no run
        went round a cycle; None otherwise.
        """
        if self._bounded or not self._whole or not self.complete or not self._count:
            return None
        out: dict[int, list[int]] = {}
        for (state, _lane), target in self._edges.items():
            out.setdefault(state, []).append(target)
        # Paths out of a state, summed over its edges after theirs are known
        # (an iterative depth-first walk; meeting a state still open is a cycle).
        count: dict[int, int] = {_END: 1}
        open_states: set[int] = set()
        stack: list[tuple[int, bool]] = [(0, False)]
        while stack:
            state, closing = stack.pop()
            if closing:
                open_states.discard(state)
                count[state] = sum(count[t] for t in out.get(state, ()))
                continue
            if state in count:
                continue
            if state in open_states:
                return None
            open_states.add(state)
            stack.append((state, True))
            stack.extend((t, False) for t in out.get(state, ()) if t not in count)
        return count[0]
