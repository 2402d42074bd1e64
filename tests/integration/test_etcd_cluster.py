"""The API server on a three-member etcd cluster: losing one member loses no acknowledged
write and the API keeps serving; losing the majority makes writes fail with a clear 5xx
Status, and the API recovers when the members return."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_helpers import Rest, service, start_on_etcd, wait_ready

from svcnet.apiserver.launcher import ApiServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import EtcdCluster, etcd_missing_reason, leader

pytestmark = pytest.mark.timeout(120)

NS = "etcdha"
SVC = f"/api/v1/namespaces/{NS}/services"


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    etcd = EtcdCluster.start(3)
    try:
        yield etcd
    finally:
        etcd.stop()


@pytest.fixture
def server(cluster: EtcdCluster, tmp_path: Path) -> Iterator[ApiServerProcess]:
    proc = start_on_etcd(tmp_path / "data", cluster.url)
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


async def test_one_member_down_loses_nothing_majority_down_is_a_clear_5xx(
    cluster: EtcdCluster, server: ApiServerProcess
) -> None:
    rest = Rest(server)
    try:
        status, body = await rest.call("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert status == 201, body
        acknowledged: list[str] = []
        failed: list[tuple[int, str]] = []
        stop = asyncio.Event()

        async def writer(worker: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"w{worker}-{i}"
                status, body = await rest.call("POST", SVC, service(name, NS))
                if status == 201:
                    acknowledged.append(name)
                else:
                    assert body["kind"] == "Status" and status >= 500, (status, body)
                    failed.append((status, body["message"]))
                i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(8)]
        while len(acknowledged) < 150:
            await asyncio.sleep(0.01)
        # Kill the leader mid-stream: the hardest member to lose.
        victim = leader(cluster)
        victim.stop(signal.SIGKILL)
        killed_at = len(acknowledged)
        while len(acknowledged) < killed_at + 300:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*writers)

        # Every acknowledged create is there, read through the API after the failover.
        status, listed = await rest.call("GET", SVC)
        assert status == 200, listed
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert set(acknowledged) <= names
        # A write whose reply was lost may exist without an acknowledgement; nothing else may.
        assert len(names) - len(acknowledged) <= len(failed)

        # Majority gone: one member of three is left.
        second = next(m for m in cluster.members if m.running())
        second.stop(signal.SIGKILL)
        started = time.monotonic()
        status, body = await rest.call("POST", SVC, service("no-quorum", NS))
        assert status in (500, 503, 504), (status, body)
        assert body["kind"] == "Status" and body["status"] == "Failure"
        assert "etcd" in body["message"]
        assert time.monotonic() - started < 20
        print(f"acknowledged {len(acknowledged)}, failed {len(failed)} {failed[:2]}; "
              f"no-quorum write answered {status} in {time.monotonic() - started:.1f}s: {body['message']}")

        status, text = await rest.call("GET", "/readyz")
        assert status == 500 and "[-]etcd failed" in text, (status, text)
        assert (await rest.call("GET", "/livez"))[0] == 200  # alive, just not ready

        # Members return: the API recovers by itself and still holds every acknowledged write.
        for member in (victim, second):
            cluster.launch(member)
        cluster.wait_healthy(30)
        await asyncio.to_thread(wait_ready, server, 30)
        deadline = time.monotonic() + 30
        while True:
            status, body = await rest.call("POST", SVC, service("after-recovery", NS))
            if status == 201 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 201, body
        status, listed = await rest.call("GET", SVC)
        assert status == 200
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert set(acknowledged) | {"after-recovery"} <= names
    finally:
        await rest.close()
