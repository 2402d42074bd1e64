"""Durability: every create the server acknowledged survives `kill -9`, and resourceVersion
never goes backwards across the restart."""

from __future__ import annotations

import asyncio
import signal
import ssl

import aiohttp

from svcnet.apiserver.launcher import ApiServerProcess


def _headless_service(name: str) -> dict:
    # Headless needs no ClusterIP allocation, so the test isolates durability from allocators.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"crash-test": "yes"}},
        "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]},
    }


async def _write_until_killed(server: ApiServerProcess, kill_after: int) -> tuple[set[str], int]:
    """Eight writers create Services; after ``kill_after`` acknowledgements the server gets
    SIGKILL while the writers are still sending."""
    acked: set[str] = set()
    max_rv = 0
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    headers = {"Authorization": f"Bearer {server.token}"}
    url = f"{server.url}/api/v1/namespaces/default/services"
    killed = asyncio.Event()

    async def writer(session: aiohttp.ClientSession, worker: int) -> None:
        nonlocal max_rv
        n = 0
        while not killed.is_set() or n < 3:  # keep a few requests in flight across the kill
            name = f"crash-{worker}-{n}"
            n += 1
            try:
                async with session.post(url, json=_headless_service(name), ssl=ctx) as resp:
                    if resp.status == 201:
                        body = await resp.json()
                        acked.add(name)
                        max_rv = max(max_rv, int(body["metadata"]["resourceVersion"]))
                        if len(acked) >= kill_after and not killed.is_set():
                            server.proc.send_signal(signal.SIGKILL)
                            killed.set()
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                if killed.is_set():
                    return
                await asyncio.sleep(0.01)

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        await asyncio.gather(*(writer(session, w) for w in range(8)))
    return acked, max_rv


def test_acknowledged_creates_survive_kill_9(server_factory, tmp_path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir)
    acked, max_rv = asyncio.run(_write_until_killed(first, kill_after=300))
    assert first.proc.wait(10) == -signal.SIGKILL
    assert len(acked) >= 300

    second = server_factory(data_dir)
    from kubernetes import client

    api = client.CoreV1Api(second.python_client())
    stored = api.list_namespaced_service("default", label_selector="crash-test=yes")
    names = {s.metadata.name for s in stored.items}
    missing = acked - names
    assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {sorted(missing)[:5]}"
    assert int(stored.metadata.resource_version) >= max_rv

    created = api.create_namespaced_service("default", _headless_service("after-restart"))
    assert int(created.metadata.resource_version) > max_rv
