"""The Store contract (etcd v3 model), run against every backend.

Adding a backend is one line in OPENERS: a function that opens (or reopens) the datastore
kept under the test's ``tmp_path``. Options a backend does not have are ignored by its opener.
Revisions are asserted relative to the store's revision when the test begins: etcd's counter
is global to the etcd the session shares (each test gets its own key prefix there).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from svcnet.store import (
    CompactedError,
    CompareFailedError,
    Delete,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Put,
    Store,
    UnavailableError,
    WatchOverflowError,
)
from svcnet.store.etcd import EtcdStore
from svcnet.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from etcd_fixture import etcd_missing_reason, shared_etcd  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def _open_sqlite(tmp_path: Path, **options: Any) -> Store:
    options.setdefault("compact_interval", 0)  # tests compact explicitly unless they ask
    return SqliteStore(str(tmp_path / "state.db"), **options)


def _open_etcd(tmp_path: Path, **options: Any) -> Store:
    # One etcd for the whole session (started on first use); the test's own key prefix,
    # derived from its tmp_path so a reopen finds the same data.
    kept = {k: v for k, v in options.items() if k in ("history_window", "compact_interval")}
    kept.setdefault("compact_interval", 0)
    return EtcdStore(shared_etcd().endpoints, prefix=f"/svt-{tmp_path.name}", **kept)


OPENERS: dict[str, Callable[..., Store]] = {
    "sqlite": _open_sqlite,
    "etcd": _open_etcd,
}

OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=sorted(OPENERS))
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "etcd" and (reason := etcd_missing_reason()):
        pytest.skip(reason)
    return request.param


@pytest.fixture
async def open_store(backend: str, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens the test's datastore; calling it again after close() reopens the same data."""
    opened: list[Store] = []

    async def open_(**options: Any) -> Store:
        store = OPENERS[backend](tmp_path, **options)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()


