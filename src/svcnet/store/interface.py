"""The revisioned key-value store every datastore implements (SQLite now, etcd later).

The model is etcd v3's, reduced to what an API server needs:

- One global revision counter. Every committed write gets the next revision; a transaction of
  several operations gets one revision for all of them (as in etcd). The revision of a key's
  latest write is its ``mod_revision``, which the API server reports as ``resourceVersion``.
- Values are opaque bytes (the API server stores JSON without ``metadata.resourceVersion``).
- Compare-and-swap through ``expected_mod_revision``: ``0`` means "the key must not exist",
  a positive number means "the key's current mod_revision must be exactly this", ``None`` means
  unconditional.
- History is kept for watch resume until ``compact(rev)`` drops every superseded version at or
  below ``rev``; a watch or a read at a compacted revision raises ``CompactedError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Self


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, ``kv`` holds the last value with ``mod_revision`` set to the
    deletion revision (what kube-apiserver sends in a DELETED watch event)."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    expected_mod_revision: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    expected_mod_revision: int | None = None


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the read was served at
    more: bool  # True when ``limit`` cut the result


class StoreError(Exception):
    """Base class for store failures the API server turns into Status replies."""


class KeyExistsError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class CompareFailedError(StoreError):
    """A compare-and-swap lost: ``current`` is the key's present value (None if absent)."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"compare failed for {key}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (compacted up to {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current


class UnavailableError(StoreError):
    """The datastore cannot serve the request now (lost quorum, closed)."""


class WatchOverflowError(StoreError):
    """A watcher fell too far behind the writers and its buffer filled up, so the store ended
    that watch rather than slow every writer down. ``last_revision`` is the revision of the last
    event delivered on it; the consumer may re-watch from ``last_revision + 1`` (which may in
    turn raise CompactedError) or relist (the API server answers 410 Expired)."""

    def __init__(self, last_revision: int) -> None:
        super().__init__(f"watch fell behind after revision {last_revision} and was closed")
        self.last_revision = last_revision


class WatchIterator:
    """What a watch stream does as an async iterator and context manager: ``_next()`` gives the
    next event; an error ends the stream through ``_end_on_error()``, a cancellation (a
    BaseException) leaves it usable, so callers may wait for the next event with a timeout."""

    _finished: bool

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        try:
            return await self._next()
        except Exception:
            self._end_on_error()
            raise

    async def _next(self) -> Event:
        raise NotImplementedError

    def _end_on_error(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class Store(ABC):
    """Async interface; implementations are safe for concurrent use from one event loop."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def current_revision(self) -> int: ...

    @property
    @abstractmethod
    def compacted_revision(self) -> int: ...

    @abstractmethod
    async def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        """The key's value at ``revision`` (latest when None), or None if absent then."""

    @abstractmethod
    async def range(
        self,
        prefix: str,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        """Live keys under ``prefix`` in key order, as of ``revision`` (latest when None),
        beginning after ``start_after`` (for paging), at most ``limit`` of them."""

    @abstractmethod
    async def count(self, prefix: str, revision: int | None = None) -> int: ...

    @abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises KeyExistsError."""

    @abstractmethod
    async def update(self, key: str, value: bytes, expected_mod_revision: int | None) -> KeyValue:
        """Raises KeyNotFoundError or CompareFailedError."""

    @abstractmethod
    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        """Returns the deleted value with mod_revision = the deletion revision.
        Raises KeyNotFoundError or CompareFailedError."""

    @abstractmethod
    async def txn(self, ops: Sequence[Op]) -> int:
        """Apply every op atomically at one new revision, or none of them.
        Raises CompareFailedError (naming the first failing key) or KeyNotFoundError."""

    @abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Events for keys under ``prefix`` with revision >= ``start_revision``, in revision
        order, then live. Raises CompactedError (on first iteration) if history before
        ``start_revision`` is gone."""

    @abstractmethod
    async def compact(self, revision: int) -> None: ...
