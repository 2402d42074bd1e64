"""The scheduler and the Deployment/StatefulSet controllers against the real `svcnet server`,
with a stand-in kubelet (marks bound pods Running and Ready, finishes graceful deletions) so
that no root or namespaces are needed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from svcnet.client.api import ApiClient, ApiError
from svcnet.controllers.workloads.runner import run_workloads

pytestmark = pytest.mark.timeout(90)


async def until(what: str, fn: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class World:
    """A namespace of our own, two Ready nodes with a label only our pods select, the
    controllers running, and a stand-in kubelet for those nodes."""

    def __init__(self, api: ApiClient, ns: str, zone: str) -> None:
        self.api = api
        self.ns = ns
        self.zone = zone
        self.nodes = [f"{zone}-a", f"{zone}-b"]
        self.auto_ready = True
        self.not_ready: set[str] = set()

    async def pods(self, selector: str | None = None) -> list[dict]:
        return (await self.api.list("pods", self.ns, label_selector=selector)).get("items") or []

    async def live(self, selector: str | None = None) -> list[dict]:
        return [p for p in await self.pods(selector) if not p["metadata"].get("deletionTimestamp")]

    async def kubelet(self) -> None:
        while True:
            for p in await self.pods():
                meta, spec = p["metadata"], p.get("spec") or {}
                if spec.get("nodeName") not in self.nodes:
                    continue
                if meta.get("deletionTimestamp"):
                    with contextlib.suppress(ApiError):
                        await self.api.delete("pods", meta["name"], self.ns, grace_period_seconds=0)
                    continue
                ready = self.auto_ready and meta["name"] not in self.not_ready
                want = "True" if ready else "False"
                conds = {c["type"]: c["status"] for c in (p.get("status") or {}).get("conditions") or []}
                if conds.get("Ready") != want:
                    status = {
                        "phase": "Running",
                        "podIP": "10.244.9.9",
                        "conditions": [{"type": "Ready", "status": want}],
                    }
                    with contextlib.suppress(ApiError):
                        await self.api.patch(
                            "pods",
                            meta["name"],
                            {"status": status},
                            self.ns,
                            subresource="status",
                            patch_type="merge",
                        )
            await asyncio.sleep(0.05)


def template(app: str, zone: str, image: str = "nginx") -> dict:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"nodeSelector": {"zone": zone}, "containers": [{"name": "c", "image": image}]},
    }


@pytest.fixture
async def world(api_server) -> AsyncIterator[World]:
    api = ApiClient.from_kubeconfig(str(api_server.kubeconfig_path))
    suffix = uuid.uuid4().hex[:6]
    ns = f"wl-{suffix}"
    w = World(api, ns, f"z{suffix}")
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name in w.nodes:
        await api.create(
            "nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"zone": w.zone}}},
        )
        await api.patch(
            "nodes",
            name,
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            subresource="status",
            patch_type="merge",
        )
    stop = asyncio.Event()
    controllers = asyncio.ensure_future(run_workloads(str(api_server.kubeconfig_path), stop))
    kubelet = asyncio.ensure_future(w.kubelet())
    try:
        yield w
    finally:
        stop.set()
        kubelet.cancel()
        await asyncio.gather(controllers, kubelet, return_exceptions=True)
        for name in w.nodes:
            with contextlib.suppress(ApiError):
                await api.delete("nodes", name)
        with contextlib.suppress(ApiError):
            await api.delete("namespaces", ns)
        await api.close()


async def test_deployment_creates_scales_and_replaces(world: World) -> None:
    api, ns = world.api, world.ns
    await api.create(
        "deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template("web", world.zone),
            },
        },
        ns,
    )

    async def ready(n: int) -> bool:
        d = await api.get("deployments", "web", ns)
        return (d.get("status") or {}).get("readyReplicas") == n and len(await world.live("app=web")) == n

    await until("4 ready", lambda: ready(4))
    pods = await world.live("app=web")
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods}
    assert len(hashes) == 1
    (h,) = hashes
    for p in pods:
        assert p["metadata"]["name"].startswith(f"web-{h}-")
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    # Spread over both nodes.
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(world.nodes * 2)
    # kubectl scale goes through the scale subresource.
    await api.patch(
        "deployments", "web", {"spec": {"replicas": 6}}, ns, subresource="scale", patch_type="merge"
    )
    await until("6 ready", lambda: ready(6))
    # A deleted pod is replaced under a new name.
    victim = pods[0]["metadata"]["name"]
    await api.delete("pods", victim, ns)
    await until("replacement", lambda: ready(6))
    names = {p["metadata"]["name"] for p in await world.live("app=web")}
    assert victim not in names and len(names) == 6
    await api.patch(
        "deployments", "web", {"spec": {"replicas": 2}}, ns, subresource="scale", patch_type="merge"
    )
    await until("2 ready", lambda: ready(2))
    status = (await api.get("deployments", "web", ns))["status"]
    assert status["replicas"] == 2 and status["updatedReplicas"] == 2 and status["availableReplicas"] == 2
    assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"


async def test_rolling_update_keeps_enough_ready_pods(world: World) -> None:
    api, ns = world.api, world.ns
    await api.create(
        "deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "ru"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "ru"}},
                "template": template("ru", world.zone),
            },
        },
        ns,
    )
    await until("4 ready", lambda: _count_ready(world, "app=ru", 4))
    old_hash = (await world.live("app=ru"))[0]["metadata"]["labels"]["pod-template-hash"]
    await api.patch(
        "deployments",
        "ru",
        {"spec": {"template": template("ru", world.zone, "nginx:2")}},
        ns,
        patch_type="merge",
    )
    lowest_ready = 4
    most_pods = 4
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        pods = await world.live("app=ru")
        ready = [p for p in pods if _is_ready(p)]
        lowest_ready = min(lowest_ready, len(ready))
        most_pods = max(most_pods, len(pods))
        if (
            len(pods) == 4
            and all(p["metadata"]["labels"]["pod-template-hash"] != old_hash for p in pods)
            and len(ready) == 4
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, "rolling update did not finish"
        await asyncio.sleep(0.02)
    assert lowest_ready >= 3  # maxUnavailable 25% of 4
    assert most_pods <= 5  # maxSurge 25% of 4
    assert all(p["spec"]["containers"][0]["image"] == "nginx:2" for p in pods)


def _is_ready(p: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (p.get("status") or {}).get("conditions") or []
    )


async def _count_ready(world: World, selector: str, n: int) -> bool:
    pods = await world.live(selector)
    return len(pods) == n and all(_is_ready(p) for p in pods)


async def test_statefulset_ordered_creation_and_names(world: World) -> None:
    api, ns = world.api, world.ns
    world.not_ready.add("db-0")  # db-0 is not Ready yet: db-1 must wait
    await api.create(
        "statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 3,
                "serviceName": "db-headless",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template("db", world.zone),
            },
        },
        ns,
    )
    await until("db-0", lambda: _names(world, {"db-0"}))
    await asyncio.sleep(0.5)
    assert {p["metadata"]["name"] for p in await world.live("app=db")} == {"db-0"}
    world.not_ready.discard("db-0")
    await until("db-0..2", lambda: _names(world, {"db-0", "db-1", "db-2"}))
    db1 = await api.get("pods", "db-1", ns)
    assert db1["spec"]["hostname"] == "db-1" and db1["spec"]["subdomain"] == "db-headless"
    assert db1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    # A deleted member comes back under the same name.
    uid = db1["metadata"]["uid"]
    await api.delete("pods", "db-1", ns)
    await until("db-1 back", lambda: _new_uid(world, "db-1", uid))
    # Scale down removes the highest ordinal first.
    await api.patch(
        "statefulsets", "db", {"spec": {"replicas": 1}}, ns, subresource="scale", patch_type="merge"
    )
    await until("db-0 only", lambda: _names(world, {"db-0"}))
    sts = await api.get("statefulsets", "db", ns)
    await until("status", lambda: _sts_ready(world, 1))
    assert sts["spec"]["replicas"] == 1


async def _names(world: World, names: set[str]) -> bool:
    return {p["metadata"]["name"] for p in await world.live("app=db")} == names


async def _new_uid(world: World, name: str, old_uid: str) -> bool:
    try:
        p = await world.api.get("pods", name, world.ns)
    except ApiError:
        return False
    return p["metadata"]["uid"] != old_uid and _is_ready(p)


async def _sts_ready(world: World, n: int) -> bool:
    s = await world.api.get("statefulsets", "db", world.ns)
    return (s.get("status") or {}).get("readyReplicas") == n and (s.get("status") or {}).get("replicas") == n


async def test_scheduler_binds_bare_pods_honouring_node_selector(world: World) -> None:
    api, ns = world.api, world.ns
    await api.patch("nodes", world.nodes[1], {"metadata": {"labels": {"disk": "ssd"}}}, patch_type="merge")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {
            "nodeSelector": {"zone": world.zone, "disk": "ssd"},
            "containers": [{"name": "c", "image": "x"}],
        },
    }
    await api.create("pods", pod, ns)

    async def bound() -> str | None:
        try:
            return (await api.get("pods", "bare", ns))["spec"].get("nodeName")
        except ApiError:
            return None

    assert await until("bound", bound) == world.nodes[1]
    # A pod that fits no node stays pending.
    pod["metadata"]["name"] = "nowhere"
    pod["spec"]["nodeSelector"] = {"zone": world.zone, "disk": "nvme"}
    await api.create("pods", pod, ns)
    await asyncio.sleep(0.5)
    assert not (await api.get("pods", "nowhere", ns))["spec"].get("nodeName")