async def next_event(watch: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(anext(watch), timeout)


def summary(event: Event) -> tuple[int, str, str, bytes]:
    return (event.kv.mod_revision, event.type, event.kv.key, event.kv.value)


# -- single-key semantics ---------------------------------------------------------------------


async def test_create_get_update_delete(store: Store) -> None:
    start = await store.current_revision()
    created = await store.create("/k/a", b"v1")
    assert created.mod_revision == created.create_revision == start + 1
    assert await store.current_revision() == start + 1
    assert await store.get("/k/a") == created

    with pytest.raises(KeyExistsError):
        await store.create("/k/a", b"other")

    updated = await store.update("/k/a", b"v2", created.mod_revision)
    assert (updated.value, updated.create_revision, updated.mod_revision) == (b"v2", start + 1, start + 2)

    with pytest.raises(CompareFailedError) as lost:
        await store.update("/k/a", b"v3", created.mod_revision)
    assert lost.value.key == "/k/a" and lost.value.current == updated

    with pytest.raises(KeyNotFoundError):
        await store.update("/k/missing", b"x", None)
    with pytest.raises(CompareFailedError):
        await store.delete("/k/a", expected_mod_revision=created.mod_revision)

    deleted = await store.delete("/k/a", expected_mod_revision=updated.mod_revision)
    assert (deleted.value, deleted.create_revision, deleted.mod_revision) == (b"v2", start + 1, start + 3)
    assert await store.get("/k/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/k/a")

    recreated = await store.create("/k/a", b"again")
    assert recreated.create_revision == recreated.mod_revision == start + 4
    assert await store.current_revision() == start + 4


async def test_unconditional_update_and_failed_writes_take_no_revision(store: Store) -> None:
    first = await store.create("/k/a", b"1")
    second = await store.update("/k/a", b"2", None)
    assert second.mod_revision == first.mod_revision + 1
    for failing in (
        store.create("/k/a", b"x"),
        store.update("/k/a", b"x", first.mod_revision),
        store.update("/k/nope", b"x", None),
        store.delete("/k/nope"),
    ):
        with pytest.raises((KeyExistsError, CompareFailedError, KeyNotFoundError)):
            await failing
    assert await store.current_revision() == second.mod_revision


async def test_bad_arguments_are_rejected_before_writing(store: Store) -> None:
    start = await store.current_revision()
    with pytest.raises(TypeError):
        await store.create("/k/a", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.create("", b"x")
    with pytest.raises(ValueError):
        await store.txn([Put("/k/a", b"1"), Delete("/k/a")])
    with pytest.raises(TypeError):
        await store.txn([Put("/k/a", b"1"), Put("/k/b", "not bytes")])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.txn([Put("/k/a", b"1"), "/k/b"])  # type: ignore[list-item]
    assert await store.current_revision() == start


# -- transactions ------------------------------------------------------------------------------


async def test_txn_applies_every_op_at_one_revision(store: Store) -> None:
    a = await store.create("/t/a", b"a1")
    await store.create("/t/gone", b"bye")
    revision = await store.txn(
        [
            Put("/t/a", b"a2", a.mod_revision),
            Put("/t/b", b"b1", 0),
            Put("/t/c", b"c1"),
            Delete("/t/gone"),
        ]
    )
    assert revision == a.mod_revision + 2
    result = await store.range("/t/")
    assert [(kv.key, kv.value, kv.mod_revision) for kv in result.kvs] == [
        ("/t/a", b"a2", revision),
        ("/t/b", b"b1", revision),
        ("/t/c", b"c1", revision),
    ]
    assert result.revision == revision


async def test_txn_with_a_failing_compare_writes_nothing(store: Store) -> None:
    a = await store.create("/t/a", b"a1")
    b = await store.create("/t/b", b"b1")
    before = await store.current_revision()
    with pytest.raises(CompareFailedError) as lost:
        await store.txn([Put("/t/new", b"n", 0), Put("/t/b", b"b2", b.mod_revision - 1), Delete("/t/a")])
    assert lost.value.key == "/t/b"
    with pytest.raises(CompareFailedError) as exists:
        await store.txn([Put("/t/new", b"n", 0), Put("/t/a", b"a2", 0)])
    assert exists.value.key == "/t/a" and exists.value.current == a
    with pytest.raises(KeyNotFoundError):
        await store.txn([Put("/t/new", b"n", 0), Delete("/t/missing")])
    assert await store.current_revision() == before
    assert await store.get("/t/new") is None
    assert await store.get("/t/a") == a


# -- reads at a revision -------------------------------------------------------------------------


async def test_get_and_range_at_an_old_revision(store: Store) -> None:
    for name in "abcde":
        await store.create(f"/r/{name}", name.encode())
    await store.create("/rx/outside", b"not under /r/")
    snapshot = await store.current_revision()
    await store.update("/r/a", b"A", None)
    await store.delete("/r/b")
    await store.create("/r/f", b"f")

    old = await store.range("/r/", revision=snapshot)
    assert old.revision == snapshot and not old.more
    assert [(kv.key, kv.value) for kv in old.kvs] == [(f"/r/{n}", n.encode()) for n in "abcde"]
    assert (await store.get("/r/a", revision=snapshot)).value == b"a"
    assert (await store.get("/r/b", revision=snapshot)).value == b"b"
    assert await store.get("/r/f", revision=snapshot) is None
    assert await store.count("/r/", revision=snapshot) == 5

    latest = await store.range("/r/")
    assert [(kv.key, kv.value) for kv in latest.kvs] == [
        ("/r/a", b"A"),
        ("/r/c", b"c"),
        ("/r/d", b"d"),
        ("/r/e", b"e"),
        ("/r/f", b"f"),
    ]
    assert await store.count("/r/") == 5
    assert await store.count("") == 6

    future = await store.current_revision() + 1
    with pytest.raises(FutureRevisionError):
        await store.range("/r/", revision=future)
    with pytest.raises(FutureRevisionError):
        await store.get("/r/a", revision=future)


async def test_paging_reads_one_snapshot_while_writes_continue(store: Store) -> None:
    for i in range(300):
        await store.create(f"/p/{i:04d}", b"original")
    snapshot = await store.current_revision()
    expected = [(f"/p/{i:04d}", b"original") for i in range(300)]
    stop = asyncio.Event()

    async def churn() -> None:
        i = 0
        while not stop.is_set():
            await store.update(f"/p/{i % 300:04d}", b"changed", None)
            if i % 3 == 0:
                await store.delete(f"/p/{(i * 7) % 300:04d}")
                await store.create(f"/p/{(i * 7) % 300:04d}", b"recreated")
            await store.create(f"/p/{i:04d}x", b"inserted between keys")
            i += 1

    writer = asyncio.create_task(churn())
    try:
        pages: list[tuple[str, bytes]] = []
        after = None
        while True:
            page = await store.range("/p/", revision=snapshot, start_after=after, limit=17)
            assert page.revision == snapshot
            pages += [(kv.key, kv.value) for kv in page.kvs]
            await asyncio.sleep(0.001)  # let the writer move on between pages
            if not page.more:
                break
            after = page.kvs[-1].key
    finally:
        stop.set()
        await writer
    assert pages == expected
    assert await store.current_revision() > snapshot + 30
    assert await store.count("/p/", revision=snapshot) == 300


async def test_prefixes_do_not_leak_into_each_other(store: Store) -> None:
    await store.create("/registry/pods/a", b"1")
    await store.create("/registry/pods0", b"2")
    await store.create("/registry/podsx/b", b"3")
    await store.create("/registry/services/a", b"4")
    keys = [kv.key for kv in (await store.range("/registry/pods/")).kvs]
    assert keys == ["/registry/pods/a"]
    keys = [kv.key for kv in (await store.range("/registry/pods")).kvs]
    assert keys == ["/registry/pods/a", "/registry/pods0", "/registry/podsx/b"]


# -- durability of the revision counter ----------------------------------------------------------


async def test_revision_never_goes_backwards_across_reopen(open_store: OpenStore) -> None:
    store = await open_store()
    await store.create("/m/a", b"1")
    doomed = await store.create("/m/b", b"2")
    gone = await store.delete("/m/b", doomed.mod_revision)
    # Compacting at the newest revision removes the tombstone that carries it.
    await store.compact(gone.mod_revision)
    await store.close()

    store = await open_store()
    assert await store.current_revision() == gone.mod_revision
    assert store.compacted_revision == gone.mod_revision
    after = await store.create("/m/c", b"3")
    assert after.mod_revision == gone.mod_revision + 1
    assert [kv.key for kv in (await store.range("/m/")).kvs] == ["/m/a", "/m/c"]


# -- watch ------------------------------------------------------------------------------------------


async def test_watch_replays_then_follows_live_with_no_gap_or_duplicate(store: Store) -> None:
    history: list[tuple[int, str, str, bytes]] = []

    async def writer(worker: int, count: int) -> None:
        for i in range(count):
            key = f"/w/{worker}/{i % 7}"
            if await store.get(key) is None:
                kv = await store.create(key, f"{worker}-{i}".encode())
                history.append((kv.mod_revision, "PUT", key, kv.value))
            elif i % 3 == 0:
                kv = await store.delete(key)
                history.append((kv.mod_revision, "DELETE", key, kv.value))
            else:
                kv = await store.update(key, f"{worker}-{i}".encode(), None)
                history.append((kv.mod_revision, "PUT", key, kv.value))
            if i == 0:
                await store.create(f"/other/{worker}", b"x")
            else:
                await store.update(f"/other/{worker}", b"x", None)

    writers = [asyncio.create_task(writer(w, 120)) for w in range(4)]
    while len(history) < 100:
        await asyncio.sleep(0.001)
    start = history[40][0]
    watch = store.watch("/w/", start)
    seen = [summary(await next_event(watch))]
    await asyncio.gather(*writers)
    expected = sorted(h for h in history if h[0] >= start)
    while seen[-1][0] < expected[-1][0]:
        seen.append(summary(await next_event(watch)))
    await watch.aclose()
    assert seen == expected


async def test_watch_from_zero_means_from_now_and_future_start_waits(store: Store) -> None:
    await store.create("/z/old", b"old")
    now = store.watch("/z/", 0)
    early = await store.create("/z/early", b"written before the first iteration")
    later_start = await store.current_revision() + 3
    later = store.watch("/z/", later_start)
    later_pending = asyncio.ensure_future(next_event(later))
    await asyncio.sleep(0.05)  # subscribed and waiting for a revision that does not exist yet
    for i in range(4):
        await store.create(f"/z/{i}", b"new")
    assert [(await next_event(now)).kv for _ in range(2)] == [early, await store.get("/z/0")]
    event = await later_pending
    assert (event.kv.key, event.kv.mod_revision) == ("/z/2", later_start)
    await now.aclose()
    await later.aclose()


async def test_delete_event_carries_the_last_value_at_the_deletion_revision(store: Store) -> None:
    v1 = await store.create("/d/a", b"first")
    v2 = await store.update("/d/a", b"last", v1.mod_revision)
    live = store.watch("/d/", v2.mod_revision + 1)
    pending = asyncio.ensure_future(next_event(live))
    await asyncio.sleep(0.02)
    deleted = await store.delete("/d/a")
    replay = store.watch("/d/", deleted.mod_revision)
    for event in (await pending, await next_event(replay)):
        assert event.type == "DELETE"
        assert event.kv.value == b"last"
        assert event.kv.mod_revision == deleted.mod_revision == v2.mod_revision + 1
        assert event.kv.create_revision == v1.mod_revision
        assert event.prev_kv == v2
    replay_update = store.watch("/d/", v2.mod_revision)
    update_event = await next_event(replay_update)
    assert update_event.type == "PUT" and update_event.prev_kv == v1
    for watch in (live, replay, replay_update):
        await watch.aclose()


async def test_waiting_for_an_event_with_a_timeout_loses_nothing(store: Store) -> None:
    watch = store.watch("/c/", await store.current_revision() + 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watch), 0.02)
    kv = await store.create("/c/a", b"1")
    assert (await next_event(watch)).kv == kv
    await watch.aclose()


async def test_watch_of_a_compacted_revision_raises(store: Store) -> None:
    await store.create("/cmp/a", b"0")
    for i in range(1, 5):
        await store.update("/cmp/a", str(i).encode(), None)
    await store.create("/cmp/b", b"b")
    compact_at = await store.current_revision() - 2
    await store.compact(compact_at)
    assert store.compacted_revision == compact_at

    with pytest.raises(CompactedError):
        await next_event(store.watch("/cmp/", compact_at))
    with pytest.raises(CompactedError):
        await next_event(store.watch("/cmp/", 1))
    with pytest.raises(CompactedError):
        await store.get("/cmp/a", revision=compact_at - 1)
    with pytest.raises(CompactedError):
        await store.range("/cmp/", revision=compact_at - 1)

    resumed = store.watch("/cmp/", compact_at + 1)
    assert (await next_event(resumed)).kv.mod_revision == compact_at + 1
    await resumed.aclose()
    assert (await store.get("/cmp/a", revision=compact_at)).value == b"3"
    assert [kv.key for kv in (await store.range("/cmp/", revision=compact_at)).kvs] == ["/cmp/a"]


# -- concurrency ------------------------------------------------------------------------------------


async def test_concurrent_creates_of_one_key_have_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create("/race/key", f"client-{i}".encode()) for i in range(64)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, KeyExistsError) for r in results if r is not winners[0])
    assert await store.get("/race/key") == winners[0]

    base = winners[0].mod_revision
    updates = await asyncio.gather(
        *(store.update("/race/key", f"u-{i}".encode(), base) for i in range(64)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in updates) == 1
    assert all(isinstance(r, CompareFailedError) for r in updates if isinstance(r, BaseException))


async def test_concurrent_writes_get_distinct_increasing_revisions(store: Store) -> None:
    start = await store.current_revision()
    kvs = await asyncio.gather(*(store.create(f"/many/{i}", b"x") for i in range(200)))
    revisions = sorted(kv.mod_revision for kv in kvs)
    assert revisions == list(range(start + 1, start + 201))
    assert await store.count("/many/") == 200


async def test_a_slow_watcher_does_not_stall_writers(open_store: OpenStore) -> None:
    store = await open_store(watch_buffer=50)
    base = await store.current_revision()
    slow = store.watch("/s/", base + 1)
    await store.create("/s/first", b"0")
    assert (await next_event(slow)).kv.key == "/s/first"  # then it stops reading
    # Ten times its buffer: a fan-out that waited for this consumer would never finish.
    for burst in range(10):
        await asyncio.wait_for(
            asyncio.gather(*(store.create(f"/s/{burst}-{i}", b"v") for i in range(50))), 10
        )
    assert await store.current_revision() == base + 501
    # What it does get is still in order with no gap; the backend may end it instead.
    revisions = [base + 1]
    try:
        while revisions[-1] < base + 501:
            revisions.append((await next_event(slow)).kv.mod_revision)
    except WatchOverflowError as overflow:
        assert overflow.last_revision == revisions[-1]
    assert revisions == list(range(base + 1, base + len(revisions) + 1))
    await slow.aclose()


async def test_overflowed_watch_ends_with_an_error_after_what_it_buffered(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0, watch_buffer=10)
    await store.start()
    try:
        slow = store.watch("/s/", 1)
        waiting = asyncio.ensure_future(next_event(slow))
        await asyncio.sleep(0.02)  # subscribed at revision 0: everything arrives live
        for i in range(30):
            await store.create(f"/s/{i:02d}", b"v")
        got = [(await waiting).kv.mod_revision]
        with pytest.raises(WatchOverflowError) as overflow:
            while True:
                got.append((await next_event(slow)).kv.mod_revision)
        assert got == list(range(1, len(got) + 1)) and len(got) < 30
        assert overflow.value.last_revision == got[-1]
        # The consumer resumes from where it stopped, with nothing lost.
        resumed = store.watch("/s/", overflow.value.last_revision + 1)
        rest = [(await next_event(resumed)).kv.mod_revision for _ in range(30 - len(got))]
        assert got + rest == list(range(1, 31))
        await resumed.aclose()
    finally:
        await store.close()


async def test_ending_a_watch_removes_its_subscription(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    try:
        hub = store._hub
        await store.create("/u/a", b"1")
        async for _event in store.watch("/u/", 1):
            assert hub.subscriber_count == 1
            break
        await asyncio.sleep(0)
        assert hub.subscriber_count == 0

        closed = store.watch("/u/", 1)
        await next_event(closed)
        await closed.aclose()
        assert hub.subscriber_count == 0
        with pytest.raises(StopAsyncIteration):
            await anext(closed)

        await store.compact(1)
        with pytest.raises(CompactedError):
            await next_event(store.watch("/u/", 1))
        assert hub.subscriber_count == 0

        open_watch = store.watch("/u/", 2)
        pending = asyncio.ensure_future(next_event(open_watch))
        await asyncio.sleep(0.02)
    finally:
        await store.close()
    with pytest.raises(UnavailableError):
        await pending
    with pytest.raises(UnavailableError):
        await store.get("/u/a")


# -- compaction -------------------------------------------------------------------------------------


async def test_automatic_compaction_keeps_the_history_window(open_store: OpenStore) -> None:
    store = await open_store(history_window=20, compact_interval=0.02)
    kv = await store.create("/h/hot", b"0")
    for i in range(1, 60):
        kv = await store.update("/h/hot", str(i).encode(), kv.mod_revision)
        if i % 10 == 0:
            await store.create(f"/h/tmp{i}", b"t")
            await store.delete(f"/h/tmp{i}")
    current = await store.current_revision()
    for _ in range(500):
        if store.compacted_revision >= current - 20:
            break
        await asyncio.sleep(0.01)
    assert store.compacted_revision == current - 20

    window = store.watch("/h/", current - 19)
    events = [await next_event(window) for _ in range(20)]
    assert [e.kv.mod_revision for e in events] == list(range(current - 19, current + 1))
    await window.aclose()
    with pytest.raises(CompactedError):
        await next_event(store.watch("/h/", current - 20))
    assert (await store.get("/h/hot", revision=current - 20)) is not None
    assert [kv.key for kv in (await store.range("/h/")).kvs] == ["/h/hot"]


async def test_compaction_deletes_superseded_rows_in_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, compact_interval=0, compact_batch_rows=7)
    await store.start()
    try:
        for i in range(20):
            kv = await store.create(f"/b/{i}", b"0")
            for j in range(5):
                kv = await store.update(kv.key, str(j).encode(), kv.mod_revision)
        for i in range(0, 20, 2):
            await store.delete(f"/b/{i}")
        before = await store.range("/b/")
        await store.compact(await store.current_revision())
        after = await store.range("/b/")
    finally:
        await store.close()
    assert after.kvs == before.kvs and len(after.kvs) == 10
    with sqlite3.connect(path) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM kv").fetchone()
    assert rows == 10  # only the live version of each live key is left


async def test_a_database_is_opened_by_one_store_at_a_time(tmp_path: Path) -> None:
    first = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await first.start()
    try:
        with pytest.raises(UnavailableError):
            await SqliteStore(str(tmp_path / "state.db")).start()
    finally:
        await first.close()
    again = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await again.start()
    await again.close()


# -- crash safety ------------------------------------------------------------------------------------

_CRASH_WRITER = """
import asyncio, sys
from svcnet.store.sqlite import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1], compact_interval=0)
    await store.start()
    async def writer(worker):
        i = 0
        while True:
            kv = await store.create(f"/crash/{worker}/{i}", b"v" * 300)
            if i % 5 == 0:
                kv = await store.update(kv.key, b"updated", kv.mod_revision)
            sys.stdout.write(f"{kv.key} {kv.mod_revision}\\n")
            sys.stdout.flush()
            i += 1
    await asyncio.gather(*(writer(w) for w in range(16)))

asyncio.run(main())
"""


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, path], stdout=subprocess.PIPE, env=env, text=True
    )
    acknowledged: dict[str, int] = {}
    try:
        assert child.stdout is not None
        while len(acknowledged) < 3000:
            line = child.stdout.readline()
            assert line, f"writer exited early with {child.wait()}"
            key, revision = line.split()
            acknowledged[key] = int(revision)
        child.send_signal(signal.SIGKILL)  # mid-stream: writes are still being committed
        rest = child.stdout.read()
    finally:
        child.kill()
        child.wait()
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was never fully acknowledged
            key, revision = line.split()
            acknowledged[key] = int(revision)

    store = SqliteStore(path, compact_interval=0)
    await store.start()
    try:
        stored = {kv.key: kv.mod_revision for kv in (await store.range("/crash/")).kvs}
        missing = [k for k, rev in acknowledged.items() if k not in stored or stored[k] < rev]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        newest_acknowledged = max(acknowledged.values())
        assert await store.current_revision() >= newest_acknowledged
        assert (await store.create("/crash/after", b"x")).mod_revision > newest_acknowledged
    finally:
        await store.close()


