"""The binding: how the conformance harness drives an adapter it did not write.

The harness owns the world around the adapter: the runner (the agent back
end), the platform's send and cleanup hooks, and the inbound messages.  A
binding connects that world to one adapter class, in four moves:

* `build(target, world)`: make an adapter whose runner and sender are the
  world's (`world.run`, `world.send`, `world.cleanup`);
* `deliver(adapter, inbound)`: hand one inbound message to the adapter
  (a coroutine: the platform's ``await adapter.handle_message(event)``);
* `view(adapter, key)`: read the adapter's guard, owner and pending slot for
  one session, as objects (guards are compared by identity);
* `shutdown(adapter)`: stop it (may return an awaitable).

The world and the binding speak about messages through *tokens*: every
inbound message's text carries ``[sg:N]``, and the harness finds out which
messages an object holds (a pending event, possibly merged; an event the
runner is given; a reply text) by reading the tokens in it.  So a binding
never needs to understand the adapter's event type; it only has to put the
text where the adapter reads it.  `world.messages_in(obj)` does the reading.

`HermesBinding` is ready-made for adapters shaped like SPEC section 2 (an
async ``handle_message(event)``, an injected async message handler,
per-session dicts of guards, owner tasks and pending events), configured by
attribute and method names.  A binding of your own is a class with the four
methods; `docs/conform.md` shows one end to end.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessionguard.model.vocabulary import BYPASS, PHOTO

TOKEN = re.compile(r"\[sg:(\d+)\]")


class BindingError(Exception):
    """The binding could not do what the harness asked (a message for the user)."""


@dataclass(frozen=True)
class Inbound:
    """One inbound chat message, as the platform delivers it."""

    serial: int  # the harness's number for it; its token is [sg:serial]
    kind: str  # text, photo, /stop, /new, /reset, /approve
    key: int  # the session (chat) it belongs to

    @property
    def token(self) -> str:
        return f"[sg:{self.serial}]"

    @property
    def text(self) -> str:
        """What the user typed: the command itself, or a text naming the message."""
        if self.kind in BYPASS:
            return f"{self.kind} {self.token}"
        if self.kind == PHOTO:
            return f"(photo) {self.token}"
        return f"hello {self.token}"

    @property
    def chat_id(self) -> str:
        return chat_id(self.key)


def chat_id(key: int) -> str:
    """The platform's chat id for session `key` (adapters derive their session key from it)."""
    return f"chat{key}"


CHAT = re.compile(r"chat(\d+)(?!\d)")


class World(Protocol):
    """What the harness gives a binding: the runner, the platform, the token reader."""

    def run(self, key: int, event: object) -> Awaitable[str]:
        """The runner: the agent's reply text for `event` (may raise, or never return)."""
        ...

    def send(self, key: int, text: str) -> Awaitable[None]:
        """The platform's send (may raise, or never return)."""
        ...

    def cleanup(self, key: int) -> Awaitable[None]:
        """The platform's stop-typing call and cleanup hooks (may raise, be cancelled, hang)."""
        ...

    def messages_in(self, obj: object) -> tuple[int, ...]:
        """The serials of the inbound messages whose tokens `obj` carries, in order."""
        ...


@dataclass(frozen=True)
class SessionView:
    """One session as the adapter holds it: G[k], O[k], P[k] (None when absent)."""

    guard: object | None
    owner: object | None
    pending: object | None


class Binding(Protocol):
    """The interface through which the harness drives an adapter (see the module docstring)."""

    def build(self, target: Any, world: World) -> Any: ...

    def deliver(self, adapter: Any, inbound: Inbound) -> Awaitable[None]: ...

    def view(self, adapter: Any, key: int) -> SessionView: ...

    def shutdown(self, adapter: Any) -> object: ...


# --- duck-typed inbound events -----------------------------------------------------


@dataclass
class Source:
    """Where a message came from (the fields a gateway derives its session key from)."""

    chat_id: str
    user_id: str = "user"
    thread_id: str | None = None
    platform: str = "sessionguard"
    chat_type: str = "dm"


@dataclass
class InboundEvent:
    """A duck-typed inbound event: the attribute and method names of SPEC's gateway.

    ``message_type`` is a plain string ("text", "photo", "command"); an
    adapter that compares it with its own enum can be given its own events
    through `HermesBinding(event_factory=...)`.
    """

    text: str
    message_type: str
    source: Source
    message_id: str
    media_urls: list[str] = field(default_factory=list)
    kind: str = "text"

    def is_command(self) -> bool:
        return self.text.startswith("/")

    def get_command(self) -> str | None:
        if not self.is_command():
            return None
        return self.text.split()[0][1:].lower()

    @property
    def chat_id(self) -> str:
        return self.source.chat_id


def inbound_event(inbound: Inbound) -> InboundEvent:
    kind = inbound.kind
    return InboundEvent(
        text=inbound.text,
        message_type="command" if kind in BYPASS else kind,
        source=Source(inbound.chat_id),
        message_id=str(inbound.serial),
        media_urls=[f"sg://photo/{inbound.token}"] if kind == PHOTO else [],
        kind=kind,
    )


# --- the ready binding for hermes-style adapters -----------------------------------


