"""The three designs dressed as a hermes-style gateway adapter.

`sessionguard conform` checks adapters it did not write through a binding;
the ready `HermesBinding` expects the shape of SPEC section 2: a class built
with no arguments, an async ``handle_message(event)`` taking the platform's
event, a message handler installed with ``set_message_handler`` (it takes an
event and returns the reply text), an async ``send(chat_id, content)`` and
``stop_typing(chat_id)`` that a platform subclass implements, and the dicts
``_active_sessions``, ``_session_tasks`` and ``_pending_messages``.

The classes here give our adapters exactly that surface and nothing more:
the session guard is the same code (`adapter.py`), so checking
`PrefixGateway`, `SeedGateway` and `ReferenceGateway` with
``sessionguard conform`` treats our own designs as foreign code, which is
how the conformance harness is shown to agree with the model checker.

    sessionguard conform sessionguard.reference.hermes_style:SeedGateway
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .adapter import Adapter, ReferenceAdapter, SeedAdapter
from .fakes import Event, Message, Reply

Handler = Callable[[Any], Awaitable[str | None]]
COMMANDS = ("/stop", "/new", "/reset", "/approve")


@dataclass
class _Source:
    chat_id: str


@dataclass
class _AgentEvent:
    """What the message handler is given: the text of one message, or of merged follow-ups."""

    text: str
    source: _Source


def _kind(event: Any) -> str:
    text = str(getattr(event, "text", ""))
    word = text.split()[0].lower() if text.split() else ""
    if word in COMMANDS:
        return word
    if getattr(event, "message_type", "text") == "photo" or getattr(event, "media_urls", None):
        return "photo"
    return "text"


class _Platform:
    """The adapter's platform side, delegating to the gateway's own send and stop_typing."""

    def __init__(self, gateway: _Gateway) -> None:
        self.gateway = gateway

    async def send(self, reply: Reply) -> None:
        await self.gateway.send(_chat(reply.key), reply.text)

    def busy_ack(self, key: int) -> None:
        return None  # "Interrupting current task..." goes out without an await

    async def stop_typing(self, key: int) -> None:
        await self.gateway.stop_typing(_chat(key))


def _chat(key: object) -> str:
    return str(key).rpartition(":")[2]


class _Gateway(Adapter):
    """SPEC section 2's names over an adapter of ours (use a concrete class below)."""

    def __init__(self) -> None:
        super().__init__(self._agent, _Platform(self))
        self._message_handler: Handler | None = None

    @property
    def _active_sessions(self) -> dict[Any, Any]:
        return self.guards

    @property
    def _session_tasks(self) -> dict[Any, Any]:
        return self.owners

    @property
    def _pending_messages(self) -> dict[Any, Any]:
        return self.pending

    def set_message_handler(self, handler: Handler) -> None:
        self._message_handler = handler

    @staticmethod
    def session_key(event: Any) -> str:
        return f"agent:main:{event.source.chat_id}"

    async def handle_message(self, event: Any) -> None:  # type: ignore[override]
        message = Message(self.session_key(event), _kind(event), str(event.text))  # type: ignore[arg-type]
        await super().handle_message(message)

    async def send(self, chat_id: str, content: str, reply_to: str | None = None) -> None:
        raise NotImplementedError("a platform adapter implements send()")

    async def stop_typing(self, chat_id: str) -> None:
        return None

    async def _agent(self, event: Event) -> Reply:
        if self._message_handler is None:
            raise RuntimeError("no message handler: call set_message_handler() first")
        text = "\n".join(m.name for m in event.messages)
        reply = await self._message_handler(_AgentEvent(text, _Source(_chat(event.key))))
        return Reply(event.key, reply or "", event.messages)


class PrefixGateway(_Gateway):
    """`prefix` (SPEC 3a) with a hermes-style surface."""


class SeedGateway(_Gateway, SeedAdapter):
    """`seed` (SPEC 3b) with a hermes-style surface."""


class ReferenceGateway(_Gateway, ReferenceAdapter):
    """`reference` (SPEC 3c) with a hermes-style surface."""
