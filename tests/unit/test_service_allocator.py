"""ClusterIP and NodePort allocation, atomic with the Service write (issue #4)."""

from __future__ import annotations

import asyncio
import ipaddress
import random

import orjson
import pytest

from svcnet.api.errors import StatusError
from svcnet.apiserver.allocator.ranges import IPRange, PortRange
from svcnet.apiserver.allocator.service import (
    IP_PREFIX,
    PORT_PREFIX,
    ServiceAllocator,
    allocate_and_write,
)
from svcnet.store.interface import CompareFailedError, Delete, Put
from svcnet.store.sqlite import SqliteStore

SVC_PREFIX = "/registry/services/specs/default/"


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(str(tmp_path / "state.db"))
    await s.start()
    yield s
    await s.close()


async def make_allocator(store, cidrs=("10.96.0.0/12",), ports="30000-32767", seed=1) -> ServiceAllocator:
    a = ServiceAllocator(
        store, [IPRange.parse(c) for c in cidrs], PortRange.parse(ports), random.Random(seed)
    )
    await a.load()
    return a


def svc(name: str, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec},
    }


async def create(store, allocator, obj: dict) -> dict:
    """What the registry does: the Service and its allocations in one transaction."""

    async def write(planned, ops):
        key = SVC_PREFIX + planned["metadata"]["name"]
        return await store.txn([Put(key, orjson.dumps(planned), 0), *ops])

    planned, _ = await allocate_and_write(allocator, obj, None, write)
    return planned


async def update(store, allocator, new: dict, old: dict) -> dict:
    async def write(planned, ops):
        key = SVC_PREFIX + planned["metadata"]["name"]
        return await store.txn([Put(key, orjson.dumps(planned)), *ops])

    planned, _ = await allocate_and_write(allocator, new, old, write)
    return planned


async def delete(store, allocator, old: dict) -> None:
    async def write(_planned, ops):
        return await store.txn([Delete(SVC_PREFIX + old["metadata"]["name"]), *ops])

    await allocate_and_write(allocator, None, old, write)


async def allocation_keys(store) -> tuple[set[str], set[int]]:
    ips = await store.range(IP_PREFIX)
    ports = await store.range(PORT_PREFIX)
    return (
        {kv.key[len(IP_PREFIX) :] for kv in ips.kvs},
        {int(kv.key[len(PORT_PREFIX) :]) for kv in ports.kvs},
    )


async def test_dynamic_cluster_ip_comes_from_the_upper_band_and_is_recorded(store) -> None:
    a = await make_allocator(store)
    out = await create(store, a, svc("web"))
    ip = out["spec"]["clusterIP"]
    assert out["spec"]["clusterIPs"] == [ip] and out["spec"]["ipFamilies"] == ["IPv4"]
    assert IPRange.parse("10.96.0.0/12").index_of(ip) >= 256  # 10.96.0.1-10.96.1.0 are for static use
    assert (await allocation_keys(store))[0] == {ip}


