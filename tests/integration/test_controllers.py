"""The controllers running inside `svcnet server` (the default), seen through the API: the
EndpointSlice and Endpoints controllers as users and kube-proxy rely on them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from svcnet.client.api import ApiClient

SERVICE_LABEL = "kubernetes.io/service-name"
Obj = dict[str, Any]


@pytest.fixture
async def api(api_server) -> AsyncIterator[ApiClient]:
    client = ApiClient.from_kubeconfig(str(api_server.kubeconfig_path), max_connections=32)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(api) -> str:
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def node_name() -> str:
    return f"node-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def node(api, node_name) -> str:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
    try:
        await api.create("nodes", body)
    except Exception:  # created by an earlier test of the session
        pass
    return node_name


def service(name: str, selector: dict | None = None, **spec) -> Obj:
    body: Obj = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def pod(name: str, labels: dict, node: str, ports: list[Obj] | None = None) -> Obj:
    container = {"name": "c", "image": "echo", "ports": ports or [{"name": "http", "containerPort": 8080}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [container]},
    }


async def set_status(api: ApiClient, ns: str, name: str, ip: str, ready: bool) -> Obj:
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return await api.patch("pods", name, {"status": status}, ns, subresource="status")


async def make_pods(
    api: ApiClient, ns: str, count: int, labels: dict, node: str, ready: bool = True, prefix: str = "p"
) -> None:
    async def one(i: int) -> None:
        name = f"{prefix}{i}"
        await api.create("pods", pod(name, labels, node), ns)
        await set_status(api, ns, name, f"10.244.{i // 250}.{i % 250 + 1}", ready)

    await asyncio.gather(*(one(i) for i in range(count)))


async def slices_of(api: ApiClient, ns: str, svc: str) -> list[Obj]:
    return (await api.list("endpointslices", ns, label_selector=f"{SERVICE_LABEL}={svc}"))["items"]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (an async callable) until it returns a truthy value."""
    last = None
    async with asyncio.timeout(timeout):
        while True:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.05)


def endpoints_by_pod(slices: list[Obj]) -> dict[str, Obj]:
    out = {}
    for s in slices:
        for ep in s["endpoints"]:
            name = ep["targetRef"]["name"]
            assert name not in out, f"pod {name} is in two slices"
            out[name] = ep
    return out


