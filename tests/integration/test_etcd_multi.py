"""Two API servers on one etcd: any of them serves any request, a watch on one sees the
writes made through the other in order with no gap, and ClusterIPs stay unique when both
allocate at once (allocation keys claimed in the Service's own etcd transaction)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_helpers import Rest, service, start_on_etcd

from svcnet.apiserver.launcher import ApiServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import EtcdCluster, etcd_missing_reason

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServerProcess, ApiServerProcess]]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    etcd = EtcdCluster.start(1)
    started: list[ApiServerProcess] = []
    try:
        for name in ("a", "b"):
            started.append(start_on_etcd(tmp_path_factory.mktemp(f"server-{name}") / "data", etcd.url))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop(signal.SIGKILL)
        etcd.stop()


async def make_namespace(rest: Rest, name: str) -> None:
    status, body = await rest.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body


async def test_a_watch_on_one_server_sees_every_write_through_the_other_in_order(
    servers: tuple[ApiServerProcess, ApiServerProcess],
) -> None:
    a, b = Rest(servers[0]), Rest(servers[1])
    try:
        await make_namespace(b, "multi")
        path = "/api/v1/namespaces/multi/services"
        status, listed = await a.call("GET", path)  # A serves B's namespace at once
        assert status == 200, listed
        stream = await a.watch(f"{path}?watch=1&resourceVersion={listed['metadata']['resourceVersion']}")

        writes: list[tuple[int, str, str]] = []  # (resourceVersion, event type, name)
        through = [a, b]
        for i in range(60):
            client = through[i % 2]  # clients alternate between the servers
            name = f"s{i // 3}"
            step = i % 3
            if step == 0:
                status, obj = await client.call("POST", path, service(name, "multi"))
                assert status == 201, obj
                writes.append((int(obj["metadata"]["resourceVersion"]), "ADDED", name))
            elif step == 1:
                # Read through the other server first: it must already see the create.
                status, obj = await through[(i + 1) % 2].call("GET", f"{path}/{name}")
                assert status == 200, obj
                obj["metadata"].setdefault("labels", {})["step"] = str(i)
                status, obj = await client.call("PUT", f"{path}/{name}", obj)
                assert status == 200, obj
                writes.append((int(obj["metadata"]["resourceVersion"]), "MODIFIED", name))
            else:
                status, obj = await client.call("DELETE", f"{path}/{name}")
                assert status == 200, obj
                writes.append((0, "DELETED", name))

        seen: list[tuple[int, str, str]] = []
        while len(seen) < len(writes):
            line = await asyncio.wait_for(stream.content.readline(), 10)
            assert line, "watch ended early"
            event = json.loads(line)
            meta = event["object"]["metadata"]
            seen.append((int(meta["resourceVersion"]), event["type"], meta["name"]))
        stream.close()

        assert [(kind, name) for _, kind, name in seen] == [(kind, name) for _, kind, name in writes]
        revisions = [rv for rv, _, _ in seen]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
        for (seen_rv, _, _), (written_rv, _, _) in zip(seen, writes, strict=True):
            if written_rv:
                assert seen_rv == written_rv
    finally:
        await a.close()
        await b.close()


async def test_parallel_creates_on_both_servers_get_distinct_cluster_ips(
    servers: tuple[ApiServerProcess, ApiServerProcess],
) -> None:
    a, b = Rest(servers[0]), Rest(servers[1])
    try:
        await make_namespace(a, "alloc")
        path = "/api/v1/namespaces/alloc/services"
        semaphore = asyncio.Semaphore(40)

        async def create(i: int) -> str:
            async with semaphore:
                status, obj = await (a, b)[i % 2].call("POST", path, service(f"p{i}", "alloc"))
            assert status == 201, obj
            return obj["spec"]["clusterIP"]

        ips = await asyncio.gather(*(create(i) for i in range(200)))
        assert len(set(ips)) == 200
        assert all(ip and ip != "None" for ip in ips)
        # Both servers report the same allocations.
        for rest in (a, b):
            status, listed = await rest.call("GET", path)
            assert status == 200
            assert sorted(item["spec"]["clusterIP"] for item in listed["items"]) == sorted(ips)
    finally:
        await a.close()
        await b.close()
