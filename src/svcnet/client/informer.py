"""Informers: a local, indexed copy of one resource kept current by list + watch.

This is client-go's reflector + indexer + shared informer in one class:

1. list the collection (following ``continue``), fill the cache, call on_add for each object;
2. watch from the list's resourceVersion with allowWatchBookmarks and a random timeoutSeconds
   in [min_watch_timeout, 2 * min_watch_timeout) so that watches do not all end together; when
   the server ends the stream, watch again from the last resourceVersion seen;
3. on 410 (an ERROR event or an HTTP 410 reply: the resourceVersion left the server's history
   window) list again and deliver the difference from the cache as add/update/delete;
4. on connection errors wait (exponential, jittered, capped) and retry until stopped;
5. every ``resync_period`` seconds call on_update(obj, obj) for every cached object, so
   level-driven consumers get a periodic chance to repair what they may have missed.

``InformerSource`` bundles informers over one ApiClient as an ObjectSource (client/source.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from svcnet.api.resources import Resource
from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import IndexFunc, Obj, ObjectCache, object_key
from svcnet.client.source import (
    AddHandler,
    DeleteHandler,
    HandlerSet,
    ResourceRef,
    UpdateHandler,
    replay_adds,
    resolve_resource,
)

log = logging.getLogger(__name__)

# Errors after which the informer backs off and retries (the server or network misbehaved).
RETRYABLE = (aiohttp.ClientError, TimeoutError, OSError, ConnectionError)


class _Expired(Exception):
    """The watch's resourceVersion is gone from the server's history: relist."""


def _rv(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or ""


class Backoff:
    """Exponential back-off with full jitter, capped; reset after a success."""

    def __init__(self, initial: float = 0.2, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2 ** self.failures))
        self.failures += 1
        # Full jitter in [ceiling/2, ceiling): many clients of a restarted server do not return
        # in lockstep, yet none retries much earlier than the schedule says.
        return ceiling / 2 + random.random() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0


class Informer:
    """A cache of one resource kept in sync with the API server; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        resource: ResourceRef,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        *,
        page_size: int = 500,
        min_watch_timeout: int = 300,
        backoff_initial: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        self.client = client
        self.resource: Resource = resolve_resource(resource)
        self.namespace = namespace if self.resource.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.cache = ObjectCache()
        self.handlers = HandlerSet()
        self.last_sync_resource_version = ""
        self.lists = 0  # how many times the collection was (re)listed; useful in tests and metrics
        self._backoff = Backoff(backoff_initial, backoff_cap)
        self._lock = asyncio.Lock()
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._expired_in_row = 0

    def __repr__(self) -> str:
        return f"Informer({self.resource.plural}, namespace={self.namespace!r})"

    # -- registration ----------------------------------------------------------------------------

    def add_handler(self, on_add: AddHandler | None = None, on_update: UpdateHandler | None = None,
                    on_delete: DeleteHandler | None = None) -> None:
        handler = self.handlers.add(on_add, on_update, on_delete)
        if self._synced.is_set():
            self._spawn(replay_adds(handler, self.cache, self._lock))

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.cache.add_indexer(name, fn)

    @property
    def store(self) -> ObjectCache:
        return self.cache

    # -- lifecycle -------------------------------------------------------------------------------

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Start list+watch in the background (returns at once; see wait_synced)."""
        if self._tasks:
            return
        self._stopping = False
        self._tasks.append(asyncio.get_running_loop().create_task(self._run(), name=repr(self)))
        if self.resync_period:
            self._tasks.append(asyncio.get_running_loop().create_task(self._resync_loop()))

    async def stop(self) -> None:
        self._stopping = True
        tasks = self._tasks + list(self._side_tasks)
        self._tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- the reflector ---------------------------------------------------------------------------

    async def _run(self) -> None:
        need_list = True
        while not self._stopping:
            try:
                if need_list:
                    await self._list_and_sync()
                    need_list = False
                    self._backoff.reset()
                ended_quietly = await self._watch()
                if ended_quietly:
                    # The stream ended at once with nothing in it: do not hammer the server.
                    await asyncio.sleep(self._backoff.next_delay())
            except _Expired:
                log.info("%s: resourceVersion %s expired; relisting", self, self.last_sync_resource_version)
                need_list = True
                self._expired_in_row += 1
                if self._expired_in_row > 1:
                    # A fresh list's resourceVersion expired again before any event: a server
                    # in trouble; relisting in a tight loop would only add to it.
                    await asyncio.sleep(self._backoff.next_delay())
            except ApiError as e:
                if e.code == 410 and not need_list:
                    # The watch's resourceVersion is gone: relist at once. (A 410 from the list
                    # itself, say an expired continue token, is retried after a back-off below
                    # so that a misbehaving server is not hammered.)
                    log.info("%s: %s; relisting", self, e)
                    need_list = True
                    continue
                delay = self._backoff.next_delay()
                log.warning("%s: %s; retrying in %.1fs", self, e, delay)
                need_list = True
                await asyncio.sleep(delay)
            except RETRYABLE as e:
                delay = self._backoff.next_delay()
                log.warning("%s: connection problem (%s: %s); retrying in %.1fs",
                            self, type(e).__name__, e, delay)
                need_list = need_list or not self.last_sync_resource_version
                await asyncio.sleep(delay)
            except Exception:
                # A bug or a reply we cannot make sense of must not end the informer for good.
                delay = self._backoff.next_delay()
                log.exception("%s: unexpected failure; relisting in %.1fs", self, delay)
                need_list = True
                await asyncio.sleep(delay)

    async def _list_and_sync(self) -> None:
        listing = await self.client.list_all(
            self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size,
        )
        self.lists += 1
        items = listing.get("items") or []
        for item in items:
            # Items of a list carry no kind/apiVersion; handlers get whole objects.
            item.setdefault("apiVersion", self.resource.api_version)
            item.setdefault("kind", self.resource.kind)
        async with self._lock:
            fresh = {object_key(o): o for o in items}
            for obj in fresh.values():
                old = self.cache.upsert(obj)
                if old is None:
                    await self.handlers.added(obj)
                elif _rv(old) != _rv(obj):
                    await self.handlers.updated(old, obj)
            for key in self.cache:
                if key not in fresh:
                    gone = self.cache.get_by_key(key)
                    if gone is not None:
                        self.cache.remove(gone)
                        await self.handlers.deleted(gone)
            self.last_sync_resource_version = (listing.get("metadata") or {}).get("resourceVersion") or ""
        self._synced.set()

    async def _watch(self) -> bool:
        """One watch until the server ends it; True if it ended at once with no event."""
        timeout = random.randint(self.min_watch_timeout, 2 * self.min_watch_timeout - 1) \
            if self.min_watch_timeout > 1 else self.min_watch_timeout
        events = 0
        stream = self.client.watch(
            self.resource, self.namespace, resource_version=self.last_sync_resource_version or None,
            label_selector=self.label_selector, field_selector=self.field_selector,
            timeout_seconds=timeout, allow_watch_bookmarks=True,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with contextlib.aclosing(stream):
            async for kind, obj in stream:
                events += 1
                await self._apply(kind, obj)
                self._backoff.reset()
                self._expired_in_row = 0
        return events == 0 and loop.time() - started < 1.0

    async def _apply(self, kind: str, obj: Obj) -> None:
        if kind == "ERROR":
            if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                raise _Expired()
            raise ApiError(obj)
        if kind == "BOOKMARK":
            if _rv(obj):
                self.last_sync_resource_version = _rv(obj)
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            log.warning("%s: ignoring watch event of unknown type %r", self, kind)
            return
        if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
            log.warning("%s: ignoring %s event without metadata.name", self, kind)
            return
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        async with self._lock:
            if kind == "DELETED":
                self.cache.remove(obj)
                if _rv(obj):
                    self.last_sync_resource_version = _rv(obj)
                # The event's object is the final state; deliver it even if never cached.
                await self.handlers.deleted(obj)
                return
            old = self.cache.upsert(obj)
            self.last_sync_resource_version = _rv(obj) or self.last_sync_resource_version
            if old is None:
                await self.handlers.added(obj)
            else:
                await self.handlers.updated(old, obj)

    async def _resync_loop(self) -> None:
        assert self.resync_period
        await self._synced.wait()
        while not self._stopping:
            await asyncio.sleep(self.resync_period)
            async with self._lock:
                for obj in self.cache.list():
                    await self.handlers.updated(obj, obj)


class InformerSource:
    """An ObjectSource over informers that share one ApiClient.

    Informers are made on first mention of a resource (store, add_handler, add_indexer or
    ``watch``); ``watch`` also sets a resource's namespace and selectors. With
    ``owns_client`` (as from_kubeconfig sets it) stop() closes the client too.
    """

    def __init__(self, client: ApiClient, resources: Sequence[ResourceRef] = (), *,
                 namespace: str | None = None, resync_period: float | None = None,
                 owns_client: bool = False, **informer_options: Any) -> None:
        self.client = client
        self.namespace = namespace
        self.resync_period = resync_period
        self.owns_client = owns_client
        self._options = informer_options
        self._informers: dict[Resource, Informer] = {}
        self._started = False
        self._starting: set[asyncio.Task[None]] = set()
        for r in resources:
            self.informer(r)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, resources: Sequence[ResourceRef] = (),
                        context: str | None = None, **kwargs: Any) -> InformerSource:
        return cls(ApiClient.from_kubeconfig(path, context), resources, owns_client=True, **kwargs)

    def watch(self, resource: ResourceRef, *, namespace: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None) -> Informer:
        """Declare a resource with its own namespace/selectors (before it is first used)."""
        r = resolve_resource(resource)
        if r in self._informers:
            raise ValueError(f"{r.plural} is already being watched")
        return self._make(r, namespace or self.namespace, label_selector, field_selector)

    def informer(self, resource: ResourceRef) -> Informer:
        r = resolve_resource(resource)
        return self._informers.get(r) or self._make(r, self.namespace, None, None)

    def _make(self, r: Resource, namespace: str | None, label_selector: str | None,
              field_selector: str | None) -> Informer:
        inf = Informer(self.client, r, namespace, label_selector, field_selector, self.resync_period,
                       **self._options)
        self._informers[r] = inf
        if self._started:
            # A resource first mentioned after start() joins at once.
            task = asyncio.get_running_loop().create_task(inf.start())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        return inf

    async def start(self) -> None:
        self._started = True
        for inf in list(self._informers.values()):
            await inf.start()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                for inf in list(self._informers.values()):
                    await inf.wait_synced()
        except TimeoutError:
            return False
        return True

    def has_synced(self) -> bool:
        return all(inf.has_synced() for inf in self._informers.values())

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
        if self.owns_client:
            await self.client.close()

    def store(self, resource: ResourceRef) -> ObjectCache:
        return self.informer(resource).cache

    def add_handler(self, resource: ResourceRef, on_add: AddHandler | None = None,
                    on_update: UpdateHandler | None = None, on_delete: DeleteHandler | None = None) -> None:
        self.informer(resource).add_handler(on_add, on_update, on_delete)

    def add_indexer(self, resource: ResourceRef, name: str, fn: IndexFunc) -> None:
        self.informer(resource).add_indexer(name, fn)

    async def __aenter__(self) -> InformerSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
