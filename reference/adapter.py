"""The session guard in asyncio: `prefix`, `seed` and `reference`, step for step.

Each class is the asyncio shell of one design of SPEC section 3; every choice
between two awaits is a pure function of `decisions.py`.  The code follows
the model (`sessionguard.model`) await by await: each `await self._at(...)`
is one await of SPEC's appendix, named by the model's position constant, so
the refinement check can tell where every task is suspended.  Where the
design needs an await that might not suspend (waiting for a task that has
already ended), the shell makes sure it does, so that one loop step is never
two model steps.

Per session key `k` the adapter keeps (SPEC section 2):

* `guards[k]`, the guard G[k]: an `asyncio.Event`, compared by identity;
* `owners[k]`, the owner O[k]: the background `asyncio.Task` (seed, reference);
* `pending[k]`, the pending slot P[k]: one merged `Event`;
* `expected_cancelled`: tasks cancelled on purpose.

Bookkeeping that only the checker reads (`jobs`, `handlings`, `pc`) names
what the code is doing; it never decides anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sessionguard.model.vocabulary import (
    B_RUNNER,
    B_SEND,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    HOOKS,
    INBAND,
    RUNNER,
    SEND_ERROR,
    SEND_REPLY,
    START,
    TYPING,
)

from . import decisions as d
from .fakes import Event, Message, Reply

R = TypeVar("R")


class Runner(Protocol):
    """The agent back end: takes an event, returns the reply (or raises, or never returns)."""

    def __call__(self, event: Event) -> Awaitable[Reply]: ...


class Platform(Protocol):
    """The chat platform: sends, the busy acknowledgement, the stop-typing hook."""

    def send(self, reply: Reply) -> Awaitable[None]: ...

    def busy_ack(self, key: int) -> None: ...

    def stop_typing(self, key: int) -> Awaitable[None]: ...


@dataclass(eq=False)
class Activation:
    """One call of process(e) inside a task (prefix and seed nest them at P3)."""

    event: Event
    guard: asyncio.Event | None = None  # g: taken in P1 (prefix, seed) or handed at start


@dataclass(eq=False)
class Job:
    """A background task process(e), as the checker sees it."""

    key: int
    levels: list[Activation]
    task: asyncio.Task[None] | None = None
    pc: str = START
    finished: bool = False  # its F2 has run (reference: in the finally or the done-callback)

    def __sessionguard_state__(self) -> tuple[object, ...]:
        """For stateful search (loop/stateful.py): once its task has ended and its
        F2 has run, a job is only ever asked whether it finished (the heal check);
        where it ended and what it ran are history."""
        if self.finished and self.task is not None and self.task.done():
            return ("retired", self.key)
        return (self.key, self.levels, self.task, self.pc, self.finished)


@dataclass(eq=False)
class Handling:
    """A handle_message call that awaits: a bypass command or the command handoff."""

    message: Message
    pc: str
    old: asyncio.Event | None = None  # C1: the guard the command replaced
    cg: asyncio.Event | None = None  # C1: the command's own guard
    target: asyncio.Task[None] | None = None  # C2: the owner it cancelled
    task: asyncio.Task[Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


def error_notice(key: int, answers: tuple[Message, ...] = ()) -> Reply:
    return Reply(key, "Sorry, something went wrong.", answers)


class Adapter:
    """The `prefix` design (SPEC 3a): a guard and a pending slot, no owner, no handoff."""

    design = d.PREFIX

    def __init__(self, runner: Runner, platform: Platform, *, command_timeout: float = 30.0) -> None:
        self.runner = runner
        self.platform = platform
        self.command_timeout = command_timeout
        self.guards: dict[int, asyncio.Event] = {}
        self.owners: dict[int, asyncio.Task[None]] = {}
        self.pending: dict[int, Event] = {}
        self.expected_cancelled: set[asyncio.Task[None]] = set()
        self.stopped = False
        # For the checker (and for shutdown): every job ever started, in order.
        self.jobs: list[Job] = []
        self.job_of: dict[asyncio.Task[None], Job] = {}
        self.handlings: dict[Message, Handling] = {}

    # --- the await points --------------------------------------------------------

    async def _at(self, who: Job | Handling, pc: str, awaitable: Awaitable[R]) -> R:
        """Await `awaitable` as the await named `pc` of SPEC's appendix."""
        who.pc = pc
        return await awaitable

    # --- H: handle_message ---------------------------------------------------------

    async def handle_message(self, message: Message) -> None:
        """H: decide at once (no await between test and install), then maybe await."""
        k = message.key
        action = d.inbound_action(self.design, message.kind, busy=k in self.guards)
        if action == d.START:
            self.guards[k] = asyncio.Event()
            self._spawn(k, Event(k, (message,)))
        elif action == d.DIRECT:
            await self._direct(message)
        else:
            self._queue(message, interrupt=action == d.INTERRUPT)

    def _queue(self, message: Message, *, interrupt: bool) -> None:
        """Merge a follow-up into the one pending slot; a text also requests an interrupt."""
        k = message.key
        current = self.pending.get(k)
        merged = d.merge_pending(current.messages if current else None, message)
        self.pending[k] = Event(k, merged)
        if interrupt:
            self.guards[k].set()
            self.platform.busy_ack(k)  # "Interrupting current task..." (not awaited)

    async def _direct(self, message: Message) -> None:
        """B1, B2: a bypass command goes straight to the runner, even while busy."""
        h = self._handling(message, B_RUNNER)
        try:
            reply = await self._at(h, B_RUNNER, self.runner(Event(message.key, (message,), direct=True)))
            await self._at(h, B_SEND, self.platform.send(reply))
        finally:
            self._handled(h)

    def _handling(self, message: Message, pc: str) -> Handling:
        h = Handling(message, pc, task=asyncio.current_task())
        self.handlings[message] = h
        return h

    def _handled(self, h: Handling) -> None:
        del self.handlings[h.message]
        h.done.set()

    # --- background tasks ----------------------------------------------------------

    def _spawn(self, k: int, event: Event, guard: asyncio.Event | None = None) -> asyncio.Task[None]:
        """asyncio.create_task(process(event)): its first step (P1) runs later."""
        job = Job(k, [Activation(event, guard)])
        task = asyncio.get_running_loop().create_task(self._run_job(job), name=f"process-k{k}")
        job.task = task
        self.jobs.append(job)
        self.job_of[task] = job
        return task

    async def _run_job(self, job: Job) -> None:
        await self._process(job, job.levels[0])

    def _start_typing(self, k: int) -> asyncio.Task[None]:
        """The typing indicator: a task that shows "typing..." until it is cancelled."""

        async def typing() -> None:
            await asyncio.get_running_loop().create_future()  # until cancelled

        return asyncio.get_running_loop().create_task(typing(), name=f"typing-k{k}")

    @staticmethod
    async def _stop_typing_task(typing: asyncio.Task[None]) -> None:
        """Cancel the typing indicator and wait until it has ended.

        `asyncio.wait` never raises the typing task's own CancelledError, so a
        CancelledError here is always the *waiting* task's cancellation; and
        it suspends even when the indicator has already ended (P3 may have
        stopped it), so this is always a real await, as in the model.
        """
        typing.cancel()
        await asyncio.wait([typing])

    async def _process(self, job: Job, level: Activation) -> None:
        """process(e), P1 to F2, shared by prefix and seed (SPEC 3a, appendix)."""
        k = job.key
        try:
            # P1: adopt whatever guard is there, or make one.
            g = self.guards.get(k) or asyncio.Event()
            self.guards[k] = g
            level.guard = g
            typing = self._start_typing(k)
            try:
                try:
                    reply: Reply | None = await self._at(job, RUNNER, self.runner(level.event))
                    # P2: a reply superseded by a follow-up that interrupted is dropped.
                    if d.reply_is_stale(reply is not None, g.is_set(), k in self.pending):
                        reply = None
                    if reply is not None:
                        await self._at(job, SEND_REPLY, self.platform.send(reply))
                    # P3: take the follow-up inline, in this same task.
                    if k in self.pending:
                        follow_up = self.pending.pop(k)
                        if k in self.guards:
                            self.guards[k].clear()
                        try:
                            await self._at(job, INBAND, self._stop_typing_task(typing))
                        except asyncio.CancelledError:
                            pass  # the flaw: this swallows a cancellation of the task itself
                        inner = Activation(follow_up)
                        job.levels.append(inner)
                        await self._process(job, inner)
                        return  # the finally below still runs, with this level's g
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # E1: tell the user; an error here goes on through the finally.
                    await self._at(job, SEND_ERROR, self.platform.send(error_notice(k)))
            finally:
                # F1: two cleanup awaits.  The first swallows a cancellation (the
                # flaw again); the second is unguarded, so a fault there ends the
                # finally early, before F2: the dead-owner form of #11016.
                try:
                    await self._at(job, TYPING, self._stop_typing_task(typing))
                except asyncio.CancelledError:
                    pass
                await self._at(job, HOOKS, self.platform.stop_typing(k))
                self._finish(job, level)
        finally:
            job.levels.pop()

    def _finish(self, job: Job, level: Activation) -> None:
        """F2 (prefix): drain a late arrival into a new task, else delete G[k], whatever it is."""
        k = job.key
        job.finished = True
        if d.finish_action(self.design, k in self.pending, True) == d.DRAIN:
            p = self.pending.pop(k)
            if k in self.guards:
                self.guards[k].clear()
            self._spawn(k, p)
        else:
            self.guards.pop(k, None)

    # --- shutdown --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel every background task and clear G, O and P (one step, no await)."""
        self.stopped = True
        for job in self.jobs:
            if job.task is not None and not job.task.done():
                job.task.cancel()
        self.guards.clear()
        self.owners.clear()
        self.pending.clear()