async def test_an_interrupted_compaction_finishes_after_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, compact_interval=0)
    await store.start()
    for i in range(10):
        kv = await store.create(f"/i/{i}", b"0")
        for j in range(3):
            kv = await store.update(kv.key, str(j).encode(), None)
    newest = await store.current_revision()
    await store.close()
    # As if killed right after the first batch recorded the target and deleted nothing yet.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'compact_rev'", (newest,))

    store = SqliteStore(path, compact_interval=0)
    await store.start()
    try:
        assert store.compacted_revision == newest
        for _ in range(500):
            with sqlite3.connect(path) as conn:
                (rows,) = conn.execute("SELECT COUNT(*) FROM kv").fetchone()
            if rows == 10:
                break
            await asyncio.sleep(0.01)
        assert rows == 10
        assert [kv.value for kv in (await store.range("/i/")).kvs] == [b"2"] * 10
    finally:
        await store.close()


async def test_replay_in_chunks_that_split_a_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import svcnet.store.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_REPLAY_CHUNK", 3)
    store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    try:
        for round_ in range(5):
            await store.txn([Put(f"/x/{k}", f"{round_}".encode()) for k in "dcba"])
        watch = store.watch("/x/", 2)
        events = [await next_event(watch) for _ in range(16)]
        got = [(e.kv.mod_revision, e.kv.key, e.kv.value) for e in events]
        assert got == [(r, f"/x/{k}", f"{r - 1}".encode()) for r in range(2, 6) for k in "abcd"]
        await watch.aclose()
    finally:
        await store.close()


