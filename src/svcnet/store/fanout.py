"""In-process watch fan-out for a store whose writes all pass through this process.

A watch is a replay of stored history followed by live events. The seam is exact because a
subscription is registered in the same event-loop step that reads the store's published
revision: every event at or below that revision is replayed from storage, every event above it
arrives through the subscription, and publishing a batch and advancing the published revision
happen together in one loop callback.

A subscriber's buffer is bounded: when a consumer falls that far behind, its watch ends with
WatchOverflowError instead of holding the writers back or growing without limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from svcnet.store.interface import Event, StoreError, UnavailableError, WatchIterator, WatchOverflowError

# Where a replay has got to: (revision, key) of the last stored event already read.
ReplayPosition = tuple[int, str]
# (prefix, after, first revision, last revision) -> the next chunk of stored events under
# prefix with first <= revision <= last, after position ``after`` (None: from the start) in
# (revision, key) order; an empty chunk means the replay is complete. Being a plain
# coroutine with an explicit position, a cancelled call loses nothing and can simply be retried.
ReplayFn = Callable[[str, ReplayPosition | None, int, int], Awaitable[list[Event]]]


class _Subscriber:
    __slots__ = ("closed_with", "events", "overflowed", "prefix", "waiter")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.events: deque[Event] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed_with: StoreError | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class WatchHub:
    """Routes published events to subscribers by key prefix."""

    def __init__(self, buffer_size: int) -> None:
        if buffer_size < 1:
            raise ValueError("watch buffer size must be at least 1")
        self._buffer_size = buffer_size
        self._by_prefix: dict[str, set[_Subscriber]] = {}
        self._closed_with: StoreError | None = None

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._by_prefix.values())

    def subscribe(self, prefix: str) -> _Subscriber:
        if self._closed_with is not None:
            raise self._closed_with
        sub = _Subscriber(prefix)
        self._by_prefix.setdefault(prefix, set()).add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        subs = self._by_prefix.get(sub.prefix)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._by_prefix[sub.prefix]

    def publish(self, events: list[Event]) -> None:
        """Deliver one committed batch (in revision order) to every matching subscriber."""
        if not events or not self._by_prefix:
            return
        for prefix, subs in list(self._by_prefix.items()):
            matching = events if not prefix else [e for e in events if e.kv.key.startswith(prefix)]
            if not matching:
                continue
            for sub in list(subs):
                if len(sub.events) >= self._buffer_size:
                    # A whole batch is taken or none of it, so the consumer's last revision is
                    # always complete; a consumer that keeps up is never cut off by one large
                    # group commit, so the bound is buffer_size plus one batch.
                    sub.overflowed = True
                    self.unsubscribe(sub)
                else:
                    sub.events.extend(matching)
                sub.wake()

    def close(self, reason: StoreError | None = None) -> None:
        """End every watch; later subscriptions fail with ``reason``."""
        self._closed_with = reason or UnavailableError("store closed")
        for subs in list(self._by_prefix.values()):
            for sub in subs:
                sub.closed_with = self._closed_with
                sub.wake()
        self._by_prefix.clear()


class WatchStream(WatchIterator):
    """The async iterator a ``Store.watch`` call returns. Breaking out of ``async for``,
    ``aclose()`` or dropping the last reference ends the subscription."""

    def __init__(
        self,
        hub: WatchHub,
        prefix: str,
        start_revision: int,
        published_revision: Callable[[], int],
        replay: ReplayFn,
    ) -> None:
        self._hub = hub
        self._prefix = prefix
        self._start = start_revision
        self._published_revision = published_revision
        self._replay_fn = replay
        self._sub: _Subscriber | None = None
        self._replaying = False
        self._replay_until = 0
        self._replay_position: ReplayPosition | None = None
        self._pending: deque[Event] = deque()
        self._last_revision = 0
        self._finished = False

    def _end_on_error(self) -> None:
        self._unsubscribe()

    async def _next(self) -> Event:
        if self._sub is None:
            self._begin()
        while True:
            if self._pending:
                return self._deliver(self._pending.popleft())
            if self._replaying:
                chunk = await self._replay_fn(
                    self._prefix, self._replay_position, self._start, self._replay_until
                )
                if chunk:
                    self._replay_position = (chunk[-1].kv.mod_revision, chunk[-1].kv.key)
                    self._pending.extend(chunk)
                else:
                    self._replaying = False
                continue
            sub = self._sub
            assert sub is not None
            while sub.events:
                event = sub.events.popleft()
                if event.kv.mod_revision >= self._start:
                    return self._deliver(event)
            if sub.closed_with is not None:
                raise sub.closed_with
            if sub.overflowed:
                raise WatchOverflowError(self._last_revision or self._start - 1)
            sub.waiter = asyncio.get_running_loop().create_future()
            try:
                await sub.waiter
            finally:
                sub.waiter = None

    def _begin(self) -> None:
        # Subscribe and read the published revision with no await in between: the seam.
        self._sub = self._hub.subscribe(self._prefix)
        published = self._published_revision()
        if self._start <= 0:  # etcd: revision 0 means "from now on"
            self._start = published + 1
        if self._start <= published:
            self._replaying = True
            self._replay_until = published

    def _deliver(self, event: Event) -> Event:
        self._last_revision = event.kv.mod_revision
        return event

    def _unsubscribe(self) -> None:
        self._finished = True
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)
            self._sub.events.clear()

    async def aclose(self) -> None:
        self._unsubscribe()
        self._replaying = False

    def __del__(self) -> None:
        self._unsubscribe()
