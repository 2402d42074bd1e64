"""The controllers' work queue (client-go workqueue semantics) and the worker loop's retries."""

from __future__ import annotations

import asyncio

import pytest

from svcnet.controllers.base import Controller, RetryLaterError
from svcnet.controllers.leaderelection import LeaderElectionConfig
from svcnet.controllers.workqueue import RateLimitedQueue, ShutDownError


async def test_a_waiting_key_is_queued_once() -> None:
    q = RateLimitedQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_a_key_added_while_processing_comes_back_after_done_never_concurrently() -> None:
    q = RateLimitedQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed again while a worker holds it
    assert len(q) == 0  # not handed to a second worker
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


def test_rate_limited_delays_double_from_5ms_and_are_capped() -> None:
    q = RateLimitedQueue(base_delay=0.005, max_delay=0.1)
    delays = [q.when("k") for _ in range(7)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    assert q.num_requeues("k") == 7
    q.forget("k")
    assert q.num_requeues("k") == 0 and q.when("k") == 0.005


async def test_add_after_delivers_later_and_shutdown_wakes_workers() -> None:
    q = RateLimitedQueue()
    q.add_after("late", 0.02)
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "late"
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shut_down()
    with pytest.raises(ShutDownError):
        await asyncio.wait_for(waiter, 1)


class Flaky(Controller):
    name = "flaky"

    def __init__(self, failures: int, max_retries: int = 15) -> None:
        super().__init__(client=None, max_retries=max_retries, base_delay=0.001)  # type: ignore[arg-type]
        self.failures = failures
        self.calls = 0
        self.succeeded = asyncio.Event()

    async def sync(self, key) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryLaterError("not yet")
        self.succeeded.set()


async def test_worker_retries_a_failing_key_then_forgets_its_failures() -> None:
    c = Flaky(failures=3)
    c.start()
    try:
        c.queue.add("k")
        await asyncio.wait_for(c.succeeded.wait(), 2)
        assert c.calls == 4 and c.queue.num_requeues("k") == 0
    finally:
        await c.stop()


async def test_worker_gives_up_after_max_retries() -> None:
    c = Flaky(failures=100, max_retries=3)
    c.start()
    try:
        c.queue.add("k")
        await asyncio.sleep(0.3)
        assert c.calls == 4  # the first try and three retries
        assert not c.succeeded.is_set() and c.queue.num_requeues("k") == 0
    finally:
        await c.stop()


def test_leader_election_timings_must_nest() -> None:
    assert LeaderElectionConfig().lease_duration == 15.0  # upstream defaults: 15 / 10 / 2 s
    with pytest.raises(ValueError):
        LeaderElectionConfig(lease_duration=5, renew_deadline=10, retry_period=2)