# -- model check ---------------------------------------------------------------------------------------

_KEYS = ("/m/a", "/m/b", "/m/c/d", "/n/e")


class _Model:
    """The etcd v3 semantics the store must follow, as plain dicts."""

    def __init__(self) -> None:
        self.revision = 0
        self.compacted = 0
        self.live: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, create, mod)
        self.snapshots: dict[int, dict[str, tuple[bytes, int, int]]] = {0: {}}
        self.events: list[tuple[int, str, str, bytes]] = []

    def apply(self, ops: list[tuple[str, str, bytes, int | None]]) -> int:
        """ops: (kind, key, value, expected) with kind create/update/put/delete; all or none."""
        for kind, key, _value, expected in ops:
            current = self.live.get(key)
            mod = current[2] if current else 0
            if kind == "create" and current:
                raise KeyExistsError(key)
            if kind in ("update", "delete") and not current:
                raise KeyNotFoundError(key)
            if kind == "put" and expected is not None and expected != mod:
                raise CompareFailedError(key, None)
            if kind in ("update", "delete") and expected is not None and expected != mod:
                raise CompareFailedError(key, None)
        self.revision += 1
        for kind, key, value, _expected in sorted(ops, key=lambda op: op[1]):
            current = self.live.get(key)
            if kind == "delete":
                assert current is not None
                del self.live[key]
                self.events.append((self.revision, "DELETE", key, current[0]))
            else:
                self.live[key] = (value, current[1] if current else self.revision, self.revision)
                self.events.append((self.revision, "PUT", key, value))
        self.snapshots[self.revision] = dict(self.live)
        return self.revision


