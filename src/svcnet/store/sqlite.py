"""SqliteStore: the embedded datastore (an etcd v3-style revision log in one SQLite file).

Writes go through one writer thread with group commit (sqlite_writer.py); reads run on a small
pool of reader connections, each a single SELECT on one WAL snapshot filtered to the requested
revision, so a read at revision R returns exactly the state at R however many writes land
meanwhile. Watches are served in-process (fanout.py): replay from the log, then live events.

Compaction advertises the new compacted revision in memory BEFORE deleting anything. A read
checks the revision against it again after its query: if the query's snapshot could have
missed rows a compaction removed, that compaction was already advertised, so the read fails
with CompactedError instead of returning a silently incomplete answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from svcnet.store.fanout import ReplayPosition, WatchHub, WatchStream
from svcnet.store.interface import (
    CompactedError,
    Event,
    FutureRevisionError,
    KeyValue,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    UnavailableError,
)
from svcnet.store.keys import check_key, check_ops, check_value, prefix_end
from svcnet.store.sqlite_schema import connect, load_state
from svcnet.store.sqlite_writer import SweepRequest, WriteOp, Writer, WriteRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

_VISIBLE_AT = "revision <= ? AND (next_revision IS NULL OR next_revision > ?) AND deleted = 0"
_GET_AT = (
    "SELECT revision, create_revision, deleted, value FROM kv "
    "WHERE name = ? AND revision <= ? ORDER BY revision DESC LIMIT 1"
)
_REPLAY_COLUMNS = (
    "SELECT k.name, k.revision, k.create_revision, k.deleted, k.value, "
    "p.revision, p.create_revision, p.value "
    "FROM kv AS k LEFT JOIN kv AS p ON p.name = k.name AND p.revision = k.prev_revision "
)
_REPLAY_CHUNK = 1000


class SqliteStore(Store):
    """The Store on one SQLite file at ``path`` (its directory is created if missing).

    - history_window: revisions kept for watch resume and old reads; the automatic
      compaction, every ``compact_interval`` seconds (0 turns it off), drops older history.
    - watch_buffer: events a watcher may have waiting before its watch is ended with
      WatchOverflowError.
    - read_threads: reader connections serving get/range/count and watch replay.
    - compact_batch_rows: log rows examined per compaction transaction, so compaction never
      holds the writer for long.
    """

    def __init__(
        self,
        path: str,
        *,
        history_window: int = 10000,
        compact_interval: float = 60.0,
        watch_buffer: int = 10000,
        read_threads: int = 4,
        compact_batch_rows: int = 1000,
    ) -> None:
        if history_window < 0:
            raise ValueError("history_window must not be negative")
        self._path = path
        self._history_window = history_window
        self._compact_interval = compact_interval
        self._read_threads = read_threads
        self._compact_batch_rows = max(1, compact_batch_rows)
        self._hub = WatchHub(watch_buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._sweep_lock = asyncio.Lock()
        self._revision = 0  # the newest revision published to this event loop
        self._compacted = 0  # reads below this, and watches at or below it, fail
        self._swept = 0  # compaction has deleted superseded rows up to here
        self._state = "new"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise UnavailableError(f"store is {self._state}")
        self._loop = asyncio.get_running_loop()
        directory = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(directory, exist_ok=True)
        self._lock_fd = _lock_database(self._path)
        try:
            conn = await asyncio.to_thread(connect, self._path, writer=True)
            try:
                revision, compacted, swept = await asyncio.to_thread(load_state, conn)
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            _unlock(self._lock_fd)
            self._lock_fd = None
            if isinstance(exc, sqlite3.Error):
                raise UnavailableError(f"cannot open datastore {self._path}: {exc}") from exc
            raise
        self._revision, self._compacted, self._swept = revision, compacted, swept
        self._writer = Writer(conn, revision, swept, self._on_commit_threadsafe)
        self._writer.start()
        self._readers = ThreadPoolExecutor(self._read_threads, thread_name_prefix="sqlite-read")
        self._state = "running"
        self._compactor = self._loop.create_task(self._compact_periodically())

    async def close(self) -> None:
        if self._state != "running":
            self._state = "closed"
            return
        self._state = "closed"
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        self._hub.close(UnavailableError("store closed"))
        assert self._writer is not None and self._readers is not None
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)
        readers = self._readers
        await asyncio.to_thread(readers.shutdown, True)
        with self._reader_conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    def _ensure_running(self) -> None:
        if self._state != "running":
            raise UnavailableError("store is not running" if self._state == "new" else "store closed")

    # -- revisions -----------------------------------------------------------------------------

    async def current_revision(self) -> int:
        self._ensure_running()
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def _read_revision(self, revision: int | None) -> int:
        if revision is None or revision <= 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        self._check_not_compacted(revision)
        return revision

    def _check_not_compacted(self, revision: int) -> None:
        if revision < self._compacted:
            raise CompactedError(revision, self._compacted)

    # -- reads -----------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = connect(self._path, writer=False)
            self._reader_local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, revision: int, query: Callable[[sqlite3.Connection], T]) -> T:
        self._ensure_running()
        assert self._loop is not None

        def run() -> T:
            return query(self._reader())

        try:
            result = await self._loop.run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise UnavailableError(f"datastore read failed: {exc}") from exc
        self._check_not_compacted(revision)  # see the module docstring
        return result

    async def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        check_key(key)
        self._ensure_running()
        at = self._read_revision(revision)

        def query(conn: sqlite3.Connection) -> KeyValue | None:
            row = conn.execute(_GET_AT, (key, at)).fetchone()
            if row is None or row[2]:
                return None
            return KeyValue(key, row[3], row[1], row[0])

        return await self._read(at, query)

    async def range(
        self,
        prefix: str,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        self._ensure_running()
        if limit is not None and limit <= 0:
            limit = None  # etcd: 0 means no limit
        at = self._read_revision(revision)
        where, params = _prefix_clause(prefix, start_after)
        sql = (
            f"SELECT name, create_revision, revision, value FROM kv WHERE {where} AND {_VISIBLE_AT} "
            "ORDER BY name"
        )
        params += [at, at]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit + 1)

        def query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, params).fetchall()

        rows = await self._read(at, query)
        more = limit is not None and len(rows) > limit
        if more:
            del rows[limit:]
        kvs = [KeyValue(name, value, created, modified) for name, created, modified, value in rows]
        return RangeResult(kvs=kvs, revision=at, more=more)

    async def count(self, prefix: str, revision: int | None = None) -> int:
        self._ensure_running()
        at = self._read_revision(revision)
        where, params = _prefix_clause(prefix, None)
        sql = f"SELECT COUNT(*) FROM kv WHERE {where} AND {_VISIBLE_AT}"
        params += [at, at]

        def query(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._read(at, query)

    # -- writes ----------------------------------------------------------------------------------

    async def _write(self, ops: list[WriteOp], reply: str) -> Any:
        self._ensure_running()
        assert self._loop is not None and self._writer is not None
        future = self._loop.create_future()
        self._writer.submit(WriteRequest(ops, reply, future))  # type: ignore[arg-type]
        return await future

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._write([WriteOp("create", check_key(key), check_value(value))], "kv")

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None) -> KeyValue:
        op = WriteOp("update", check_key(key), check_value(value), expected_mod_revision)
        return await self._write([op], "kv")

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        return await self._write([WriteOp("delete", check_key(key), b"", expected_mod_revision)], "kv")

    async def txn(self, ops: Sequence[Op]) -> int:
        write_ops = [
            WriteOp("put", op.key, op.value, op.expected_mod_revision)
            if isinstance(op, Put)
            else WriteOp("delete", op.key, b"", op.expected_mod_revision)
            for op in check_ops(ops)
        ]
        if not write_ops:
            return await self.current_revision()
        return await self._write(write_ops, "revision")

    def _on_commit_threadsafe(
        self, revision: int, replies: list[tuple[Any, Any]], events: list[Event], swept: int
    ) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_commit, revision, replies, events, swept)

    def _on_commit(
        self, revision: int, replies: list[tuple[Any, Any]], events: list[Event], swept: int
    ) -> None:
        # Publishing the events and advancing the revision happen in this one callback, which
        # is what makes the watch replay/live seam exact (see fanout.py).
        if revision > self._revision:
            self._revision = revision
        self._swept = max(self._swept, swept)
        self._hub.publish(events)
        for future, result in replies:
            if future.done():  # the caller was cancelled; the write itself stands
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    # -- watch -----------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> WatchStream:
        """Revision 0 (or below) means "from the revision after the current one" (as in etcd),
        fixed now, not at the first iteration."""
        if start_revision <= 0:
            start_revision = self._revision + 1
        return WatchStream(self._hub, prefix, start_revision, self._published_revision, self._replay)

    def _published_revision(self) -> int:
        self._ensure_running()
        return self._revision

    async def _replay(self, prefix: str, after: ReplayPosition | None, first: int, last: int) -> list[Event]:
        if first <= self._compacted:
            raise CompactedError(first, self._compacted)
        where, params = _prefix_clause(prefix, None, column="k.name")
        sql = f"{_REPLAY_COLUMNS} WHERE k.revision >= ? AND k.revision <= ? AND {where}"
        lowest = first if after is None else max(first, after[0])  # narrows the index scan
        params = [lowest, last, *params]
        if after is not None:
            sql += " AND (k.revision, k.name) > (?, ?)"
            params += list(after)
        sql += f" ORDER BY k.revision, k.name LIMIT {_REPLAY_CHUNK}"

        def query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, params).fetchall()

        rows = await self._read(first, query)
        if first <= self._compacted:
            raise CompactedError(first, self._compacted)
        return [_event_from_row(row) for row in rows]

    # -- compaction ------------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Drop every version superseded at or below ``revision`` and every deletion at or below
        it. Compacting at or below the already compacted revision does nothing."""
        self._ensure_running()
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision > self._compacted:
            self._compacted = revision  # advertise before deleting: see the module docstring
        await self._sweep_to(self._compacted)

    async def _sweep_to(self, target: int) -> None:
        assert self._loop is not None and self._writer is not None
        async with self._sweep_lock:
            while self._swept < target:
                future = self._loop.create_future()
                self._writer.submit(SweepRequest(target, self._compact_batch_rows, future))
                self._swept = max(self._swept, await future)

    async def _compact_periodically(self) -> None:
        try:
            if self._swept < self._compacted:  # an interrupted compaction: finish it
                await self._sweep_to(self._compacted)
            if self._compact_interval <= 0:
                return
            while True:
                await asyncio.sleep(self._compact_interval)
                target = self._revision - self._history_window
                if target > self._compacted:
                    try:
                        await self.compact(target)
                    except StoreError:
                        log.exception("automatic compaction to revision %d failed", target)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("compaction task ended unexpectedly")


def _prefix_clause(prefix: str, start_after: str | None, column: str = "name") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if start_after is not None and start_after >= prefix:
        clauses.append(f"{column} > ?")
        params.append(start_after)
    else:
        clauses.append(f"{column} >= ?")
        params.append(prefix)
    end = prefix_end(prefix)
    if end is not None:
        clauses.append(f"{column} < ?")
        params.append(end)
    return " AND ".join(clauses), params


def _event_from_row(row: Sequence[Any]) -> Event:
    name, revision, create_revision, deleted, value, prev_revision, prev_create, prev_value = row
    prev = None if prev_revision is None else KeyValue(name, prev_value, prev_create, prev_revision)
    kv = KeyValue(name, value, create_revision, revision)
    return Event("DELETE" if deleted else "PUT", kv, prev)


def _lock_database(path: str) -> int:
    """One process per database: the writer's in-memory revision counter relies on it."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UnavailableError(f"datastore {path} is in use by another process") from None
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
