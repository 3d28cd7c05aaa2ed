"""Gateway adapters written from scratch in the hermes style, for the conformance tests.

`CleanGateway` is a small, careful design: an owner map, release by identity
in a `finally` with no await, a heal for dead owners, follow-ups merged into
one pending event and handed on to a fresh task.  Each subclass below adds
one deliberate bug of a kind seen in real gateways; `sessionguard conform`
must find each one, with a schedule that replays it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

COMMANDS = ("stop", "new", "reset", "approve")


@dataclass
class _Event:
    text: str
    source: Any
    message_type: str = "text"
    media_urls: list[str] = field(default_factory=list)


class CleanGateway:
    def __init__(self) -> None:
        self._active_sessions: dict[str, asyncio.Event] = {}
        self._session_tasks: dict[str, asyncio.Task[None]] = {}
        self._pending_messages: dict[str, Any] = {}
        self._message_handler: Any = None

    def set_message_handler(self, handler: Any) -> None:
        self._message_handler = handler

    async def send(self, chat_id: str, content: str) -> None:
        raise NotImplementedError

    async def stop_typing(self, chat_id: str) -> None:
        return None

    def shutdown(self) -> None:
        for task in self._session_tasks.values():
            task.cancel()
        self._active_sessions.clear()
        self._session_tasks.clear()
        self._pending_messages.clear()

    @staticmethod
    def _key(event: Any) -> str:
        return f"gw:{event.source.chat_id}"

    async def handle_message(self, event: Any) -> None:
        key = self._key(event)
        owner = self._session_tasks.get(key)
        if key in self._active_sessions and owner is not None and owner.done():
            self._heal(key)
        if key in self._active_sessions:
            if event.is_command():
                reply = await self._message_handler(event)
                await self.send(event.source.chat_id, reply or "")
                return
            self._queue(key, event)
            return
        self._start(key, event)

    def _heal(self, key: str) -> None:
        self._active_sessions.pop(key, None)
        self._session_tasks.pop(key, None)
        pending = self._pending_messages.pop(key, None)
        if pending is not None:
            self._start(key, pending)

    def _queue(self, key: str, event: Any) -> None:
        old = self._pending_messages.get(key)
        if old is None:
            self._pending_messages[key] = _Event(event.text, event.source, event.message_type, list(event.media_urls))
        else:
            old.text += "\n" + event.text
            old.media_urls.extend(event.media_urls)
        if event.message_type != "photo":
            self._active_sessions[key].set()

    def _start(self, key: str, event: Any) -> None:
        guard = asyncio.Event()
        self._active_sessions[key] = guard
        task = asyncio.get_running_loop().create_task(self._process(key, event))
        self._session_tasks[key] = task
        # A done-callback, not a finally: a task cancelled before its first
        # step never runs its finally, but its done-callbacks always run.
        task.add_done_callback(lambda t: self._finished(key, guard, t))

    async def _process(self, key: str, event: Any) -> None:
        try:
            reply = await self._message_handler(event)
            if reply:
                await self.send(event.source.chat_id, reply)
        except Exception:
            pass
        finally:
            try:
                await self.stop_typing(event.source.chat_id)
            except Exception:
                pass

    def _finished(self, key: str, guard: asyncio.Event, task: asyncio.Task[None]) -> None:
        """No await in here: handing on and releasing happen in one step."""
        if self._session_tasks.get(key) is not task:
            return
        pending = self._pending_messages.pop(key, None)
        if pending is not None:
            self._start(key, pending)
        else:
            del self._session_tasks[key]
            if self._active_sessions.get(key) is guard:
                del self._active_sessions[key]


class UnguardedRelease(CleanGateway):
    """Bug: the end of a task always drops the session's guard, even one it just handed on."""

    def _finished(self, key: str, guard: asyncio.Event, task: asyncio.Task[None]) -> None:
        super()._finished(key, guard, task)
        self._active_sessions.pop(key, None)


class DroppedPending(CleanGateway):
    """Bug: a cancelled task throws the waiting follow-up away instead of handing it on."""

    def _finished(self, key: str, guard: asyncio.Event, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._pending_messages.pop(key, None)
        super()._finished(key, guard, task)


class TwoWorkers(CleanGateway):
    """Bug: a text follow-up starts its own task instead of waiting for the running one."""

    def _queue(self, key: str, event: Any) -> None:
        if event.message_type == "photo":
            super()._queue(key, event)
        else:
            self._session_tasks[key] = asyncio.get_running_loop().create_task(self._process(key, event))


class DyingTaskLeavesGuard(CleanGateway):
    """Bug: the task releases its guard itself, after the cleanup await and outside
    any finally, having forgotten its owner record first: a cleanup that raises
    leaves the guard behind, owned by no one."""

    def _start(self, key: str, event: Any) -> None:
        guard = asyncio.Event()
        self._active_sessions[key] = guard
        self._session_tasks[key] = asyncio.get_running_loop().create_task(self._run(key, event, guard))

    async def _run(self, key: str, event: Any, guard: asyncio.Event) -> None:
        try:
            reply = await self._message_handler(event)
            if reply:
                await self.send(event.source.chat_id, reply)
        except Exception:
            pass
        self._session_tasks.pop(key, None)
        await self.stop_typing(event.source.chat_id)
        if self._active_sessions.get(key) is guard:
            del self._active_sessions[key]
        pending = self._pending_messages.pop(key, None)
        if pending is not None:
            self._start(key, pending)
