"""The controlled loop itself: FIFO fidelity, virtual time, verdicts, clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from sessionguard.loop import (
    ControlledLoop,
    Deadlock,
    UnsupportedOperation,
    add_observer,
    run,
)

Log = list[object]


# --------------------------------------------------------------- FIFO fidelity


def workload(log: Log, *, eager: bool = False) -> Callable[[], Coroutine[Any, Any, None]]:
    """A small mixed workload: queues, locks, events, timeouts, shield, TaskGroup,
    cancellation, an async generator and a task left for shutdown to cancel.

    Timer delays are far apart (10 ms steps) and the work between them takes
    microseconds, so stock asyncio on a real clock orders them the same way the
    virtual clock does.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        ev = asyncio.Event()
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        lock = asyncio.Lock()

        async def producer() -> None:
            for i in range(3):
                await q.put(i)
                log.append(("put", i))
            await q.put(-1)

        async def consumer() -> None:
            while (item := await q.get()) != -1:
                log.append(("got", item))
                async with lock:
                    log.append(("locked", item))
                    await asyncio.sleep(0)

        async def locker(n: int) -> None:
            async with lock:
                log.append(("locker", n))
                await asyncio.sleep(0)

        async def waiter() -> None:
            try:
                await asyncio.wait_for(ev.wait(), 0.02)
            except TimeoutError:
                log.append("wait_for timed out")
            await ev.wait()
            log.append("event seen")

        async def agen() -> Any:
            try:
                for i in range(10):
                    yield i
            finally:
                log.append("agen closed")

        async def background() -> None:
            try:
                await asyncio.sleep(100)
            finally:
                log.append("background cancelled")

        async def slow(n: int, d: float) -> int:
            await asyncio.sleep(d)
            log.append(("slow", n))
            return n

        fut = loop.create_future()
        fut.add_done_callback(lambda f: log.append(("fut cb", f.result())))
        loop.call_soon(log.append, "call_soon cb")
        loop.call_soon(fut.set_result, 7)
        bg = asyncio.create_task(background())
        coros = (producer(), consumer(), locker(1), locker(2), waiter())
        tasks = [asyncio.create_task(c) for c in coros]
        log.append(("gather", await asyncio.gather(slow(1, 0.06), slow(2, 0.04), slow(3, 0.04))))
        ev.set()
        await asyncio.gather(*tasks)
        inner = asyncio.create_task(slow(4, 0.05))
        try:
            await asyncio.wait_for(asyncio.shield(inner), 0.01)
        except TimeoutError:
            log.append("shield timed out")
        log.append(("inner", await inner))
        async with asyncio.TaskGroup() as tg:
            for n in range(3):
                tg.create_task(slow(10 + n, 0.01 * (3 - n)))
        victim = asyncio.create_task(slow(99, 1))
        await asyncio.sleep(0)
        victim.cancel()
        try:
            await victim
        except asyncio.CancelledError:
            log.append("victim cancelled")
        g = agen()
        log.append(("agen", await g.__anext__()))
        waited = [asyncio.create_task(slow(20, 0.02))]
        done, pending = await asyncio.wait(waited, timeout=0.01)
        log.append(("wait", len(done), len(pending)))
        await asyncio.sleep(0.03)
        log.append("main done")
        del bg

    return main


def _short(name: str) -> str:
    name = name.rpartition("<locals>.")[2]
    # The async-generator finalizer schedules loop.create_task: same method,
    # different class.
    return "create_task" if name.endswith(".create_task") else name


def _stock_name(cb: Any) -> str:
    owner = getattr(cb, "__self__", None)
    kind = getattr(cb, "__name__", None) or type(cb).__name__
    if isinstance(owner, asyncio.Task) and kind in ("TaskStepMethWrapper", "task_wakeup"):
        cb = owner.get_coro()
    cb = getattr(cb, "func", cb)  # functools.partial
    return _short(getattr(cb, "__qualname__", None) or type(cb).__name__)


class TracingLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """Stock asyncio, recording the name of every callback it runs."""

    def __init__(self, trace: list[str]) -> None:
        super().__init__()
        self.trace = trace

    def _traced(self, cb: Any) -> Any:
        name = _stock_name(cb)

        def traced(*args: Any) -> Any:
            self.trace.append(name)
            return cb(*args)

        return traced

    def call_soon(self, cb: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        return super().call_soon(self._traced(cb), *args, context=context)

    def call_soon_threadsafe(self, cb: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        return super().call_soon_threadsafe(self._traced(cb), *args, context=context)

    def call_at(self, when: float, cb: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        return super().call_at(when, self._traced(cb), *args, context=context)


def _label_name(label: str) -> str:
    kind, _, rest = label.partition(":")
    if kind == "timer":
        rest = rest[rest.index("(") + 1 : -1]
    return _short(rest)


def _until_main_done(names: list[str]) -> list[str]:
    return names[: names.index("_run_until_complete_cb") + 1]


@pytest.mark.parametrize(
    "eager",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks: 3.12+"),
        ),
    ],
)
def test_choice_zero_reproduces_stock_asyncio(eager: bool) -> None:
    stock_log: Log = []
    trace: list[str] = []
    with asyncio.Runner(loop_factory=lambda: TracingLoop(trace)) as runner:
        runner.run(workload(stock_log, eager=eager)())

    log: Log = []
    labels: list[str] = []
    result = run(workload(log, eager=eager), observer=lambda step, label: labels.append(label))

    assert result.verdict == "ok", result.describe()
    assert log == stock_log  # same events, in the same order, shutdown included
    assert "background cancelled" in log and log[-2:] == ["agen closed", "background cancelled"]
    # ... and the very same callbacks, one by one, up to the end of main.
    assert [_label_name(lbl) for lbl in labels] == _until_main_done(trace)
    assert result.schedule.deviations == 0


# --------------------------------------------------------------- virtual time


def test_sleep_an_hour_costs_no_wall_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    t0 = time.perf_counter()
    result = run(main)
    assert result.verdict == "ok"
    assert result.value == 3600
    assert result.virtual_time == 3600
    assert time.perf_counter() - t0 < 1.0


def test_timeouts_fire_at_their_virtual_time() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen = []
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=1.5)
        except TimeoutError:
            seen.append(("wait_for", loop.time()))
        try:
            async with asyncio.timeout(2):
                await asyncio.sleep(10)
        except TimeoutError:
            seen.append(("timeout", loop.time()))
        seen.append(("value", await asyncio.wait_for(asyncio.sleep(1, "v"), 5)))  # type: ignore[arg-type]
        return seen

    result = run(main)
    assert result.verdict == "ok", result.describe()
    assert result.value == [("wait_for", 1.5), ("timeout", 3.5), ("value", "v")]
    assert result.virtual_time == 4.5


def test_virtual_time_limit_gives_hung() -> None:
    async def main() -> None:
        await asyncio.sleep(10**9)

    result = run(main, max_virtual_time=1000)
    assert result.verdict == "hung"
    assert result.problem is not None and result.problem.limit == "virtual_time"  # type: ignore[attr-defined]
    assert "max_virtual_time=1000" in result.describe()


# --------------------------------------------------------------- verdicts


def test_deadlock_names_the_blocked_tasks_and_where_they_wait() -> None:
    async def main() -> None:
        e1, e2 = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            await e2.wait()
            e1.set()

        async def second() -> None:
            await e1.wait()
            e2.set()

        await asyncio.gather(first(), second())

    t0 = time.perf_counter()
    result = run(main)
    assert time.perf_counter() - t0 < 1.0
    assert result.verdict == "deadlock"
    problem = result.problem
    assert isinstance(problem, Deadlock)
    assert [b.label for b in problem.blocked] == ["T0:main", "T1:first", "T2:second"]
    first = problem.blocked[1]
    assert first.stack[0].startswith("first (test_loop_controlled.py:")
    assert first.stack[-1].startswith("Event.wait")
    assert "T1:first: " in result.describe() and "Event.wait" in result.describe()


def test_busy_loop_is_hung_not_hanging() -> None:
    log: Log = []

    async def main() -> None:
        try:
            while True:
                await asyncio.sleep(0)
        finally:
            log.append("unwound")

    t0 = time.perf_counter()
    result = run(main, max_steps=2000)
    assert time.perf_counter() - t0 < 2.0
    assert result.verdict == "hung"
    assert result.problem is not None and result.problem.limit == "steps"  # type: ignore[attr-defined]
    assert result.steps == 2000
    assert log == ["unwound"]  # shutdown cancelled it cleanly


def test_main_exception_is_an_error_verdict() -> None:
    async def main() -> None:
        await asyncio.sleep(0)
        raise KeyError("k")

    result = run(main)
    assert result.verdict == "error"
    assert isinstance(result.exception, KeyError)


