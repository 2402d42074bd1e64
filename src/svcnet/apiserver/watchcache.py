"""The watch cache: one store watch over the whole key space keeps, per resource, the current
objects (decoded and pre-encoded) and a window of recent events. Lists at the current revision
and every watch are served from here, as kube-apiserver's cacher serves them; the database is
never polled.

Objects held here are shared between requests and must never be mutated.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from svcnet.api import resources
from svcnet.api.resources import Resource
from svcnet.store.interface import Event, KeyValue, Store

log = logging.getLogger("svcnet.apiserver.watchcache")

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(slots=True)
class Entry:
    key: str
    obj: dict[str, Any]  # with metadata.resourceVersion set; shared, read-only
    raw: bytes  # orjson encoding of obj
    rev: int


def decode_kv(kv: KeyValue, rev: int | None = None) -> Entry:
    """An Entry from a stored value: the store keeps objects without resourceVersion."""
    obj = orjson.loads(kv.value)
    revision = kv.mod_revision if rev is None else rev
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = obj["metadata"] = {}
    metadata["resourceVersion"] = str(revision)
    return Entry(kv.key, obj, orjson.dumps(obj), revision)


def with_revision(entry: Entry, rev: int) -> Entry:
    obj = dict(entry.obj)
    obj["metadata"] = {**entry.obj.get("metadata", {}), "resourceVersion": str(rev)}
    return Entry(entry.key, obj, orjson.dumps(obj), rev)


@dataclass(slots=True)
class CacheEvent:
    rev: int
    type: str
    entry: Entry  # the new state; for DELETED the last state carrying the deletion revision
    prev: Entry | None
    _lines: dict[str, bytes] = field(default_factory=dict)
    _prev_at_rev: Entry | None = None

    def line(self, kind: str) -> bytes:
        """One watch frame (compact JSON + newline) of this event sent as ``kind``."""
        cached = self._lines.get(kind)
        if cached is None:
            if kind == DELETED and self.type != DELETED:
                # Stopped matching a selector: the old object at this event's revision.
                if self._prev_at_rev is None:
                    assert self.prev is not None
                    self._prev_at_rev = with_revision(self.prev, self.rev)
                raw = self._prev_at_rev.raw
            else:
                raw = self.entry.raw
            cached = self._lines[kind] = b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"
        return cached


Predicate = Callable[[dict[str, Any]], bool]


class Watcher:
    """One client's subscription. The dispatcher pushes frames synchronously; the HTTP
    handler drains them."""

    def __init__(
        self, cache: ResourceCache, namespace: str | None, predicate: Predicate | None, queue_limit: int
    ) -> None:
        self.cache = cache
        self.prefix = cache.resource.prefix(namespace) if namespace else None
        self.predicate = predicate
        self.queue_limit = queue_limit
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.overflowed = False

    def matches_key(self, key: str) -> bool:
        return self.prefix is None or key.startswith(self.prefix)

    def offer(self, ev: CacheEvent) -> None:
        if self.closed or not self.matches_key(ev.entry.key):
            return
        pred = self.predicate
        if pred is None:
            self.push(ev.line(ev.type))
            return
        if ev.type == DELETED:
            if pred(ev.entry.obj):
                self.push(ev.line(DELETED))
            return
        now = pred(ev.entry.obj)
        before = ev.prev is not None and pred(ev.prev.obj)
        if now and before:
            self.push(ev.line(MODIFIED))
        elif now:
            self.push(ev.line(ADDED))
        elif before:
            self.push(ev.line(DELETED))

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        if len(self.frames) > self.queue_limit:
            # A consumer this far behind would hold memory without bound: end its watch so
            # it re-watches (or relists), as the upstream cacher does with slow watchers.
            self.overflowed = True
            self.close()
        self.wakeup.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cache.watchers.discard(self)
            self.wakeup.set()

    def drain(self) -> list[bytes]:
        frames = list(self.frames)
        self.frames.clear()
        self.wakeup.clear()
        return frames


class ResourceCache:
    def __init__(self, resource: Resource, window: int) -> None:
        self.resource = resource
        self.items: dict[str, Entry] = {}
        self._sorted: list[str] | None = None
        self.events: deque[CacheEvent] = deque()
        self.window = window
        self.window_start = 0  # every event with rev > window_start is in ``events``
        self.last_change = 0  # revision of this resource's newest event
        self.watchers: set[Watcher] = set()
        # ownerReferences uid -> keys of the objects naming it (cascading deletion).
        self.dependents: dict[str, set[str]] = {}

    def _index(self, entry: Entry, add: bool) -> None:
        refs = (entry.obj.get("metadata") or {}).get("ownerReferences")
        if not isinstance(refs, list):
            return
        for ref in refs:
            uid = ref.get("uid") if isinstance(ref, dict) else None
            if not isinstance(uid, str):
                continue
            if add:
                self.dependents.setdefault(uid, set()).add(entry.key)
            else:
                keys = self.dependents.get(uid)
                if keys is not None:
                    keys.discard(entry.key)
                    if not keys:
                        del self.dependents[uid]

    def put_entry(self, entry: Entry) -> Entry | None:
        prev = self.items.get(entry.key)
        if prev is None:
            self._sorted = None
        else:
            self._index(prev, add=False)
        self.items[entry.key] = entry
        self._index(entry, add=True)
        return prev

    def remove_entry(self, key: str) -> Entry | None:
        prev = self.items.pop(key, None)
        if prev is not None:
            self._sorted = None
            self._index(prev, add=False)
        return prev

    def reset(self, revision: int) -> None:
        self.items.clear()
        self.dependents.clear()
        self._sorted = None
        self.events.clear()
        self.window_start = revision
        # Deletions before the load left no trace here, so the loaded state is only known to
        # be the state at ``revision`` itself; older snapshots are read from the store.
        self.last_change = revision

    def sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.items)
        return self._sorted

    def key_range(
        self, namespace: str | None = None, start_after: str | None = None
    ) -> tuple[list[str], int, int]:
        """(sorted keys, lo, hi): keys[lo:hi] are the collection's keys after ``start_after``."""
        keys = self.sorted_keys()
        prefix = self.resource.prefix(namespace)
        lo = bisect.bisect_left(keys, prefix)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # prefixes end with "/": the next string up
        hi = bisect.bisect_left(keys, end, lo)
        if start_after is not None and start_after >= prefix:
            lo = min(bisect.bisect_right(keys, start_after, lo), hi)
        return keys, lo, hi

    def entries(self, namespace: str | None = None, start_after: str | None = None) -> Iterable[Entry]:
        """Current objects in key order, optionally in one namespace and after a key."""
        keys, lo, hi = self.key_range(namespace, start_after)
        items = self.items
        for i in range(lo, hi):
            yield items[keys[i]]

    def apply(self, ev: Event) -> None:
        key = ev.kv.key
        rev = ev.kv.mod_revision
        if ev.type == "DELETE":
            prev = self.remove_entry(key)
            if prev is None:
                return
            entry = with_revision(prev, rev) if ev.prev_kv is None else decode_kv(ev.prev_kv, rev)
            cev = CacheEvent(rev, DELETED, entry, prev)
        else:
            entry = decode_kv(ev.kv)
            prev = self.put_entry(entry)
            cev = CacheEvent(rev, MODIFIED if prev is not None else ADDED, entry, prev)
        self.last_change = rev
        self.events.append(cev)
        if len(self.events) > self.window:
            self.window_start = self.events.popleft().rev
        for watcher in list(self.watchers):
            watcher.offer(cev)

    def events_after(self, rev: int) -> Iterable[CacheEvent]:
        events = self.events
        # Events are in revision order: binary search for the first one newer than ``rev``.
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid].rev <= rev:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, len(events)):
            yield events[i]


