"""The object-source interface: where proxy, dns, trace and controllers get Kubernetes objects.

Two implementations satisfy it: ``InformerSource`` (client/informer.py: list + watch against an
API server) and ``FileSource`` (client/filesource.py: objects read from ``-f`` files). Consumers
are written against ``ObjectSource`` only, so they do not care where objects come from.

Usage::

    source.add_indexer("endpointslices", INDEX_SERVICE, endpointslice_service_index)
    source.add_handler("services", on_add=..., on_update=..., on_delete=...)
    await source.start()
    await source.wait_synced()
    services = source.store("services").list()
    ...
    await source.stop()

Resources are named by a ``svcnet.api.resources.Resource`` or by a string: the plural
("services"), a short name ("svc"), the kind ("Service") or the singular ("service").

Handlers: ``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``; each may be a plain
function or a coroutine function. They run one at a time, in the order events happen, after the
store already reflects the event. A handler that raises is logged and does not stop delivery.
A handler added after the source has synced is first given ``on_add`` for every object already
in the store (as client-go does for a late AddEventHandler).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from svcnet.api.resources import RESOURCES, Resource
from svcnet.client.cache import IndexFunc, Obj, ObjectCache

log = logging.getLogger(__name__)

AddHandler = Callable[[Obj], Awaitable[None] | None]
UpdateHandler = Callable[[Obj, Obj], Awaitable[None] | None]
DeleteHandler = Callable[[Obj], Awaitable[None] | None]
ResourceRef = Resource | str


@runtime_checkable
class Cache(Protocol):
    """The read-only view of one resource's objects (ObjectCache implements it)."""

    def list(self, namespace: str | None = None) -> list[Obj]: ...

    def get(self, namespace: str | None, name: str) -> Obj | None: ...

    def by_index(self, index_name: str, value: str) -> list[Obj]: ...


@runtime_checkable
class ObjectSource(Protocol):
    async def start(self) -> None:
        """Begin loading objects (returns without waiting for the first full load)."""

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every resource's store holds a complete first load and the initial
        on_add handlers ran; False if ``timeout`` passed first."""

    def has_synced(self) -> bool: ...

    async def stop(self) -> None:
        """Stop watching; stores keep their last content."""

    def store(self, resource: ResourceRef) -> Cache: ...

    def add_handler(
        self,
        resource: ResourceRef,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None: ...

    def add_indexer(self, resource: ResourceRef, name: str, fn: IndexFunc) -> None: ...


def resolve_resource(ref: ResourceRef) -> Resource:
    """A Resource from itself, its plural, singular, kind or short name (case-insensitive)."""
    if isinstance(ref, Resource):
        return ref
    wanted = ref.lower()
    for r in RESOURCES:
        if wanted in (r.plural, r.singular, r.kind.lower()) or wanted in r.short_names:
            return r
    raise KeyError(f"unknown resource {ref!r}")


@dataclass
class _Handler:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event handler %r failed", fn)


class HandlerSet:
    """The handlers of one resource, called in registration order."""

    def __init__(self) -> None:
        self._handlers: list[_Handler] = []

    def __bool__(self) -> bool:
        return bool(self._handlers)

    def add(self, on_add: AddHandler | None, on_update: UpdateHandler | None,
            on_delete: DeleteHandler | None) -> _Handler:
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        return handler

    async def added(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                await _call(h.on_add, obj)

    async def updated(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                await _call(h.on_update, old, new)

    async def deleted(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                await _call(h.on_delete, obj)


async def replay_adds(handler: _Handler, cache: ObjectCache, lock: asyncio.Lock) -> None:
    """Give a late handler on_add for what the store already holds, without racing new events."""
    if handler.on_add is None:
        return
    async with lock:
        for obj in cache.list():
            await _call(handler.on_add, obj)
