"""EtcdStore: the Store on etcd v3, the way kube-apiserver uses etcd.

- Keys are the API server's own (/registry/services/specs/NS/NAME ...), optionally under a
  ``prefix`` (kube-apiserver's --etcd-prefix; the tests give each test its own).
- resourceVersion is etcd's mod_revision; a Store revision IS an etcd revision, so several
  API servers on one etcd agree on every resourceVersion.
- Every conditional write is one etcd transaction: create = compare mod_revision == 0 then put;
  update/delete = compare mod_revision == expected (or > 0: "exists") then put/delete, else
  read the key back to say why it failed. ``txn`` sends all of its compares and writes in one
  transaction, so allocation keys and the Service they belong to commit together or not at all.
- Watches are etcd watches with prev_kv (etcd_watch.py); a DELETE event carries the previous
  value at the deletion revision, as kube-apiserver's DELETED events do.
- Compaction is etcd's (global for the whole etcd, like kube-apiserver's compactor); with
  ``compact_interval`` > 0 this store compacts to ``current - history_window`` periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from svcnet.store.etcd_client import (
    EtcdClient,
    EtcdTLS,
    b64,
    b64_bytes,
    header_revision,
    unb64,
)
from svcnet.store.etcd_watch import EtcdWatch
from svcnet.store.interface import (
    CompactedError,
    CompareFailedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    UnavailableError,
)
from svcnet.store.keys import check_key, check_ops, check_value, prefix_end

log = logging.getLogger(__name__)

_RANGE_PAGE = 10_000  # keys per etcd range request when no limit is given


class EtcdStore(Store):
    """The Store on an etcd v3 cluster reached at ``endpoints`` (HOST:PORT or URLs).

    - prefix: every key is stored under it (empty: the keys as given).
    - tls: client TLS (CA, client certificate and key); endpoints then use https.
    - request_timeout: seconds a request may take, failovers included, before it fails with
      UnavailableError (lost quorum, every member down).
    - history_window / compact_interval: automatic compaction (0 turns it off).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = "",
        tls: EtcdTLS | None = None,
        request_timeout: float = 5.0,
        history_window: int = 10000,
        compact_interval: float = 60.0,
        connections: int = 128,
    ) -> None:
        if history_window < 0:
            raise ValueError("history_window must not be negative")
        self._prefix = prefix
        self._client = EtcdClient(endpoints, tls, request_timeout, connections)
        self._history_window = history_window
        self._compact_interval = compact_interval
        self._known_revision = 0  # the newest revision any reply has shown this store
        self._compacted = 0
        self._compactor: asyncio.Task[None] | None = None
        self._watches: set[EtcdWatch] = set()
        self._state = "new"

    @property
    def endpoints(self) -> list[str]:
        return list(self._client.urls)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise UnavailableError(f"store is {self._state}")
        await self._client.start()
        self._state = "running"
        try:
            await self.current_revision()
            self._compacted = await self._find_compacted_revision()
        except BaseException:
            await self.close()
            raise
        if self._compact_interval > 0:
            self._compactor = asyncio.get_running_loop().create_task(self._compact_periodically())

    async def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        for watch in list(self._watches):
            watch.close_with(UnavailableError("store closed"))
        await self._client.close()

    def _ensure_running(self) -> None:
        if self._state != "running":
            raise UnavailableError("store is not running" if self._state == "new" else "store closed")

    # -- plumbing ----------------------------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any], *, write: bool) -> dict[str, Any]:
        self._ensure_running()
        try:
            reply = await self._client.call(path, body, write=write)
        except CompactedError as exc:
            raise CompactedError(exc.requested, max(self._compacted, 1)) from None
        except FutureRevisionError as exc:
            raise FutureRevisionError(exc.requested, self._known_revision) from None
        self._saw(header_revision(reply))
        return reply

    def _saw(self, revision: int) -> None:
        if revision > self._known_revision:
            self._known_revision = revision

    def _full(self, key: str) -> str:
        return self._prefix + key

    def _kv(self, raw: dict[str, Any]) -> KeyValue:
        key = unb64(raw.get("key")).decode()
        return KeyValue(
            key[len(self._prefix) :],
            unb64(raw.get("value")),
            int(raw.get("create_revision") or 0),
            int(raw.get("mod_revision") or 0),
        )

    def _range_bounds(self, prefix: str) -> tuple[str, str]:
        full = self._full(prefix)
        if not full:
            return "\0", "\0"  # etcd: key "\0" with range_end "\0" is the whole key space
        end = prefix_end(full)
        return full, end if end is not None else "\0"

    # -- revisions -------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        # A linearizable read of one key nobody writes: its header carries the store revision.
        reply = await self._call(
            "/v3/kv/range", {"key": b64(self._prefix + "\0"), "count_only": True}, write=False
        )
        return header_revision(reply)

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def _find_compacted_revision(self) -> int:
        """etcd has no call that reports its compaction point; a read below it fails, so a
        binary search over revisions finds it in about log2(revision) small reads."""
        low, high = 0, self._known_revision  # invariant: reads at high work, at low+... unknown
        if await self._readable(1):
            return 0
        low = 1
        while high - low > 1:
            mid = (low + high) // 2
            if await self._readable(mid):
                high = mid
            else:
                low = mid
        return high

    async def _readable(self, revision: int) -> bool:
        try:
            await self._call(
                "/v3/kv/range",
                {"key": b64(self._prefix + "\0"), "count_only": True, "revision": revision},
                write=False,
            )
        except CompactedError:
            return False
        return True

    def _check_revision(self, revision: int | None) -> int | None:
        if revision is None or revision <= 0:
            return None
        if revision < self._compacted:
            raise CompactedError(revision, self._compacted)
        return revision

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        check_key(key)
        body: dict[str, Any] = {"key": b64(self._full(key))}
        at = self._check_revision(revision)
        if at is not None:
            body["revision"] = at
        reply = await self._call("/v3/kv/range", body, write=False)
        kvs = reply.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def range(
        self,
        prefix: str,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        if limit is not None and limit <= 0:
            limit = None
        start, end = self._range_bounds(prefix)
        if start_after is not None and start_after >= prefix:
            start = self._full(start_after) + "\0"  # the smallest key after start_after
        at = self._check_revision(revision)
        kvs: list[KeyValue] = []
        while True:
            want = _RANGE_PAGE if limit is None else min(_RANGE_PAGE, limit - len(kvs))
            body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": want}
            if at is not None:
                body["revision"] = at
            reply = await self._call("/v3/kv/range", body, write=False)
            if at is None:
                at = header_revision(reply)  # every further page reads this same snapshot
            page = [self._kv(raw) for raw in reply.get("kvs") or []]
            kvs += page
            more = bool(reply.get("more"))
            if not more or (limit is not None and len(kvs) >= limit):
                return RangeResult(kvs=kvs, revision=at, more=more)
            start = self._full(page[-1].key) + "\0"

    async def count(self, prefix: str, revision: int | None = None) -> int:
        start, end = self._range_bounds(prefix)
        body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "count_only": True}
        at = self._check_revision(revision)
        if at is not None:
            body["revision"] = at
        reply = await self._call("/v3/kv/range", body, write=False)
        return int(reply.get("count") or 0)

    # -- writes --------------------------------------------------------------------------------------

    def _compare(self, key: str, expected: int | None) -> dict[str, Any]:
        """mod_revision == expected (0: the key must not exist)."""
        full = b64(self._full(key))
        return {"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": expected or 0}

    def _must_exist(self, key: str, expected: int | None) -> list[dict[str, Any]]:
        """Compares for an update or delete: the key exists (mod_revision > 0) and, when
        ``expected`` is given, its mod_revision is exactly that."""
        exists = {"key": b64(self._full(key)), "target": "MOD", "result": "GREATER", "mod_revision": 0}
        return [exists] if expected is None else [exists, self._compare(key, expected)]

    def _range_op(self, key: str) -> dict[str, Any]:
        return {"request_range": {"key": b64(self._full(key))}}

    async def _txn(self, body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        reply = await self._call("/v3/kv/txn", body, write=True)
        return bool(reply.get("succeeded")), reply

    def _failure_kvs(self, reply: dict[str, Any]) -> list[KeyValue | None]:
        found: list[KeyValue | None] = []
        for response in reply.get("responses") or []:
            kvs = response.get("response_range", {}).get("kvs") or []
            found.append(self._kv(kvs[0]) if kvs else None)
        return found

    async def _txn_existing(self, key: str, expected_mod_revision: int | None,
                            success: dict[str, Any]) -> dict[str, Any]:
        """One transaction: ``success`` when the key exists (with mod_revision
        ``expected_mod_revision`` when given), else KeyNotFoundError or CompareFailedError."""
        ok, reply = await self._txn(
            {
                "compare": self._must_exist(key, expected_mod_revision),
                "success": [success],
                "failure": [self._range_op(key)],
            }
        )
        if not ok:
            current = self._failure_kvs(reply)[0]
            if current is None:
                raise KeyNotFoundError(key)
            raise CompareFailedError(key, current)
        return reply

    async def create(self, key: str, value: bytes) -> KeyValue:
        check_key(key)
        check_value(value)
        full = b64(self._full(key))
        ok, reply = await self._txn(
            {
                "compare": [{"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": 0}],
                "success": [{"request_put": {"key": full, "value": b64_bytes(value)}}],
            }
        )
        if not ok:
            raise KeyExistsError(key)
        revision = header_revision(reply)
        return KeyValue(key, value, revision, revision)

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None) -> KeyValue:
        check_key(key)
        check_value(value)
        full = b64(self._full(key))
        put = {"request_put": {"key": full, "value": b64_bytes(value), "prev_kv": True}}
        reply = await self._txn_existing(key, expected_mod_revision, put)
        revision = header_revision(reply)
        prev = (reply.get("responses") or [{}])[0].get("response_put", {}).get("prev_kv") or {}
        return KeyValue(key, value, int(prev.get("create_revision") or revision), revision)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        check_key(key)
        delete = {"request_delete_range": {"key": b64(self._full(key)), "prev_kv": True}}
        reply = await self._txn_existing(key, expected_mod_revision, delete)
        revision = header_revision(reply)
        deleted = (reply.get("responses") or [{}])[0].get("response_delete_range", {})
        prevs = deleted.get("prev_kvs") or []
        if not prevs:  # deleted between compare and delete cannot happen inside one txn
            raise StoreError(f"etcd deleted {key} without returning its previous value")
        prev = self._kv(prevs[0])
        return KeyValue(key, prev.value, prev.create_revision, revision)

    async def txn(self, ops: Sequence[Op]) -> int:
        checked = check_ops(ops)  # etcd refuses a key twice too ("duplicate key given in txn request")
        if not checked:
            return await self.current_revision()
        # Key order, so watchers see a transaction's events in the order a replay gives them.
        checked.sort(key=lambda op: op.key)
        compares: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        for op in checked:
            full = b64(self._full(op.key))
            if isinstance(op, Put):
                if op.expected_mod_revision is not None:
                    compares.append(self._compare(op.key, op.expected_mod_revision))
                success.append({"request_put": {"key": full, "value": b64_bytes(op.value)}})
            else:
                compares += self._must_exist(op.key, op.expected_mod_revision)
                success.append({"request_delete_range": {"key": full}})
        ok, reply = await self._txn(
            {"compare": compares, "success": success, "failure": [self._range_op(op.key) for op in ops]}
        )
        if ok:
            return header_revision(reply)
        currents = self._failure_kvs(reply)
        for op, current in zip(ops, currents, strict=False):
            failure = _txn_failure(op, current)
            if failure is not None:
                raise failure
        raise CompareFailedError(ops[0].key, currents[0] if currents else None)  # raced: report the first

    # -- watch -------------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> EtcdWatch:
        """Revision 0 (or below) means "after the newest revision this store has seen", fixed
        now: every write this process made before the call is excluded, every later one is
        included."""
        self._ensure_running()
        if start_revision <= 0:
            start_revision = self._known_revision + 1
        start, end = self._range_bounds(prefix)
        watch = EtcdWatch(self, start, end, start_revision)
        self._watches.add(watch)
        return watch

    def _watch_ended(self, watch: EtcdWatch) -> None:
        self._watches.discard(watch)

    def _watch_compacted(self, compact_revision: int) -> None:
        if compact_revision > self._compacted:
            self._compacted = compact_revision

    # -- compaction ------------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """etcd compaction (global: every prefix of the etcd). Compacting at or below the
        already compacted revision does nothing."""
        self._ensure_running()
        if revision <= self._compacted:
            return
        current = await self.current_revision()
        if revision > current:
            raise FutureRevisionError(revision, current)
        try:
            await self._call("/v3/kv/compaction", {"revision": revision, "physical": False}, write=True)
        except CompactedError:
            pass  # another server compacted at or past it already
        if revision > self._compacted:
            self._compacted = revision

    async def _compact_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                target = await self.current_revision() - self._history_window
                if target > self._compacted:
                    await self.compact(target)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("automatic etcd compaction failed: %s", exc)
            except Exception:
                log.exception("automatic etcd compaction failed")


def _txn_failure(op: Op, current: KeyValue | None) -> StoreError | None:
    """Why ``op`` fails against ``current``, with the SQLite store's rules (the contract)."""
    expected = op.expected_mod_revision
    mod = current.mod_revision if current is not None else 0
    if isinstance(op, Put):
        if expected is not None and expected != mod:
            return CompareFailedError(op.key, current)
        return None
    if current is None:
        return KeyNotFoundError(op.key)
    if expected is not None and expected != mod:
        return CompareFailedError(op.key, current)
    return None
