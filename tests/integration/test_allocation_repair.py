"""Allocation state across crashes and damage: kill -9 during a burst of creates and deletes
leaves no leaked or doubled address or port, and the repair loop restores missing keys,
releases leaked ones (after two passes) and reports what it cannot fix as Events."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import orjson

from svcnet.apiserver.allocator.service import IP_PREFIX, PORT_PREFIX, held_ips, held_ports
from svcnet.apiserver.launcher import start_api_server
from svcnet.client.api import ApiClient, ApiError
from svcnet.store.interface import Delete, Put
from svcnet.store.sqlite import SqliteStore

SERVICES_PREFIX = "/registry/services/specs/"
INFO = ["--log-level", "info", "--no-controllers"]


async def stored_state(data_dir: Path) -> tuple[list[dict], dict[str, bytes], dict[int, bytes]]:
    store = SqliteStore(str(data_dir / "state.db"))
    await store.start()
    try:
        services = [orjson.loads(kv.value) for kv in (await store.range(SERVICES_PREFIX)).kvs]
        ips = {kv.key[len(IP_PREFIX) :]: kv.value for kv in (await store.range(IP_PREFIX)).kvs}
        ports = {int(kv.key[len(PORT_PREFIX) :]): kv.value for kv in (await store.range(PORT_PREFIX)).kvs}
    finally:
        await store.close()
    return services, ips, ports


def assert_consistent(services: list[dict], ips: dict[str, bytes], ports: dict[int, bytes]) -> None:
    """Every held value has its key, owned by its holder; no value is held twice; no key leaks."""
    held_ip: dict[str, str] = {}
    held_port: dict[int, str] = {}
    for svc in services:
        owner = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        for ip in held_ips(svc):
            assert ip not in held_ip, f"{ip} held by {held_ip[ip]} and {owner}"
            held_ip[ip] = owner
        for port in held_ports(svc):
            assert port not in held_port, f"{port} held by {held_port[port]} and {owner}"
            held_port[port] = owner
    assert set(ips) == set(held_ip), set(ips) ^ set(held_ip)
    assert set(ports) == set(held_port), set(ports) ^ set(held_port)
    for ip, raw in ips.items():
        owner = orjson.loads(raw)
        assert f"{owner['namespace']}/{owner['name']}" == held_ip[ip]


def wait_for_log(server, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the server log:\n{server.log()[-3000:]}")


async def test_kill_9_during_creates_and_deletes_leaves_allocations_consistent(tmp_path) -> None:
    data_dir = tmp_path / "data"
    server = start_api_server(data_dir, extra_args=INFO)
    api = ApiClient.from_kubeconfig(str(server.kubeconfig_path), timeout=5)
    stop = asyncio.Event()

    async def churn(worker: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{worker}-{i}"
            i += 1
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]},
            }
            try:
                await api.create("services", body, "default")
                if i % 2:
                    await api.delete("services", name, "default")
            except Exception:  # the server is being killed: any failure
                if stop.is_set():
                    return
                await asyncio.sleep(0.01)

    workers = [asyncio.create_task(churn(w)) for w in range(16)]
    try:
        await asyncio.sleep(1.0)
        server.stop(signal.SIGKILL)  # in the middle of the burst
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        stop.set()
        await api.close()
    services, ips, ports = await stored_state(data_dir)
    assert len(services) > 20, "the burst should have created services before the kill"
    assert_consistent(services, ips, ports)

    restarted = start_api_server(data_dir, extra_args=INFO)
    try:
        log = wait_for_log(restarted, "allocation repair at revision")
        assert "nothing to fix" in log, log[-2000:]
    finally:
        restarted.stop()


async def damage(data_dir: Path) -> dict:
    """Break the allocation state the way a bug or a hand edit could, directly in the store."""
    store = SqliteStore(str(data_dir / "state.db"))
    await store.start()
    try:
        kvs = (await store.range(SERVICES_PREFIX + "default/")).kvs
        by_name = {orjson.loads(kv.value)["metadata"]["name"]: (kv, orjson.loads(kv.value)) for kv in kvs}
        _, victim = by_name["victim"]
        ip = victim["spec"]["clusterIP"]
        port = victim["spec"]["ports"][0]["nodePort"]
        # 1. its keys are lost; 2. a key nobody holds; 3. a service whose IP is outside the range
        # (as after a range change); 4. a second service holding victim's node port.
        _, other = by_name["other"]
        other["spec"]["clusterIP"] = other["spec"]["clusterIPs"][0] = "172.30.0.9"
        twin_kv, twin = by_name["twin"]
        twin_port = twin["spec"]["ports"][0]["nodePort"]
        twin["spec"]["ports"][0]["nodePort"] = port
        twin["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"  # the later holder
        await store.txn(
            [
                Delete(IP_PREFIX + ip),
                Delete(f"{PORT_PREFIX}{port}"),
                Put(IP_PREFIX + "10.96.200.200", b'{"namespace":"gone","name":"gone"}'),
                Put(by_name["other"][0].key, orjson.dumps(other)),
                Put(twin_kv.key, orjson.dumps(twin)),
            ]
        )
        return {"ip": ip, "port": port, "twin_port": twin_port}
    finally:
        await store.close()


async def test_repair_restores_releases_and_reports(tmp_path) -> None:
    data_dir = tmp_path / "data"
    server = start_api_server(data_dir, extra_args=INFO)
    async with ApiClient.from_kubeconfig(str(server.kubeconfig_path)) as api:
        for name in ("victim", "other", "twin"):
            await api.create(
                "services",
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name},
                    "spec": {"type": "NodePort", "ports": [{"port": 80}]},
                },
                "default",
            )
    server.stop()
    broken = await damage(data_dir)

    server = start_api_server(data_dir, extra_args=[*INFO, "--allocation-repair-interval", "0.3"])
    try:
        wait_for_log(server, "the ClusterIP 10.96.200.200 appears to have leaked")
        async with ApiClient.from_kubeconfig(str(server.kubeconfig_path)) as api:
            events = (await api.list("events", "default"))["items"]
            seen = {(e["involvedObject"]["name"], e["reason"]) for e in events}
            assert ("victim", "ClusterIPNotAllocated") in seen
            assert ("victim", "PortNotAllocated") in seen
            assert ("other", "ClusterIPOutOfRange") in seen
            assert ("twin", "PortAlreadyAllocated") in seen
            messages = {e["reason"]: e["message"] for e in events}
            assert (
                messages["ClusterIPNotAllocated"]
                == f"Cluster IP [IPv4]:{broken['ip']} is not allocated; repairing"
            )
            assert messages["PortAlreadyAllocated"] == (
                f"Port {broken['port']} was assigned to multiple services; please recreate service"
            )
            assert all(e["type"] == "Warning" for e in events)
            # The restored keys are real: the values cannot be taken by someone else.
            with contextlib.suppress(ApiError):
                await api.create(
                    "services",
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": "thief"},
                        "spec": {"clusterIP": broken["ip"], "ports": [{"port": 80}]},
                    },
                    "default",
                )
                raise AssertionError("a repaired address was handed out twice")
    finally:
        server.stop()
    _, ips, ports = await stored_state(data_dir)
    assert broken["ip"] in ips and broken["port"] in ports
    # Restored in the victim's name, as its own transaction would have written them.
    victim = {"namespace": "default", "name": "victim"}
    assert orjson.loads(ips[broken["ip"]]) == victim and orjson.loads(ports[broken["port"]]) == victim
    assert "10.96.200.200" not in ips
    # twin's own old port was no longer held by anyone, so it leaked and was released too.
    assert broken["twin_port"] not in ports