@dataclass
class HermesBinding:
    """A binding for adapters shaped like SPEC section 2, configured by names.

    Defaults are SPEC's names: guards ``_active_sessions``, owners
    ``_session_tasks`` (None: the adapter keeps no owner map), pending
    ``_pending_messages``; the adapter is built by calling the target with no
    arguments, its message handler installed with ``set_message_handler``
    (or, if it has none, assigned to ``_message_handler``), its ``send`` and
    cleanup hooks (``stop_typing``) replaced on the instance by the world's.
    The handler gets the adapter's event and returns the reply text; ``send``
    is called as ``send(chat_id, content, ...)``.

    Session keys: the adapter's dicts are keyed by whatever it derives from an
    event; the binding finds session k's entry as the key whose text names the
    chat ``chat<k>`` (as the default events' ``source.chat_id`` does), or with
    `key_of(adapter, k)` when given.
    """

    guards: str = "_active_sessions"
    owners: str | None = "_session_tasks"
    pending: str = "_pending_messages"
    handle: str = "handle_message"
    set_handler: str = "set_message_handler"
    handler_attribute: str = "_message_handler"
    send: str = "send"
    hooks: tuple[str, ...] = ("stop_typing",)
    shutdown_methods: tuple[str, ...] = ("shutdown", "disconnect", "cancel_background_tasks")
    event_factory: Callable[[Inbound], object] = inbound_event
    key_of: Callable[[Any, int], Hashable] | None = None

    def build(self, target: Any, world: World) -> Any:
        try:
            adapter = target()
        except Exception as exc:
            raise BindingError(f"building the adapter failed: {type(exc).__name__}: {exc}") from exc

        async def handler(event: object) -> str:
            return await world.run(_key_in(event), event)

        async def send(chat: object, content: object = "", *args: Any, **kwargs: Any) -> object:
            await world.send(_key_in(chat), str(content))
            return None

        def hook(name: str) -> Callable[..., Awaitable[None]]:
            async def cleanup(chat: object = None, *args: Any, **kwargs: Any) -> None:
                await world.cleanup(_key_in(chat))

            cleanup.__name__ = name
            return cleanup

        setter = getattr(adapter, self.set_handler, None)
        if callable(setter):
            setter(handler)
        else:
            setattr(adapter, self.handler_attribute, handler)
        setattr(adapter, self.send, send)
        for name in self.hooks:
            if callable(getattr(adapter, name, None)):
                setattr(adapter, name, hook(name))
        for name in (self.guards, self.pending, *((self.owners,) if self.owners else ())):
            if not isinstance(getattr(adapter, name, None), dict):
                raise BindingError(
                    f"the adapter has no dict attribute {name!r}: name its guard, owner and "
                    f"pending dicts with the binding's options (guards=, owners=, pending=)"
                )
        if not callable(getattr(adapter, self.handle, None)):
            raise BindingError(f"the adapter has no method {self.handle!r}: set the binding's handle= option")
        return adapter

    def deliver(self, adapter: Any, inbound: Inbound) -> Awaitable[None]:
        result = getattr(adapter, self.handle)(self.event_factory(inbound))
        if not inspect.isawaitable(result):
            raise BindingError(f"{self.handle}() did not return an awaitable: is it an async def?")
        return result

    def view(self, adapter: Any, key: int) -> SessionView:
        def entry(attribute: str | None) -> object | None:
            if attribute is None:
                return None
            table = getattr(adapter, attribute)
            if not isinstance(table, dict):
                raise BindingError(f"adapter.{attribute} is no longer a dict but a {type(table).__name__}")
            if self.key_of is not None:
                found: object | None = table.get(self.key_of(adapter, key))
                return found
            value: object | None = None
            for k, v in list(table.items()):
                if _chat_key(k) == key:
                    value = v
                    break
            return value

        return SessionView(entry(self.guards), entry(self.owners), entry(self.pending))

    def shutdown(self, adapter: Any) -> object:
        for name in self.shutdown_methods:
            method = getattr(adapter, name, None)
            if callable(method):
                return method()
        raise BindingError(
            f"the adapter has none of the shutdown methods {', '.join(self.shutdown_methods)}: "
            f"set the binding's shutdown_methods= option"
        )


def _chat_key(obj: object) -> int | None:
    found = CHAT.search(str(obj))
    return int(found.group(1)) if found else None


def _key_in(obj: object) -> int:
    """Session k of an event, a chat id or a session key (read from the chat id in it)."""
    for candidate in (obj, getattr(obj, "source", None), getattr(obj, "chat_id", None)):
        if candidate is None:
            continue
        text = candidate if isinstance(candidate, str) else getattr(candidate, "chat_id", None)
        if isinstance(text, str):
            k = _chat_key(text)
            if k is not None:
                return k
    k = _chat_key(repr(obj))
    if k is None:
        raise BindingError(f"cannot tell which chat {obj!r} belongs to: pass key_of= to the binding")
    return k


# --- naming a binding on the command line ------------------------------------------

BINDINGS: dict[str, Callable[[], Binding]] = {"hermes": HermesBinding}


def load_binding(spec: str) -> Binding:
    """A binding by name (``hermes``) or by ``module:attribute`` (a Binding, or a class/factory of one)."""
    if spec in BINDINGS:
        return BINDINGS[spec]()
    obj = load_object(spec, what="binding")
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "view")):
        try:
            obj = obj()
        except Exception as exc:
            raise BindingError(f"binding {spec!r}: calling it to make the binding failed: {exc}") from None
    missing = [m for m in ("build", "deliver", "view", "shutdown") if not callable(getattr(obj, m, None))]
    if missing:
        raise BindingError(
            f"binding {spec!r} lacks {', '.join(missing)}: a binding has build, deliver, view and "
            f"shutdown (see docs/conform.md), or name a ready one: {', '.join(BINDINGS)}"
        )
    return obj  # type: ignore[no-any-return]


def load_object(spec: str, *, what: str) -> Any:
    """``package.module:attribute.path`` -> the object, with one-line errors."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise BindingError(f"{what} {spec!r} is not of the form module:attribute (e.g. mygateway.adapters:TelegramAdapter)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the project's own modules import
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of the user's code
        raise BindingError(f"cannot import {module_name!r} for the {what}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BindingError(f"module {module_name!r} has no attribute {attribute!r} (the {what})") from None
    return obj
