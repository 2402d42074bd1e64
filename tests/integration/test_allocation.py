"""ClusterIP and NodePort allocation through the real `svcnet server` (issue #4): distinct
addresses under concurrency, one winner per requested port, release on delete and on type
changes, dry-run claiming nothing, and the default/kubernetes Service."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator

import pytest

from svcnet.client.api import ApiClient, ApiError


@pytest.fixture
async def api(api_server) -> AsyncIterator[ApiClient]:
    client = ApiClient.from_kubeconfig(str(api_server.kubeconfig_path), max_connections=64)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(api) -> str:
    name = f"alloc-{uuid.uuid4().hex[:8]}"
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def svc(name: str, **spec) -> dict:
    body = {"type": "ClusterIP", "ports": [{"name": "http", "port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def node_port_svc(name: str, node_port: int | None = None, **spec) -> dict:
    port = {"name": "http", "port": 80}
    if node_port is not None:
        port["nodePort"] = node_port
    return svc(name, type="NodePort", ports=[port], **spec)


def free_port() -> int:
    """A node port no other test of the session asks for (tests share one server)."""
    return 30000 + uuid.uuid4().int % 86  # the static band: dynamic picks avoid it


async def test_200_parallel_creates_without_an_ip_get_200_distinct_ips(api, ns) -> None:
    created = await asyncio.gather(*(api.create("services", svc(f"s{i}"), ns) for i in range(200)))
    ips = [c["spec"]["clusterIP"] for c in created]
    assert len(set(ips)) == 200
    service_range = ipaddress.ip_network("10.96.0.0/12")
    assert all(ipaddress.ip_address(ip) in service_range for ip in ips)
    # What the server stored is what it answered.
    listed = await api.list_all("services", ns)
    assert sorted(s["spec"]["clusterIP"] for s in listed["items"]) == sorted(ips)


async def test_200_parallel_creates_of_one_node_port_have_exactly_one_winner(api, ns) -> None:
    port = free_port()

    async def attempt(i: int) -> str:
        try:
            await api.create("services", node_port_svc(f"np{i}", port), ns)
            return "ok"
        except ApiError as exc:
            assert exc.code == 422, exc.message
            cause = exc.status["details"]["causes"][0]
            assert cause["field"] == "spec.ports[0].nodePort"
            return cause["message"]

    outcomes = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert outcomes.count("ok") == 1
    assert set(outcomes) - {"ok"} == {f"Invalid value: {port}: provided port is already allocated"}
    holders = [s for s in (await api.list_all("services", ns))["items"]]
    assert len(holders) == 1 and holders[0]["spec"]["ports"][0]["nodePort"] == port
    await api.delete("services", holders[0]["metadata"]["name"], ns)


async def test_requested_ip_is_refused_to_a_second_service_and_freed_by_delete(api, ns) -> None:
    first = await api.create("services", svc("first"), ns)
    ip = first["spec"]["clusterIP"]
    with pytest.raises(ApiError) as info:
        await api.create("services", svc("second", clusterIP=ip), ns)
    assert info.value.code == 422
    assert info.value.status["details"]["causes"][0]["message"].endswith(
        f"failed to allocate IP {ip}: provided IP is already allocated"
    )
    await api.delete("services", "first", ns)
    again = await api.create("services", svc("second", clusterIP=ip), ns)
    assert again["spec"]["clusterIPs"] == [ip]


async def test_out_of_range_requests_are_422_with_upstreams_messages(api, ns) -> None:
    with pytest.raises(ApiError) as info:
        await api.create("services", node_port_svc("low", 8080), ns)
    assert info.value.status["details"]["causes"][0]["message"] == (
        "Invalid value: 8080: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    with pytest.raises(ApiError) as info:
        await api.create("services", svc("far", clusterIP="192.168.7.7"), ns)
    assert "the provided IP (192.168.7.7) is not in the valid range" in info.value.message


async def test_dry_run_shows_allocations_but_claims_nothing(api, ns) -> None:
    port = free_port()
    preview = await api.create("services", node_port_svc("dry", port), ns, dry_run=True)
    assert preview["spec"]["clusterIP"] and preview["spec"]["ports"][0]["nodePort"] == port
    with pytest.raises(ApiError) as info:
        await api.get("services", "dry", ns)
    assert info.value.code == 404
    # Neither the previewed address nor the port is held: a real create may take both.
    real = await api.create(
        "services", node_port_svc("real", port, clusterIP=preview["spec"]["clusterIP"]), ns
    )
    assert real["spec"]["clusterIP"] == preview["spec"]["clusterIP"]
    await api.delete("services", "real", ns)


async def test_type_change_to_cluster_ip_releases_the_node_port(api, ns) -> None:
    port = free_port()
    made = await api.create("services", node_port_svc("np", port), ns)
    ip = made["spec"]["clusterIP"]
    made["spec"]["type"] = "ClusterIP"
    for p in made["spec"]["ports"]:
        p.pop("nodePort", None)
    made["spec"].pop("externalTrafficPolicy", None)
    updated = await api.update("services", made, ns)
    assert updated["spec"]["clusterIP"] == ip and "nodePort" not in updated["spec"]["ports"][0]
    taker = await api.create("services", node_port_svc("taker", port), ns)
    assert taker["spec"]["ports"][0]["nodePort"] == port
    # ClusterIP -> ExternalName gives the address back.
    updated["spec"] = {"type": "ExternalName", "externalName": "db.example.com"}
    external = await api.update("services", updated, ns)
    assert "clusterIP" not in external["spec"]
    reuse = await api.create("services", svc("reuse", clusterIP=ip), ns)
    assert reuse["spec"]["clusterIP"] == ip
    await api.delete("services", "taker", ns)


async def test_load_balancer_node_ports_and_health_check_port(api, ns) -> None:
    local = await api.create(
        "services", svc("lb-local", type="LoadBalancer", externalTrafficPolicy="Local"), ns
    )
    spec = local["spec"]
    assert 30000 <= spec["healthCheckNodePort"] <= 32767
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    assert spec["healthCheckNodePort"] != spec["ports"][0]["nodePort"]
    bare = await api.create(
        "services", svc("lb-bare", type="LoadBalancer", allocateLoadBalancerNodePorts=False), ns
    )
    assert "nodePort" not in bare["spec"]["ports"][0] and "healthCheckNodePort" not in bare["spec"]
    # Local -> Cluster drops the health-check port, and another Service may then claim it.
    hc = spec["healthCheckNodePort"]
    local["spec"]["externalTrafficPolicy"] = "Cluster"
    local["spec"].pop("healthCheckNodePort")
    changed = await api.update("services", local, ns)
    assert "healthCheckNodePort" not in changed["spec"]
    claimer = await api.create("services", node_port_svc("claimer", hc), ns)
    assert claimer["spec"]["ports"][0]["nodePort"] == hc
    await api.delete("services", "claimer", ns)


async def test_dns_style_ports_share_one_node_port(api, ns) -> None:
    made = await api.create(
        "services",
        svc(
            "dns",
            type="NodePort",
            ports=[
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        ),
        ns,
    )
    udp, tcp = (p["nodePort"] for p in made["spec"]["ports"])
    assert udp == tcp


async def test_the_kubernetes_service_holds_the_first_address(api, api_server) -> None:
    k = await api.get("services", "kubernetes", "default")
    assert k["spec"]["clusterIP"] == "10.96.0.1"
    assert k["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    port = int(api_server.url.rsplit(":", 1)[1])
    assert k["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]
    assert "selector" not in k["spec"]
    with pytest.raises(ApiError) as info:
        await api.create("services", svc("squatter", clusterIP="10.96.0.1"), "default")
    assert info.value.code == 422
