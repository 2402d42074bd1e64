"""A rate-limited work queue with client-go's workqueue semantics, for asyncio.

- A key added while it waits is not queued twice (dedup); a key added while a worker
  processes it is queued again once that worker calls ``done`` (never processed concurrently).
- ``add_rate_limited`` re-adds after base·2^n (n = the key's failures so far), capped;
  ``forget`` resets the count after a success; ``num_requeues`` lets the caller give up.
- ``add_after`` delays an add (e.g. a batching period).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable


class ShutDownError(Exception):
    """The queue was shut down; workers should exit."""


class RateLimitedQueue:
    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._ready = asyncio.Event()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._ready.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def when(self, key: Hashable) -> float:
        """The delay the next rate-limited add of ``key`` gets (and counts the failure)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return min(self.base_delay * (2**failures), self.max_delay)

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.when(key))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> Hashable:
        while not self._queue:
            if self._shutting_down:
                raise ShutDownError
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def shut_down(self) -> None:
        self._shutting_down = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._ready.set()