class SeedAdapter(Adapter):
    """The `seed` design (SPEC 3b): the fix as merged, PR #14513."""

    design = d.SEED

    def _start(self, k: int, event: Event) -> asyncio.Task[None]:
        """start(e, k): a fresh guard, a new task, recorded as owner, in one step."""
        self.guards[k] = asyncio.Event()
        task = self._spawn(k, event)
        self.owners[k] = task
        return task

    def _release(self, k: int, guard: asyncio.Event | None = None) -> None:
        """release(k, guard=g): delete G[k] only if it is still the object `g`."""
        if d.may_release(self.guards.get(k), guard):
            del self.guards[k]

    def _stale(self, k: int) -> bool:
        owner = self.owners.get(k)
        return d.is_stale(owner is not None, owner is not None and owner.done())

    def _heal(self, k: int) -> None:
        """seed's heal: forget the dead lock, and with it the pending slot."""
        self.guards.pop(k, None)
        self.pending.pop(k, None)
        self.owners.pop(k, None)

    async def handle_message(self, message: Message) -> None:
        k = message.key
        if d.needs_heal(k in self.guards, k in self.owners, self._stale(k)):
            self._heal(k)
        action = d.inbound_action(self.design, message.kind, busy=k in self.guards)
        if action == d.START:
            self._start(k, Event(k, (message,)))
        elif action == d.COMMAND:
            await self._command(message)
        elif action == d.DIRECT:
            await self._direct(message)
        else:
            self._queue(message, interrupt=action == d.INTERRUPT)

    async def _command(self, message: Message) -> None:
        """C1 to C4: the command handoff for /stop, /new, /reset while busy."""
        k = message.key
        h = self._handling(message, C_RUNNER)
        h.old = self.guards.get(k)
        h.cg = asyncio.Event()
        self.guards[k] = h.cg  # follow-ups now queue behind the command
        try:
            try:
                reply = await self._at(h, C_RUNNER, self.runner(Event(k, (message,), direct=True)))
                # C2: cancel(k, release_guard=False, discard_pending=False).
                owner = self.owners.pop(k, None)
                if owner is not None and not owner.done():
                    self.expected_cancelled.add(owner)
                    owner.cancel()
                    h.target = owner
                    await self._at(h, C_AWAIT, asyncio.wait([owner]))
                await self._at(h, C_SEND, self.platform.send(reply))
            except Exception:
                # C-error: put the old guard back or release ours, then re-raise.
                action = d.command_error_action(
                    self.guards.get(k) is h.cg, k in self.owners, h.old is not None
                )
                if action == "restore-old":
                    assert h.old is not None
                    self.guards[k] = h.old
                elif action == d.RELEASE:
                    self._release(k, h.cg)
                raise
            # C4: pop P[k], release the command guard, start what was pending.
            p = self.pending.pop(k, None)
            self._release(k, h.cg)
            if p is not None:
                self._start(k, p)
        finally:
            self._handled(h)

    def _finish(self, job: Job, level: Activation) -> None:
        """F2 (seed): drain into a recorded owner, or drop our record and release our guard."""
        k = job.key
        job.finished = True
        if d.finish_action(self.design, k in self.pending, True) == d.DRAIN:
            p = self.pending.pop(k)
            if k in self.guards:
                self.guards[k].clear()
            self.owners[k] = self._spawn(k, p)  # the guard stays in place
            return
        if self.owners.get(k) is asyncio.current_task():
            del self.owners[k]
        self._release(k, level.guard)


