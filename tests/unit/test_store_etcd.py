"""Behaviour particular to the etcd backend (the shared contract is in test_store.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from svcnet.store.etcd import EtcdStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import etcd_missing_reason, shared_etcd

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pair(tmp_path: Path) -> tuple[EtcdStore, EtcdStore]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    endpoints = shared_etcd().endpoints
    mine = EtcdStore(endpoints, prefix=f"/svt-{tmp_path.name}-mine", compact_interval=0)
    other = EtcdStore(endpoints, prefix=f"/svt-{tmp_path.name}-other", compact_interval=0)
    await mine.start()
    await other.start()
    yield mine, other
    await mine.close()
    await other.close()


async def test_progress_notifications_advance_an_idle_watch(pair: tuple[EtcdStore, EtcdStore]) -> None:
    mine, other = pair
    first = await mine.create("/k/a", b"1")
    watch = mine.watch("/k/", first.mod_revision)
    assert (await asyncio.wait_for(anext(watch), 5)).kv == first
    assert watch.progress_revision == first.mod_revision
    # Writes elsewhere in the same etcd advance its revision without an event on this watch;
    # etcd's progress notification (every second in the test etcd) tells the watch so. The
    # stream is read while someone waits for the next event, as the watch cache always does.
    elsewhere = await other.create("/k/b", b"2")
    pending = asyncio.ensure_future(anext(watch))
    for _ in range(100):
        if watch.progress_revision >= elsewhere.mod_revision:
            break
        await asyncio.sleep(0.1)
    assert watch.progress_revision >= elsewhere.mod_revision
    assert not pending.done()  # no event was made up for it
    pending.cancel()
    await watch.aclose()


async def test_a_second_store_on_the_same_prefix_sees_the_same_revisions(
    pair: tuple[EtcdStore, EtcdStore], tmp_path: Path
) -> None:
    mine, _ = pair
    twin = EtcdStore(mine.endpoints, prefix=f"/svt-{tmp_path.name}-mine", compact_interval=0)
    await twin.start()
    try:
        watch = twin.watch("/k/", await twin.current_revision() + 1)
        created = await mine.create("/k/x", b"v")
        assert (await twin.get("/k/x")) == created
        assert (await asyncio.wait_for(anext(watch), 5)).kv == created
        await watch.aclose()
    finally:
        await twin.close()
