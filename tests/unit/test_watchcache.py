"""The watch cache against a real SQLite store: initial load, event application, the event
window, revision waits and selector transitions for watchers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from svcnet.api import resources
from svcnet.apiserver.watchcache import ADDED, DELETED, MODIFIED, WatchCache
from svcnet.store.sqlite import SqliteStore

SERVICES = resources.by_path("", "v1", "services")
PODS = resources.by_path("", "v1", "pods")


def svc(name: str, ns: str = "default", **labels: str) -> bytes:
    meta = {"name": name, "namespace": ns, "labels": labels}
    return orjson.dumps({"apiVersion": "v1", "kind": "Service", "metadata": meta})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    await s.start()
    yield s
    await s.close()


async def started(store: SqliteStore, window: int = 100) -> WatchCache:
    cache = WatchCache(store, window=window)
    await cache.start()
    return cache


async def settle(cache: WatchCache, store: SqliteStore) -> None:
    assert await cache.wait_for(await store.current_revision(), 5)


async def test_initial_load_and_sorted_namespace_views(store: SqliteStore) -> None:
    await store.create(SERVICES.key("b", "two"), svc("two", "b"))
    await store.create(SERVICES.key("a", "one"), svc("one", "a"))
    await store.create(SERVICES.key("a", "zero"), svc("zero", "a"))
    await store.create("/registry/ranges/serviceips", b"not an object")  # no resource: ignored
    cache = await started(store)
    try:
        services = cache.cache(SERVICES)
        assert [e.obj["metadata"]["name"] for e in services.entries()] == ["one", "zero", "two"]
        assert [e.obj["metadata"]["name"] for e in services.entries("a")] == ["one", "zero"]
        assert [e.obj["metadata"]["name"] for e in services.entries("a", SERVICES.key("a", "one"))] == [
            "zero"
        ]
        entry = services.items[SERVICES.key("b", "two")]
        assert entry.obj["metadata"]["resourceVersion"] == str(entry.rev)
        assert json.loads(entry.raw) == entry.obj
        assert cache.revision == await store.current_revision()
    finally:
        await cache.stop()


async def test_events_in_order_with_deletion_revision(store: SqliteStore) -> None:
    cache = await started(store)
    try:
        key = SERVICES.key("default", "s")
        await store.create(key, svc("s", app="a"))
        kv = await store.get(key)
        await store.update(key, svc("s", app="b"), kv.mod_revision)
        deleted = await store.delete(key)
        await settle(cache, store)
        events = list(cache.cache(SERVICES).events_after(0))
        assert [e.type for e in events] == [ADDED, MODIFIED, DELETED]
        last = events[-1]
        assert last.rev == deleted.mod_revision
        assert last.entry.obj["metadata"]["resourceVersion"] == str(deleted.mod_revision)
        assert last.entry.obj["metadata"]["labels"] == {"app": "b"}
        assert key not in cache.cache(SERVICES).items
        frame = json.loads(last.line(DELETED))
        assert frame["type"] == "DELETED" and frame["object"]["metadata"]["name"] == "s"
        assert [e.type for e in cache.cache(SERVICES).events_after(events[0].rev)] == [MODIFIED, DELETED]
        assert cache.cache(PODS).last_change == 0
    finally:
        await cache.stop()


async def test_window_moves_when_full(store: SqliteStore) -> None:
    cache = await started(store, window=2)
    try:
        revs = [
            (await store.create(SERVICES.key("default", f"s{i}"), svc(f"s{i}"))).mod_revision
            for i in range(4)
        ]
        await settle(cache, store)
        services = cache.cache(SERVICES)
        assert [e.rev for e in services.events] == revs[2:]
        assert services.window_start == revs[1]  # every event after it is still held
    finally:
        await cache.stop()


async def test_wait_for_a_future_revision(store: SqliteStore) -> None:
    cache = await started(store)
    try:
        target = cache.revision + 1
        waiter = asyncio.create_task(cache.wait_for(target, 5))
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.create(SERVICES.key("default", "w"), svc("w"))
        assert await waiter
        assert not await cache.wait_for(cache.revision + 100, 0.05)
    finally:
        await cache.stop()


async def test_watcher_sees_selector_transitions(store: SqliteStore) -> None:
    cache = await started(store)
    try:
        watcher = cache.subscribe(
            SERVICES, "default", lambda obj: obj["metadata"].get("labels", {}).get("team") == "a"
        )
        other_ns = cache.subscribe(SERVICES, "other", None)
        key = SERVICES.key("default", "t")
        await store.create(key, svc("t", team="b"))  # not matching: nothing
        kv = await store.get(key)
        kv = await store.update(key, svc("t", team="a"), kv.mod_revision)  # starts matching
        kv = await store.update(key, svc("t", team="a", x="1"), kv.mod_revision)  # still matching
        moved = await store.update(key, svc("t", team="c"), kv.mod_revision)  # stops matching
        await settle(cache, store)
        frames = [json.loads(f) for f in watcher.drain()]
        assert [f["type"] for f in frames] == [ADDED, MODIFIED, DELETED]
        # Stopping to match sends the previous object at the new revision.
        assert frames[2]["object"]["metadata"]["labels"]["team"] == "a"
        assert frames[2]["object"]["metadata"]["resourceVersion"] == str(moved.mod_revision)
        assert other_ns.drain() == []
        watcher.close()
        assert watcher not in cache.cache(SERVICES).watchers
    finally:
        await cache.stop()


async def test_slow_watcher_is_closed_not_buffered_forever(store: SqliteStore) -> None:
    cache = WatchCache(store, window=100, queue_limit=3)
    await cache.start()
    try:
        watcher = cache.subscribe(SERVICES, None, None)
        for i in range(5):
            await store.create(SERVICES.key("default", f"q{i}"), svc(f"q{i}"))
        await settle(cache, store)
        assert watcher.closed and watcher.overflowed
    finally:
        await cache.stop()