def _ops_strategy() -> Any:
    from hypothesis import strategies as st

    key = st.sampled_from(_KEYS)
    value = st.binary(max_size=8)
    expected = st.one_of(st.none(), st.integers(min_value=0, max_value=12))
    single = st.tuples(st.sampled_from(["create", "update", "delete"]), key, value, expected)
    txn_op = st.tuples(st.sampled_from(["put", "delete"]), key, value, expected)
    txn = st.lists(txn_op, min_size=1, max_size=3, unique_by=lambda op: op[1])
    compact = st.tuples(st.just("compact"), st.integers(min_value=0, max_value=12))
    return st.lists(st.one_of(single.map(lambda op: [op]), txn, compact), max_size=25)


def test_random_operation_sequences_match_the_etcd_model(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_ops_strategy())
    def check(steps: list[Any]) -> None:
        asyncio.run(_run_model_check(OPENERS[backend](tmp_path_factory.mktemp("model")), steps))

    check()


async def _run_model_check(store: Store, steps: list[Any]) -> None:
    """The model counts revisions from 0; the store's count from ``base``, its revision when
    the example starts (0 for a new SQLite file, wherever the shared etcd is for etcd)."""
    model = _Model()
    await store.start()
    base = await store.current_revision()

    def at(revision: int | None) -> int | None:  # model revision -> store revision
        return revision if not revision else base + revision

    try:
        for step in steps:
            if isinstance(step, tuple):  # ("compact", revision)
                target = min(step[1], model.revision)
                await store.compact(base + target)
                model.compacted = max(model.compacted, target)
                continue
            try:
                expected_revision: int | BaseException = model.apply(step)
            except (KeyExistsError, KeyNotFoundError, CompareFailedError) as exc:
                expected_revision = exc
            try:
                if len(step) == 1 and step[0][0] != "put":
                    kind, key, value, expected = step[0]
                    if kind == "create":
                        got: int | BaseException = (await store.create(key, value)).mod_revision - base
                    elif kind == "update":
                        got = (await store.update(key, value, at(expected))).mod_revision - base
                    else:
                        got = (await store.delete(key, at(expected))).mod_revision - base
                else:
                    ops = [Put(k, v, at(e)) if kind == "put" else Delete(k, at(e)) for kind, k, v, e in step]
                    got = await store.txn(ops) - base
            except (KeyExistsError, KeyNotFoundError, CompareFailedError) as exc:
                got = exc
            if isinstance(expected_revision, BaseException):
                assert type(got) is type(expected_revision) and got.key == expected_revision.key  # type: ignore[union-attr]
            else:
                assert got == expected_revision

        assert await store.current_revision() == base + model.revision
        assert max(store.compacted_revision - base, 0) == model.compacted
        for revision in range(max(model.compacted, 1), model.revision + 1):  # 0 means "latest"
            want = sorted((k, *v) for k, v in model.snapshots[revision].items() if k.startswith("/m/"))
            result = await store.range("/m/", revision=base + revision)
            got_kvs = [(kv.key, kv.value, kv.create_revision - base, kv.mod_revision - base)
                       for kv in result.kvs]
            assert got_kvs == want
            for key in _KEYS:
                kv = await store.get(key, base + revision)
                assert (kv and (kv.value, kv.create_revision - base, kv.mod_revision - base)) == (
                    model.snapshots[revision].get(key)
                )
        if model.compacted > 1:
            with pytest.raises(CompactedError):
                await store.get(_KEYS[0], base + model.compacted - 1)
        watch = store.watch("/m/", base + model.compacted + 1)
        want_events = [e for e in model.events if e[0] > model.compacted and e[2].startswith("/m/")]
        got_events = []
        for _ in want_events:
            revision, *rest = summary(await next_event(watch))
            got_events.append((revision - base, *rest))
        assert got_events == want_events
        await watch.aclose()
    finally:
        await store.close()


async def test_a_failed_commit_fails_its_batch_and_the_store_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from svcnet.store.sqlite_writer import Writer

    store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    try:
        before = await store.create("/f/a", b"1")
        real_apply = Writer._apply

        def failing_apply(self: Writer, request: Any, events: list[Event]) -> Any:
            if request.ops[0].key == "/f/boom":
                raise sqlite3.OperationalError("disk I/O error")
            return real_apply(self, request, events)

        monkeypatch.setattr(Writer, "_apply", failing_apply)
        watch = store.watch("/f/", before.mod_revision + 1)
        with pytest.raises(UnavailableError):
            await store.create("/f/boom", b"x")
        assert await store.current_revision() == before.mod_revision
        after = await store.create("/f/b", b"2")
        assert after.mod_revision == before.mod_revision + 1
        assert (await next_event(watch)).kv == after  # no event for the write that failed
        assert [kv.key for kv in (await store.range("/f/")).kvs] == ["/f/a", "/f/b"]
        await watch.aclose()
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(UnavailableError, match="cannot open datastore"):
        await SqliteStore(str(path)).start()
    (tmp_path / "state.db").unlink()
    store = SqliteStore(str(path), compact_interval=0)
    await store.start()  # the lock was released by the failed start
    await store.close()