async def test_250_ready_pods_fill_slices_of_100_100_50(api, ns, node) -> None:
    # Pods first, then the Service: its first sync sees all 250. (Pods arriving one by one
    # while the Service exists are packed by upstream's closest-fit rule, whose result depends
    # on how the changes were batched.)
    await make_pods(api, ns, 250, {"app": "big"}, node)
    await api.create("services", service("big", {"app": "big"}), ns)

    async def done():
        slices = await slices_of(api, ns, "big")
        sizes = sorted((len(s["endpoints"]) for s in slices), reverse=True)
        return slices if sizes == [100, 100, 50] else None

    try:
        slices = await eventually(done, 10)
    except TimeoutError:
        sizes = [len(s["endpoints"]) for s in await slices_of(api, ns, "big")]
        raise AssertionError(f"slice sizes {sizes}") from None
    by_pod = endpoints_by_pod(slices)
    assert len(by_pod) == 250
    assert all(
        ep["conditions"] == {"ready": True, "serving": True, "terminating": False} for ep in by_pod.values()
    )
    for s in slices:
        md = s["metadata"]
        assert md["generateName"] == "big-" and md["name"].startswith("big-")
        assert md["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert md["ownerReferences"][0]["kind"] == "Service" and md["ownerReferences"][0]["controller"]
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert s["addressType"] == "IPv4"
    # Legacy Endpoints: one object, all 250 ready addresses.
    ep = await api.get("endpoints", "big", ns)
    assert sum(len(s.get("addresses", [])) for s in ep["subsets"]) == 250

    # One pod's readiness flips: exactly one slice is rewritten.
    rv = (await api.list("endpointslices", ns))["metadata"]["resourceVersion"]
    events: list[tuple[str, Obj]] = []

    async def watch() -> None:
        async for kind, obj in api.watch(
            "endpointslices", ns, resource_version=rv, label_selector=f"{SERVICE_LABEL}=big"
        ):
            if kind != "BOOKMARK":
                events.append((kind, obj))

    watcher = asyncio.create_task(watch())
    try:
        await set_status(api, ns, "p17", "10.244.0.18", ready=False)
        await eventually(lambda: asyncio.sleep(0, result=bool(events)), 10)
        await asyncio.sleep(1.5)  # anything else would have come by now (slice-change delay is 1 s)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert [kind for kind, _ in events] == ["MODIFIED"]
    changed = endpoints_by_pod([events[0][1]])["p17"]
    assert changed["conditions"] == {"ready": False, "serving": False, "terminating": False}
    ep = await eventually(lambda: _endpoints_with_not_ready(api, ns, "big"))
    assert [a["targetRef"]["name"] for a in ep] == ["p17"]


async def _endpoints_with_not_ready(api: ApiClient, ns: str, name: str) -> list[Obj]:
    ep = await api.get("endpoints", name, ns)
    return [a for s in ep.get("subsets", []) for a in s.get("notReadyAddresses", [])]


async def test_graceful_delete_marks_the_endpoint_terminating(api, ns, node) -> None:
    await api.create("services", service("term", {"app": "term"}), ns)
    await make_pods(api, ns, 2, {"app": "term"}, node)
    await set_status(api, ns, "p1", "10.244.0.2", ready=False)
    for name in ("p0", "p1"):
        await api.delete("pods", name, ns, grace_period_seconds=60)

    async def terminating():
        by_pod = endpoints_by_pod(await slices_of(api, ns, "term"))
        if len(by_pod) == 2 and all(ep["conditions"]["terminating"] for ep in by_pod.values()):
            return by_pod
        return None

    by_pod = await eventually(terminating)
    # serving follows readiness; ready is false while terminating
    assert by_pod["p0"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert by_pod["p1"]["conditions"] == {"ready": False, "serving": False, "terminating": True}

    async def endpoints_empty():
        ep = await api.get("endpoints", "term", ns)
        return ep if not ep.get("subsets") else None

    await eventually(endpoints_empty)  # the legacy object leaves terminating pods out


async def test_named_target_port_resolves_per_pod(api, ns, node) -> None:
    await api.create(
        "services",
        service("named", {"app": "named"}, ports=[{"name": "web", "port": 80, "targetPort": "web"}]),
        ns,
    )
    for name, number in (("a", 8080), ("b", 9090)):
        await api.create(
            "pods", pod(name, {"app": "named"}, node, [{"name": "web", "containerPort": number}]), ns
        )
    await set_status(api, ns, "a", "10.244.1.1", ready=True)
    await set_status(api, ns, "b", "10.244.1.2", ready=True)

    async def split():
        slices = await slices_of(api, ns, "named")
        return slices if len(slices) == 2 and all(s["endpoints"] for s in slices) else None

    slices = await eventually(split)
    ports = {s["endpoints"][0]["targetRef"]["name"]: s["ports"][0]["port"] for s in slices}
    assert ports == {"a": 8080, "b": 9090}
    ep = await eventually(lambda: _subsets(api, ns, "named", 2))
    assert sorted(s["ports"][0]["port"] for s in ep) == [8080, 9090]


async def _subsets(api: ApiClient, ns: str, name: str, count: int) -> list[Obj] | None:
    ep = await api.get("endpoints", name, ns)
    subsets = ep.get("subsets") or []
    return subsets if len(subsets) == count else None


async def test_publish_not_ready_addresses(api, ns, node) -> None:
    await api.create(
        "services", service("pnr", {"app": "pnr"}, publishNotReadyAddresses=True, clusterIP="None"), ns
    )
    await make_pods(api, ns, 1, {"app": "pnr"}, node, ready=False)

    async def published():
        by_pod = endpoints_by_pod(await slices_of(api, ns, "pnr"))
        return by_pod if by_pod else None

    by_pod = await eventually(published)
    assert by_pod["p0"]["conditions"] == {"ready": True, "serving": False, "terminating": False}
    slices = await slices_of(api, ns, "pnr")
    assert slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""

    async def addresses():
        ep = await api.get("endpoints", "pnr", ns)
        return [a for s in ep.get("subsets", []) for a in s.get("addresses", [])]

    assert [a["ip"] for a in await eventually(addresses)] == ["10.244.0.1"]


async def test_selectorless_and_external_name_services_get_no_managed_slices(api, ns, node) -> None:
    await api.create("services", service("manual"), ns)
    await api.create(
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        },
        ns,
    )
    user_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "manual-1", "labels": {SERVICE_LABEL: "manual"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    await api.create("endpointslices", user_slice, ns)
    # A service with a selector in the same namespace proves the controller is working here.
    await api.create("services", service("probe", {"app": "probe"}), ns)
    await eventually(lambda: slices_of(api, ns, "probe"))
    assert [s["metadata"]["name"] for s in await slices_of(api, ns, "manual")] == ["manual-1"]
    assert await slices_of(api, ns, "ext") == []
    # ... and the probe, with no pods, has the one empty placeholder slice.
    probe = await slices_of(api, ns, "probe")
    assert len(probe) == 1 and probe[0]["endpoints"] == [] and probe[0]["ports"] == []


async def test_pod_label_change_moves_it_between_services(api, ns, node) -> None:
    await api.create("services", service("blue", {"color": "blue"}), ns)
    await api.create("services", service("green", {"color": "green"}), ns)
    await make_pods(api, ns, 1, {"color": "blue"}, node)
    await eventually(lambda: _pods_in(api, ns, "blue", {"p0"}))
    await api.patch("pods", "p0", {"metadata": {"labels": {"color": "green"}}}, ns)
    await eventually(lambda: _pods_in(api, ns, "green", {"p0"}))
    await eventually(lambda: _pods_in(api, ns, "blue", set()))


async def _pods_in(api: ApiClient, ns: str, svc: str, names: set[str]) -> bool:
    slices = await slices_of(api, ns, svc)
    return bool(slices) and set(endpoints_by_pod(slices)) == names


async def test_deleting_the_service_removes_its_slices(api, ns, node) -> None:
    await api.create("services", service("gone", {"app": "gone"}), ns)
    await eventually(lambda: slices_of(api, ns, "gone"))
    await api.delete("services", "gone", ns)

    async def none_left():
        return not await slices_of(api, ns, "gone")

    await eventually(none_left)


async def test_a_new_node_gets_a_pod_cidr(api) -> None:
    name = f"ipam-{uuid.uuid4().hex[:6]}"
    await api.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})

    async def cidr():
        spec = (await api.get("nodes", name)).get("spec", {})
        return spec.get("podCIDRs")

    cidrs = await eventually(cidr)
    assert len(cidrs) == 1 and cidrs[0].startswith("10.244.") and cidrs[0].endswith("/24")
    others = [n for n in (await api.list("nodes"))["items"] if n["metadata"]["name"] != name]
    assert cidrs[0] not in {c for n in others for c in n.get("spec", {}).get("podCIDRs", [])}
    await api.delete("nodes", name)
