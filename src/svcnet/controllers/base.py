"""What every controller shares: a rate-limited queue of keys, workers that call ``sync(key)``
and retry failures with back-off up to a limit, and Event recording."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections.abc import Hashable
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.controllers.workqueue import RateLimitedQueue, ShutDownError

Obj = dict[str, Any]

# Upstream's controllers give up on a key after 15 retries (it is queued again by its next change).
MAX_RETRIES = 15


class RetryLaterError(Exception):
    """The sync could not finish now (a stale cache, a missing node) and should be retried."""


def rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Controller:
    """Subclasses set ``name`` and implement ``sync(key)``."""

    name = "controller"

    def __init__(self, client: ApiClient, workers: int = 1, max_retries: int = MAX_RETRIES,
                 base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.client = client
        self.workers = workers
        self.max_retries = max_retries
        self.queue = RateLimitedQueue(base_delay, max_delay)
        self.log = logging.getLogger(f"svcnet.controllers.{self.name}")
        self._tasks: list[asyncio.Task[None]] = []

    async def sync(self, key: Hashable) -> None:
        raise NotImplementedError

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.workers):
            self._tasks.append(loop.create_task(self._worker(), name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        self.queue.shut_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDownError:
                return
            try:
                await self.sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._handle_error(key, exc)
            finally:
                self.queue.done(key)

    def _handle_error(self, key: Hashable, exc: Exception) -> None:
        if self.queue.num_requeues(key) < self.max_retries:
            expected = isinstance(exc, RetryLaterError) or _is_conflict(exc)
            level = logging.DEBUG if expected else logging.WARNING
            self.log.log(level, "syncing %s failed (retrying): %s", key, _describe(exc))
            self.queue.add_rate_limited(key)
        else:
            self.log.error("dropping %s out of the queue after %d retries: %s", key, self.max_retries,
                           _describe(exc))
            self.queue.forget(key)

    async def record_event(self, obj: Obj, event_type: str, reason: str, message: str,
                           component: str) -> None:
        """A core/v1 Event about ``obj``; failures are logged, never raised."""
        md = obj.get("metadata") or {}
        namespace = md.get("namespace") or "default"
        now = rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{md.get('name', 'object')}.{os.urandom(8).hex()}", "namespace": namespace},
            "involvedObject": {
                "kind": obj.get("kind", ""),
                "apiVersion": obj.get("apiVersion", "v1"),
                "namespace": md.get("namespace", ""),
                "name": md.get("name", ""),
                "uid": md.get("uid", ""),
                "resourceVersion": md.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": event_type,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        with contextlib.suppress(Exception):
            await self.client.create("events", event, namespace)
            return
        self.log.warning("could not record event %s for %s/%s", reason, namespace, md.get("name"))


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, ApiError) and exc.code == 409


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.code} {exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
