"""The one thread that writes the SQLite revision log, with group commit.

Callers enqueue requests; the thread takes everything waiting, applies each request in order
inside ONE transaction and commits once, so N concurrent writes cost one commit instead of N.
Each request still gets its own revision (a multi-op txn shares one), and each request's
compare-and-swap checks run against the state left by the requests before it in the same
batch, so concurrent creates of one key have exactly one winner. Results are handed back only
after COMMIT returns: an acknowledged write is in the WAL file and survives ``kill -9``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from svcnet.store.interface import (
    CompareFailedError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StoreError,
    UnavailableError,
)

log = logging.getLogger(__name__)

# create: the key must be absent.  update: it must exist (and match expected, if given).
# put: a txn Put, where expected None means unconditional.  delete: it must exist (and match).
Mode = Literal["create", "update", "put", "delete"]


@dataclass(frozen=True, slots=True)
class WriteOp:
    mode: Mode
    key: str
    value: bytes = b""
    expected: int | None = None


@dataclass(slots=True)
class WriteRequest:
    ops: list[WriteOp]
    reply: Literal["kv", "revision"]  # the written KeyValue, or the new revision
    future: Any  # asyncio.Future, completed on the event loop


@dataclass(slots=True)
class SweepRequest:
    """One batch of compaction up to ``target``; replies with the revision swept so far."""

    target: int
    batch_rows: int
    future: Any


# (committed revision, [(future, result or exception)], events in revision order, swept)
CommitCallback = Callable[[int, list[tuple[Any, Any]], list[Event], int], None]

_STOP = object()

_LATEST = (
    "SELECT revision, create_revision, deleted, value FROM kv WHERE name = ? ORDER BY revision DESC LIMIT 1"
)
_SUPERSEDE = "UPDATE kv SET next_revision = ? WHERE name = ? AND revision = ?"
_INSERT = (
    "INSERT INTO kv (name, revision, create_revision, prev_revision, next_revision, deleted, value) "
    "VALUES (?, ?, ?, ?, NULL, ?, ?)"
)
_SWEEP_BOUND = (
    "SELECT revision FROM kv WHERE revision > ? AND revision <= ? ORDER BY revision LIMIT 1 OFFSET ?"
)
_SWEEP_SUPERSEDED = (
    "DELETE FROM kv WHERE (name, revision) IN (SELECT name, prev_revision FROM kv "
    "WHERE revision > ? AND revision <= ? AND prev_revision > 0)"
)
_SWEEP_TOMBSTONES = "DELETE FROM kv WHERE revision > ? AND revision <= ? AND deleted = 1"
_SET_COMPACT_REV = "UPDATE meta SET value = MAX(value, ?) WHERE key = 'compact_rev'"
_SET_SWEPT = "UPDATE meta SET value = ? WHERE key = 'compact_swept'"


class Writer(threading.Thread):
    def __init__(
        self,
        conn: sqlite3.Connection,
        revision: int,
        swept: int,
        on_commit: CommitCallback,
        max_batch: int = 1000,
    ) -> None:
        super().__init__(name="sqlite-writer", daemon=True)
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._revision = revision
        self._swept = swept
        self._on_commit = on_commit
        self._max_batch = max_batch

    def submit(self, request: WriteRequest | SweepRequest) -> None:
        self._queue.put(request)

    def stop(self) -> None:
        """Finish what is queued, then end the thread and close its connection."""
        self._queue.put(_STOP)

    def run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                    batch.append(nxt)
                self._commit_batch(batch)
        finally:
            self._conn.close()

    def _commit_batch(self, batch: list[Any]) -> None:
        revision, swept = self._revision, self._swept
        events: list[Event] = []
        replies: list[tuple[Any, Any]] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for request in batch:
                if isinstance(request, SweepRequest):
                    replies.append((request.future, self._sweep(request)))
                else:
                    replies.append((request.future, self._apply(request, events)))
            self._conn.execute("COMMIT")
        except Exception as exc:  # an I/O or database failure: nothing of this batch happened
            log.exception("datastore write batch failed")
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._revision, self._swept = revision, swept
            failure = UnavailableError(f"datastore write failed: {exc}")
            replies = [(request.future, failure) for request in batch]
            events = []
        try:
            self._on_commit(self._revision, replies, events, self._swept)
        except RuntimeError:  # the event loop is gone; nobody is waiting any more
            log.warning("write results dropped: event loop closed")

    def _latest(self, key: str) -> KeyValue | None:
        row = self._conn.execute(_LATEST, (key,)).fetchone()
        if row is None or row[2]:
            return None
        return KeyValue(key, row[3], row[1], row[0])

    def _apply(self, request: WriteRequest, events: list[Event]) -> Any:
        currents: list[KeyValue | None] = []
        for op in request.ops:
            current = self._latest(op.key)
            failure = _check(op, current)
            if failure is not None:
                return failure  # checks come first, so a failed request wrote nothing
            currents.append(current)

        revision = self._revision + 1
        execute = self._conn.execute
        written: list[Event] = []
        for op, current in zip(request.ops, currents, strict=True):
            if current is not None:
                execute(_SUPERSEDE, (revision, op.key, current.mod_revision))
            if op.mode == "delete":
                assert current is not None
                execute(
                    _INSERT,
                    (op.key, revision, current.create_revision, current.mod_revision, 1, current.value),
                )
                kv = KeyValue(op.key, current.value, current.create_revision, revision)
                written.append(Event("DELETE", kv, current))
            else:
                create_revision = current.create_revision if current is not None else revision
                prev_revision = current.mod_revision if current is not None else 0
                execute(_INSERT, (op.key, revision, create_revision, prev_revision, 0, op.value))
                kv = KeyValue(op.key, op.value, create_revision, revision)
                written.append(Event("PUT", kv, current))
        self._revision = revision
        if len(written) > 1:
            # Same order as a replay from the log reads them back: (revision, key).
            written.sort(key=lambda event: event.kv.key)
        events.extend(written)
        if request.reply == "revision":
            return revision
        return written[0].kv

    def _sweep(self, request: SweepRequest) -> int:
        execute = self._conn.execute
        start = self._swept
        target = request.target
        execute(_SET_COMPACT_REV, (target,))
        if start < target:
            row = execute(_SWEEP_BOUND, (start, target, request.batch_rows - 1)).fetchone()
            end = row[0] if row is not None else target
            execute(_SWEEP_SUPERSEDED, (start, end))
            execute(_SWEEP_TOMBSTONES, (start, end))
            execute(_SET_SWEPT, (end,))
            self._swept = end
        return self._swept


def _check(op: WriteOp, current: KeyValue | None) -> StoreError | None:
    expected = op.expected
    if op.mode == "create":
        return KeyExistsError(op.key) if current is not None else None
    if op.mode == "put":
        if expected is None:
            return None
        current_revision = current.mod_revision if current is not None else 0
        return CompareFailedError(op.key, current) if current_revision != expected else None
    # update and delete need the key to exist
    if current is None:
        return KeyNotFoundError(op.key)
    if expected is not None and current.mod_revision != expected:
        return CompareFailedError(op.key, current)
    return None