class WatchCache:
    def __init__(self, store: Store, window: int = 10_000, queue_limit: int = 50_000) -> None:
        self.store = store
        self.queue_limit = queue_limit
        self.caches = {r: ResourceCache(r, window) for r in resources.RESOURCES}
        self.revision = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def cache(self, resource: Resource) -> ResourceCache:
        return self.caches[resource]

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="svcnet-watchcache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._close_all_watchers()
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def _load(self) -> None:
        rev = await self.store.current_revision()
        result = await self.store.range("", revision=rev)
        for cache in self.caches.values():
            cache.reset(rev)
        for kv in result.kvs:
            resource = resources.by_storage_key(kv.key)
            if resource is None:
                continue
            try:
                entry = decode_kv(kv)
            except (ValueError, TypeError):
                log.error("skipping undecodable object at %s", kv.key)
                continue
            self.caches[resource].put_entry(entry)
        self._set_revision(max(rev, result.revision))

    async def _run(self) -> None:
        while True:
            try:
                async for ev in self.store.watch("", self.revision + 1):
                    resource = resources.by_storage_key(ev.kv.key)
                    if resource is not None:
                        try:
                            self.caches[resource].apply(ev)
                        except (ValueError, TypeError):
                            # Only the API server writes here, so this is a bug or a damaged
                            # value; one bad value must not stop every watch.
                            log.exception("skipping undecodable event for %s", ev.kv.key)
                    if ev.kv.mod_revision > self.revision:
                        self._set_revision(ev.kv.mod_revision)
                log.warning("store watch ended; restarting it")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store watch failed; reloading the watch cache")
                self._close_all_watchers()
                await asyncio.sleep(0.2)
                try:
                    await self._load()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reloading the watch cache failed")
                    await asyncio.sleep(1.0)

    def _close_all_watchers(self) -> None:
        for cache in self.caches.values():
            for watcher in list(cache.watchers):
                watcher.close()

    def _set_revision(self, rev: int) -> None:
        self.revision = rev
        waiters = self._waiters
        while waiters and waiters[0][0] <= rev:
            _, _, fut = heapq.heappop(waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, rev: int, timeout: float) -> bool:
        """True once the cache has applied every event up to ``rev``; False on timeout."""
        if self.revision >= rev:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rev, next(self._seq), fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return self.revision >= rev

    async def sync(self, timeout: float) -> bool:
        """Wait until the cache holds everything committed so far (a consistent read)."""
        return await self.wait_for(await self.store.current_revision(), timeout)

    def subscribe(self, resource: Resource, namespace: str | None, predicate: Predicate | None) -> Watcher:
        cache = self.caches[resource]
        watcher = Watcher(cache, namespace, predicate, self.queue_limit)
        cache.watchers.add(watcher)
        return watcher