class ReferenceAdapter(SeedAdapter):
    """The `reference` design: seed with the six departures R1..R6 of model/reference.py."""

    design = d.REFERENCE

    def __init__(self, runner: Runner, platform: Platform, *, command_timeout: float = 30.0) -> None:
        super().__init__(runner, platform, command_timeout=command_timeout)
        self.commands: dict[int, list[Handling]] = {}  # handoffs in flight, arrival order

    def _start(self, k: int, event: Event) -> asyncio.Task[None]:
        """start(e, k): the new task is *handed* its guard (R4), and recorded as owner."""
        guard = asyncio.Event()
        self.guards[k] = guard
        task = self._spawn(k, event, guard)
        # R3: a task cancelled before its first step never runs its finally;
        # its done-callback does the finally's bookkeeping instead.
        task.add_done_callback(self._on_done)
        self.owners[k] = task
        return task

    def _on_done(self, task: asyncio.Task[None]) -> None:
        job = self.job_of[task]
        if not job.finished:
            self._finish(job, job.levels[0])

    async def handle_message(self, message: Message) -> None:
        k = message.key
        owner = self.owners.get(k)
        if owner is not None and owner.done() and not self.job_of[owner].finished:
            # R6: heal by doing the dead owner's own F2 now (its done-callback,
            # run early), so that its pending follow-ups are handed on, not lost.
            job = self.job_of[owner]
            self._finish(job, job.levels[0])
        await super().handle_message(message)

    async def _process(self, job: Job, level: Activation) -> None:
        """process(e) for exactly one event (R1), cancellation never swallowed (R2)."""
        k = job.key
        g = level.guard
        assert g is not None  # R4: handed over by _start
        try:
            typing = self._start_typing(k)
            try:
                try:
                    reply: Reply | None = await self._at(job, RUNNER, self.runner(level.event))
                    if d.reply_is_stale(reply is not None, g.is_set(), k in self.pending):
                        reply = None
                    if reply is not None:
                        await self._at(job, SEND_REPLY, self.platform.send(reply))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    await self._at(job, SEND_ERROR, self.platform.send(error_notice(k)))
            finally:
                try:
                    # R2: no `except CancelledError: pass` around these awaits.
                    await self._at(job, TYPING, self._stop_typing_task(typing))
                    await self._at(job, HOOKS, self.platform.stop_typing(k))
                finally:
                    # R3: the bookkeeping sits in an inner finally, so a cleanup
                    # await that raises or is cancelled cannot skip it.
                    self._finish(job, level)
        finally:
            job.levels.pop()

    def _finish(self, job: Job, level: Activation) -> None:
        """F2 (reference): drop our owner record, then hand the session on if it is ours."""
        k = job.key
        job.finished = True
        if job.task is not None and self.owners.get(k) is job.task:
            del self.owners[k]
        self._hand_on(k, level.guard)

    def _hand_on(self, k: int, guard: asyncio.Event | None) -> None:
        """The end of a turn, for a task (F2) and a command (C4) alike (R4, R5).

        Only while G[k] is still `guard`: start the follow-ups under a new
        owner, or release the session.  Otherwise someone took the session
        over, and it is theirs to hand on.
        """
        owns = guard is not None and self.guards.get(k) is guard
        action = d.finish_action(self.design, k in self.pending, owns)
        if action == d.DRAIN:
            self._start(k, self.pending.pop(k))
        elif action == d.RELEASE:
            del self.guards[k]

    async def _command(self, message: Message) -> None:
        """The handoff, completed in every case and in arrival order (R5)."""
        k = message.key
        h = self._handling(message, C_RUNNER)
        h.old = self.guards.get(k)
        h.cg = asyncio.Event()
        self.guards[k] = h.cg
        earlier = list(self.commands.setdefault(k, []))
        self.commands[k].append(h)
        try:
            try:
                # R5: the command's runner call is bounded, so a command never hangs.
                async with asyncio.timeout(self.command_timeout):
                    reply = await self._at(h, C_RUNNER, self.runner(Event(k, (message,), direct=True)))
            except Exception:  # raised or timed out; a CancelledError is never caught here
                reply = error_notice(k, (message,))
            # C2: cancel the owner, but leave O[k] to it (its own F2 clears it).
            owner = self.owners.get(k)
            if owner is not None and not owner.done():
                self.expected_cancelled.add(owner)
                owner.cancel()
                h.target = owner
            # Safe ordering: the follow-ups may start only after the old task has
            # ended and every earlier command has completed, so C4 below never
            # starts a worker beside another one, and handoffs finish in order.
            await self._at(h, C_AWAIT, self._after(h.target, earlier))
            try:
                async with asyncio.timeout(self.command_timeout):
                    await self._at(h, C_SEND, self.platform.send(reply))
            except Exception:
                pass  # the reply is lost, but the handoff still completes
            # C4: only if the session is still the command's own.
            self._hand_on(k, h.cg)
        finally:
            self.commands[k].remove(h)
            self._handled(h)

    @staticmethod
    async def _after(target: asyncio.Task[None] | None, earlier: list[Handling]) -> None:
        """C2's await: the cancelled owner's end, then every earlier command's completion.

        It always suspends at least once: in the model C2 is an await even when
        there is nothing left to wait for.
        """
        await asyncio.sleep(0)
        if target is not None:
            await asyncio.wait([target])
        for other in earlier:
            await other.done.wait()


ADAPTERS: dict[str, Callable[..., Adapter]] = {
    d.PREFIX: Adapter,
    d.SEED: SeedAdapter,
    d.REFERENCE: ReferenceAdapter,
}


def make_adapter(design: str, runner: Runner, platform: Platform, **options: Any) -> Adapter:
    """The adapter of the named design ("prefix", "seed" or "reference")."""
    try:
        factory = ADAPTERS[design]
    except KeyError:
        raise ValueError(f"unknown design {design!r}; known: {', '.join(ADAPTERS)}") from None
    return factory(runner, platform, **options)
