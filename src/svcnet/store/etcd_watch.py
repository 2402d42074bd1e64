"""One Store watch on etcd: an etcd watch stream (JSON gateway) with prev_kv, resumed on
another member when the one it was on goes away.

etcd delivers every event at or after the start revision in revision order, the events of one
revision in one message. The watch remembers the revision after the last message it took in,
so a broken stream is reopened exactly there: no gap, no duplicate. If that revision has been
compacted meanwhile the watch ends with CompactedError, as any watch from a compacted revision.

``progress_revision`` is the revision up to which this watch has delivered (or queued) every
event: the newest event's revision, or the revision of etcd's last progress notification when
the watched range was idle. A consumer that sends bookmarks can use it (the Store interface
has no event for "nothing changed up to R").

Reading is cancellation-safe: a caller may wait for the next event with a timeout and lose
nothing, because a cancelled read leaves the received bytes in aiohttp's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from svcnet.store.etcd_client import b64, header_revision
from svcnet.store.interface import (
    CompactedError,
    Event,
    KeyValue,
    StoreError,
    UnavailableError,
    WatchIterator,
)

if TYPE_CHECKING:
    from svcnet.store.etcd import EtcdStore

_MAX_RECONNECTS = 20  # consecutive failed reopenings before the watch gives up


class EtcdWatch(WatchIterator):
    def __init__(self, store: EtcdStore, key: str, range_end: str, start_revision: int) -> None:
        self._store = store
        self._key = key
        self._range_end = range_end
        self._start = start_revision
        self._next_revision = start_revision
        self._pending: deque[Event] = deque()
        self._resp: aiohttp.ClientResponse | None = None
        self._endpoint = 0
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._closed_with: StoreError | None = None
        self._finished = False
        self._checked = False
        self._failures = 0
        self.progress_revision = start_revision - 1

    def _end_on_error(self) -> None:
        self._end()

    async def _next(self) -> Event:
        if not self._checked:
            self._checked = True
            compacted = self._store.compacted_revision
            if self._start <= compacted:
                raise CompactedError(self._start, compacted)
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed_with is not None:
                raise self._closed_with
            if self._resp is None:
                await self._open()
                continue
            try:
                message = await self._read_message()
            except (aiohttp.ClientError, ConnectionError, TimeoutError, UnavailableError) as exc:
                self._broken(f"watch stream broke: {exc}")
                continue
            self._take(message)

    async def _open(self) -> None:
        if self._failures:
            # A member that keeps cancelling (no leader) is not hammered: back off a little.
            await asyncio.sleep(min(0.05 * self._failures, 0.5))
        request: dict[str, Any] = {
            "key": b64(self._key),
            "range_end": b64(self._range_end),
            "start_revision": self._next_revision,
            "prev_kv": True,
            "progress_notify": True,
        }
        resp, index = await self._store._client.open_watch(request)
        if self._closed_with is not None:  # closed while connecting
            resp.close()
            raise self._closed_with
        self._resp, self._endpoint = resp, index
        self._lines.clear()
        self._partial = b""

    def _broken(self, why: str) -> None:
        self._drop_stream()
        self._store._client.failed(self._endpoint)
        self._failures += 1
        if self._failures > _MAX_RECONNECTS:
            raise UnavailableError(f"etcd watch failed {self._failures} times in a row: {why}")

    async def _read_message(self) -> dict[str, Any]:
        assert self._resp is not None
        while not self._lines:
            chunk = await self._resp.content.readany()
            if not chunk:
                raise ConnectionError("etcd closed the watch stream")
            parts = (self._partial + chunk).split(b"\n")
            self._partial = parts.pop()
            self._lines.extend(part for part in parts if part.strip())
        line = self._lines.popleft()
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConnectionError(f"undecodable watch message: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise ConnectionError(f"unexpected watch message: {line[:200]!r}")
        return message

    def _take(self, message: dict[str, Any]) -> None:
        result = message.get("result")
        if result is None:  # {"error": ...}: the gateway ended the stream
            self._broken(f"watch error: {message.get('error')}")
            return
        compact_revision = int(result.get("compact_revision") or 0)
        if result.get("canceled"):
            if compact_revision:
                self._store._watch_compacted(compact_revision)
                self._closed_with = CompactedError(self._next_revision, compact_revision)
                self._drop_stream()
                return
            self._broken(f"etcd cancelled the watch: {result.get('cancel_reason') or 'no reason given'}")
            return
        self._failures = 0
        events = result.get("events")
        if not events:
            if not result.get("created"):
                # A progress notification: every event up to this revision has been sent.
                header = header_revision(result)
                if header >= self._next_revision - 1:
                    self.progress_revision = max(self.progress_revision, header)
            return
        newest = 0
        for raw in events:
            event = self._event(raw)
            newest = event.kv.mod_revision
            self._pending.append(event)
        self._next_revision = newest + 1
        self.progress_revision = max(self.progress_revision, newest)
        self._store._saw(newest)

    def _event(self, raw: dict[str, Any]) -> Event:
        kv = self._store._kv(raw.get("kv") or {})
        prev = self._store._kv(raw["prev_kv"]) if raw.get("prev_kv") else None
        if raw.get("type") == "DELETE":
            if prev is not None:
                # The deleted object's last value at the deletion revision, as kube-apiserver's
                # DELETED events carry it.
                kv = KeyValue(kv.key, prev.value, prev.create_revision, kv.mod_revision)
            return Event("DELETE", kv, prev)
        return Event("PUT", kv, prev)

    def _drop_stream(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self._lines.clear()
        self._partial = b""

    def close_with(self, reason: StoreError) -> None:
        self._closed_with = reason
        self._drop_stream()

    def _end(self) -> None:
        self._finished = True
        self._drop_stream()
        self._store._watch_ended(self)

    async def aclose(self) -> None:
        self._end()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._end()
