"""A bounded-frequency runner (upstream's BoundedFrequencyRunner, asyncio flavour).

`run()` asks for a sync; requests that arrive while one is pending coalesce. Consecutive runs are
at least `min_interval` apart (completion to start) so bursts of changes are batched; the
function also runs at least every `max_interval`; `retry_after(t)` schedules a retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("svcnet.proxy.runner")


class BoundedFrequencyRunner:
    def __init__(self, name: str, fn: Callable[[], Awaitable[None]], min_interval: float,
                 max_interval: float) -> None:
        self.name = name
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._wake = asyncio.Event()
        self._retry_at: float | None = None
        self._last_run_end = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def run(self) -> None:
        self._wake.set()

    def retry_after(self, seconds: float) -> None:
        at = time.monotonic() + seconds
        if self._retry_at is None or at < self._retry_at:
            self._retry_at = at
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            deadline = self._last_run_end + self.max_interval
            if self._retry_at is not None:
                deadline = min(deadline, self._retry_at)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(deadline - now, 0))
            except TimeoutError:
                pass
            # Honour the minimum interval: coalesce everything that arrives meanwhile.
            wait = self._last_run_end + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            self._retry_at = None
            try:
                await self.fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: run failed", self.name)
            self.runs += 1
            self._last_run_end = time.monotonic()
