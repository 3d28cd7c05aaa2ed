"""A binding of one's own: an adapter that is not hermes-shaped (see docs/conform.md)."""

import asyncio

from sessionguard.conform.binding import Inbound, SessionView, World


class ChatRouter:
    """A gateway of another shape: built with its agent and transport, one call per message."""

    def __init__(self, agent, transport):
        self.agent, self.transport = agent, transport
        self.locks: dict[str, asyncio.Event] = {}  # the guard of each chat
        self.workers: dict[str, asyncio.Task] = {}  # the owner
        self.waiting: dict[str, list[str]] = {}  # follow-ups, in order

    async def on_message(self, chat: str, text: str) -> None:
        if chat in self.locks:
            self.waiting.setdefault(chat, []).append(text)
            return
        self.locks[chat] = lock = asyncio.Event()
        self.workers[chat] = task = asyncio.create_task(self._work(chat, text))
        task.add_done_callback(lambda t: self._done(chat, lock, t))

    async def _work(self, chat: str, text: str) -> None:
        try:
            await self.transport(chat, await self.agent(chat, text))
        except Exception:
            pass

    def _done(self, chat: str, lock: asyncio.Event, task: asyncio.Task) -> None:
        if self.workers.get(chat) is not task:
            return
        del self.workers[chat]
        if self.locks.get(chat) is lock:
            del self.locks[chat]
        waiting = self.waiting.pop(chat, None)
        if waiting:
            asyncio.get_running_loop().create_task(self.on_message(chat, "\n".join(waiting)))

    def close(self) -> None:
        for task in self.workers.values():
            task.cancel()
        self.locks.clear(), self.workers.clear(), self.waiting.clear()


class RouterBinding:
    """build, deliver, view, shutdown: all the harness needs."""

    def build(self, target, world: World):
        async def agent(chat, text):
            return await world.run(int(chat.removeprefix("chat")), text)

        async def transport(chat, reply):
            await world.send(int(chat.removeprefix("chat")), reply)

        return target(agent, transport)

    def deliver(self, adapter, inbound: Inbound):
        return adapter.on_message(inbound.chat_id, inbound.text)

    def view(self, adapter, key: int) -> SessionView:
        chat = f"chat{key}"
        waiting = adapter.waiting.get(chat)
        return SessionView(adapter.locks.get(chat), adapter.workers.get(chat), " ".join(waiting) if waiting else None)

    def shutdown(self, adapter):
        return adapter.close()