async def test_requested_ip_is_honoured_then_refused_to_a_second_service(store) -> None:
    a = await make_allocator(store)
    out = await create(store, a, svc("a", clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"]))
    assert out["spec"]["clusterIP"] == "10.96.0.10"
    with pytest.raises(StatusError) as info:
        await create(store, a, svc("b", clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"]))
    err = info.value
    assert err.code == 422
    cause = err.details["causes"][0]
    assert cause["field"] == "spec.clusterIPs"
    assert cause["message"] == (
        'Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: '
        "provided IP is already allocated"
    )
    assert await store.get(SVC_PREFIX + "b") is None


async def test_a_refused_request_leaves_another_requests_pending_values_reserved(store) -> None:
    a = await make_allocator(store)
    pending = a.plan(svc("a", type="NodePort"), None)  # picked, not yet committed
    ip, port = next(iter(pending.picked_ips)), next(iter(pending.picked_ports))
    for _ in range(2):  # the second request must be refused too: the first refusal freed nothing
        with pytest.raises(StatusError, match="provided IP is already allocated"):
            a.plan(svc("b", clusterIP=ip, clusterIPs=[ip]), None)
        ports = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": port}]
        with pytest.raises(StatusError, match="provided port is already allocated"):
            a.plan(svc("c", type="NodePort", ports=ports), None)
    a.abort(pending)
    assert a.plan(svc("b", clusterIP=ip, clusterIPs=[ip]), None).claim_ips == {ip}


async def test_ip_outside_the_range_is_refused_with_upstreams_message(store) -> None:
    a = await make_allocator(store)
    with pytest.raises(StatusError) as info:
        await create(store, a, svc("a", clusterIP="10.0.0.5", clusterIPs=["10.0.0.5"]))
    assert info.value.details["causes"][0]["message"].endswith(
        "failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. "
        "The range of valid IPs is 10.96.0.0/12"
    )


async def test_node_ports_are_allocated_shared_by_protocol_and_checked(store) -> None:
    a = await make_allocator(store)
    dns = svc(
        "dns",
        type="NodePort",
        ports=[
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "web", "port": 80, "protocol": "TCP", "nodePort": 30080},
        ],
    )
    out = await create(store, a, dns)
    udp, tcp, web = (p["nodePort"] for p in out["spec"]["ports"])
    assert udp == tcp and 30086 <= udp <= 32767 and web == 30080
    assert (await allocation_keys(store))[1] == {udp, 30080}

    with pytest.raises(StatusError) as info:
        await create(
            store, a, svc("web2", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
        )
    cause = info.value.details["causes"][0]
    assert (cause["field"], cause["message"]) == (
        "spec.ports[0].nodePort",
        "Invalid value: 30080: provided port is already allocated",
    )
    with pytest.raises(StatusError) as info:
        await create(
            store, a, svc("web3", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 80}])
        )
    assert str(info.value) == (
        'Service "web3" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided '
        "port is not in the valid range. The range of valid ports is 30000-32767"
    )


async def test_load_balancer_local_gets_a_health_check_port_and_optional_node_ports(store) -> None:
    a = await make_allocator(store)
    out = await create(store, a, svc("lb", type="LoadBalancer", externalTrafficPolicy="Local"))
    assert out["spec"]["healthCheckNodePort"] and out["spec"]["ports"][0]["nodePort"]
    out2 = await create(store, a, svc("lb2", type="LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in out2["spec"]["ports"][0] and "healthCheckNodePort" not in out2["spec"]


async def test_type_changes_and_delete_release_what_is_no_longer_held(store) -> None:
    a = await make_allocator(store)
    np = await create(store, a, svc("x", type="NodePort"))
    port = np["spec"]["ports"][0]["nodePort"]
    ip = np["spec"]["clusterIP"]
    # NodePort -> ClusterIP: the strategy drops nodePorts; the allocator releases them
    as_cluster_ip = {
        **np,
        "spec": {
            **np["spec"],
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }
    updated = await update(store, a, as_cluster_ip, np)
    assert updated["spec"]["clusterIP"] == ip
    assert await allocation_keys(store) == ({ip}, set())
    assert port not in a.used_ports
    # ClusterIP -> ExternalName: the IP goes back
    external = {
        "metadata": updated["metadata"],
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }
    await update(store, a, external, updated)
    assert await allocation_keys(store) == (set(), set())
    await delete(store, a, external)
    assert await store.get(SVC_PREFIX + "x") is None


async def test_delete_releases_ip_and_ports(store) -> None:
    a = await make_allocator(store)
    out = await create(store, a, svc("gone", type="NodePort"))
    await delete(store, a, out)
    assert await allocation_keys(store) == (set(), set())


async def test_dual_stack_service_gets_an_ip_per_family(store) -> None:
    a = await make_allocator(store, cidrs=("10.96.0.0/16", "fd00:10:96::/112"))
    out = await create(store, a, svc("ds", ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack"))
    v4, v6 = out["spec"]["clusterIPs"]
    assert ipaddress.ip_address(v4).version == 4 and ipaddress.ip_address(v6).version == 6


async def test_200_parallel_creates_get_200_distinct_ips(store) -> None:
    a = await make_allocator(store, cidrs=("10.96.0.0/24",), seed=None)
    results = await asyncio.gather(*(create(store, a, svc(f"p{i}")) for i in range(200)))
    ips = [r["spec"]["clusterIP"] for r in results]
    assert len(set(ips)) == 200
    assert (await allocation_keys(store))[0] == set(ips)


async def test_200_parallel_creates_of_one_node_port_give_exactly_one_success(store) -> None:
    a = await make_allocator(store)

    async def attempt(i: int) -> bool:
        try:
            await create(
                store,
                a,
                svc(f"n{i}", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 31000}]),
            )
            return True
        except StatusError as err:
            assert "provided port is already allocated" in str(err)
            return False

    outcomes = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert outcomes.count(True) == 1


async def test_two_allocators_on_one_store_never_double_allocate(store) -> None:
    """Two API servers share a datastore: each has its own in-memory view, the store decides."""
    first = await make_allocator(store, cidrs=("10.96.0.0/28",), seed=5)
    second = await make_allocator(store, cidrs=("10.96.0.0/28",), seed=5)  # same random choices
    made = []
    for i in range(14):  # a /28 holds 14 addresses
        made.append(await create(store, first if i % 2 else second, svc(f"s{i}")))
    assert len({m["spec"]["clusterIP"] for m in made}) == 14
    with pytest.raises(StatusError) as info:
        await create(store, first, svc("one-too-many"))
    assert info.value.code == 500 and "range is full" in info.value.message


async def test_failed_object_write_claims_nothing(store) -> None:
    a = await make_allocator(store)
    await store.create(SVC_PREFIX + "taken", b"{}")
    with pytest.raises(CompareFailedError):
        await create(store, a, svc("taken", type="NodePort"))
    assert await allocation_keys(store) == (set(), set())
    assert not a._pending_ips and not a._pending_ports