def test_unretrieved_background_exception_is_reported() -> None:
    async def main() -> None:
        async def crash() -> None:
            raise ValueError("lost")

        asyncio.get_running_loop().create_task(crash(), name="worker")
        await asyncio.sleep(1)

    result = run(main)
    assert result.verdict == "ok"
    [error] = result.errors
    assert error.task == "T1:worker"
    assert isinstance(error.exception, ValueError)
    assert "never retrieved" in error.message


def test_run_in_executor_is_reported_not_hung() -> None:
    async def main() -> None:
        await asyncio.to_thread(time.sleep, 0)

    result = run(main)
    assert result.verdict == "nondeterminism"
    assert "run_in_executor" in result.describe()


def test_swallowed_executor_error_still_stops_the_run() -> None:
    async def main() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, print)
        except Exception:
            pass
        await asyncio.sleep(1)

    assert run(main).verdict == "nondeterminism"


def test_thread_calling_into_the_loop_is_reported() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, 1))
        thread.start()
        thread.join()
        await fut

    result = run(main)
    assert result.verdict == "nondeterminism"
    assert "call_soon_threadsafe" in result.describe()


def test_io_is_refused_with_a_clear_error() -> None:
    async def main() -> None:
        await asyncio.open_connection("example.org", 80)

    result = run(main)
    assert result.verdict == "error"
    assert isinstance(result.exception, UnsupportedOperation)
    assert "does no I/O" in str(result.exception)


def test_factory_must_not_be_a_coroutine() -> None:
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="factory"):
        run(main())  # type: ignore[arg-type]


# --------------------------------------------------------------- choosers and observers


class Abandon(BaseException):
    """What a test framework raises from inside a chooser to drop an example."""


def test_chooser_exception_finishes_the_run_in_fifo_order_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    log: Log = []

    async def main() -> None:
        ev = asyncio.Event()

        async def holder() -> None:
            try:
                await ev.wait()
            finally:
                await asyncio.sleep(0)  # an await inside finally: closing here would complain
                log.append("holder cleaned up")

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        ev.set()
        await task
        log.append("main done")

    def chooser(step: int, lanes: object) -> int:
        if step == 2:
            raise Abandon()
        return 0

    with pytest.raises(Abandon):
        run(main, chooser)
    gc.collect()
    assert log == ["holder cleaned up", "main done"]
    assert unraisable == []


def test_tasks_started_during_shutdown_are_cancelled_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finally block that starts a new task (a gateway's drain of pending
    work) must not leave it pending when the loop closes: over many runs that
    floods stderr with "coroutine ignored GeneratorExit"."""
    from sessionguard.loop import explore_random

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    log: Log = []

    async def main() -> None:
        async def worker(generation: int) -> None:
            try:
                await asyncio.sleep(10)
            finally:
                await asyncio.sleep(0)  # cleanup
                log.append(f"worker {generation} unwound")
                if generation < 2:
                    asyncio.create_task(worker(generation + 1))  # the drain

        asyncio.create_task(worker(0))
        await asyncio.sleep(0)

    result = run(main)
    assert result.verdict == "ok"
    assert [b.label for b in result.unfinished] == ["T1:worker"]
    assert log == ["worker 0 unwound", "worker 1 unwound", "worker 2 unwound"]
    explore_random(main, runs=50, stop_on_failure=False)
    gc.collect()
    assert unraisable == []


def test_task_that_swallows_cancellation_is_closed_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    async def main() -> None:
        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    pass
                finally:
                    await asyncio.sleep(0)

        asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)

    result = run(main)
    gc.collect()
    assert result.verdict == "ok"
    assert isinstance(result.shutdown_problem, Deadlock)
    assert any(e.task == "T1:stubborn" and "closed" in e.message for e in result.errors)
    assert unraisable == []


def test_chooser_returning_a_bad_index_is_an_error() -> None:
    async def main() -> None:
        await asyncio.sleep(0)

    with pytest.raises(ValueError, match="chooser returned 7"):
        run(main, lambda step, lanes: 7)


def test_observer_sees_every_step_and_can_flag_a_violation() -> None:
    state = {"x": 0}
    seen: list[tuple[int, str]] = []

    async def main() -> None:
        for _ in range(5):
            state["x"] += 1
            await asyncio.sleep(0)

    def observer(step: int, label: str) -> None:
        seen.append((step, label))
        assert state["x"] < 3, "x reached 3"

    result = run(main, observer=observer)
    assert result.verdict == "violation"
    assert isinstance(result.violation, AssertionError)
    assert result.violation_step == 2
    assert seen == [(0, "T0:main"), (1, "T0:main"), (2, "T0:main")]  # not called again
    assert result.steps == 7  # the run itself was finished


def test_add_observer_from_inside_the_scenario() -> None:
    seen: list[int] = []

    async def main() -> None:
        add_observer(lambda step, label: seen.append(step))
        await asyncio.sleep(0)

    result = run(main)
    assert seen == list(range(result.steps))
    with pytest.raises(RuntimeError, match="ControlledLoop"):
        asyncio.run(main())


def test_task_names_and_labels_are_per_loop() -> None:
    names: list[list[str]] = []

    async def main() -> None:
        async def work() -> None:
            await asyncio.sleep(0)

        tasks = [asyncio.create_task(work()), asyncio.create_task(work(), name="process-k0")]
        names.append([t.get_name() for t in tasks])
        await asyncio.gather(*tasks)

    first = run(main)
    asyncio.run(main())  # moves asyncio's process-wide Task-<n> counter
    second = run(main)
    assert names[0] == names[2] == ["T1:work", "process-k0"]
    assert first.schedule == second.schedule
    assert "T2:process-k0" in first.schedule.labels


def test_controlled_loop_can_be_driven_directly() -> None:
    async def main() -> int:
        await asyncio.sleep(5)
        return 42

    loop = ControlledLoop()
    try:
        assert loop.run_until_complete(main()) == 42
        assert loop.time() == 5
        loop.finish()
    finally:
        loop.close()

    async def stuck() -> None:
        await asyncio.Event().wait()

    loop = ControlledLoop()
    try:
        with pytest.raises(Deadlock):
            loop.run_until_complete(stuck())
        loop.finish()
    finally:
        loop.close()


# --------------------------------------------------------------- version-specific asyncio


def test_wait_for_shield_cancellation_is_run_faithfully() -> None:
    """CPython gh-86296: on 3.11, wait_for(shield(t)) can swallow a cancel() of the
    waiter when t finishes in the same iteration. The loop must neither hide nor
    invent that: some schedules swallow on 3.11, none on 3.12+."""
    from sessionguard.loop import explore_dfs

    outcomes: list[str] = []

    async def main() -> str:
        inner = asyncio.create_task(asyncio.sleep(0))

        async def waiter() -> None:
            await asyncio.wait_for(asyncio.shield(inner), timeout=10)

        w = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        if not w.cancel():
            return "finished first"
        try:
            await w
        except asyncio.CancelledError:
            return "cancelled"
        return "swallowed"

    def record(result: Any) -> bool:
        outcomes.append(result.value)
        return False

    found = explore_dfs(main, is_failure=record, stop_on_failure=False)
    assert found.exhausted and found.verdicts == {"ok": found.schedules}
    assert "cancelled" in outcomes
    if sys.version_info < (3, 12):
        assert "swallowed" in outcomes
    else:
        assert "swallowed" not in outcomes


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks: 3.12+")
def test_eager_task_runs_its_first_step_inside_create_task() -> None:
    log: Log = []

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]

        async def child() -> None:
            log.append("child starts")
            await asyncio.sleep(0)
            log.append("child resumes")

        task = asyncio.create_task(child(), name="kid")
        log.append("creator continues")
        await task

    result = run(main)
    assert result.verdict == "ok"
    assert log == ["child starts", "creator continues", "child resumes"]
    assert "T1:kid" in result.schedule.labels


async def main_leaving_a_spinner() -> None:
    """Starts a task that never settles, and finishes two steps later."""

    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    asyncio.create_task(spin())
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_step_limit_right_after_main_finished_still_shuts_down() -> None:
    # Main has finished (its run_until_complete callback is queued) and the
    # chooser keeps running another task until the step limit: the teardown
    # must not be stopped early by that leftover callback.
    def main_then_spin(step: int, lanes: Sequence[str]) -> int:
        main_done = any(lane.startswith("cb:") for lane in lanes)
        wanted = "spin" if main_done else "main"
        return next((i for i, lane in enumerate(lanes) if wanted in lane), 0)

    result = run(main_leaving_a_spinner, main_then_spin, max_steps=40)
    assert result.verdict == "hung" and result.steps == 40
