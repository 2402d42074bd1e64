"""The official kubernetes Python client, unchanged, against the API application: CRUD of
Services and Pods, selectors, a dict patch (sent as strategic merge patch), Watch.stream and
the 410 it raises for an expired resourceVersion."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from test_api_support import Api, api, make_api

__all__ = ["api", "make_api"]


def core_api(url: str) -> client.CoreV1Api:
    config = client.Configuration()
    config.host = url
    return client.CoreV1Api(client.ApiClient(config))


def v1_service(
    name: str, labels: dict[str, str] | None = None, svc_type: str = "ClusterIP"
) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ServiceSpec(
            type=svc_type,
            selector={"app": name},
            ports=[client.V1ServicePort(name="http", port=80, target_port=8080)],
        ),
    )


def v1_pod(name: str, node: str | None = None, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="busybox")]),
    )


async def test_service_crud_with_official_client(api: Api) -> None:
    def scenario() -> None:
        core = core_api(api.url)
        created = core.create_namespaced_service("default", v1_service("pyweb", {"tier": "web"}))
        assert created.metadata.uid and created.spec.ports[0].protocol == "TCP"
        got = core.read_namespaced_service("pyweb", "default")
        assert got.metadata.resource_version == created.metadata.resource_version

        # A dict body is sent as a strategic merge patch: ports merge by port number.
        patched = core.patch_namespaced_service(
            "pyweb",
            "default",
            {"metadata": {"labels": {"patched": "yes"}}, "spec": {"ports": [{"name": "https", "port": 443}]}},
        )
        assert patched.metadata.labels == {"tier": "web", "patched": "yes"}
        assert sorted(p.port for p in patched.spec.ports) == [80, 443]

        patched.spec.session_affinity = "ClientIP"
        replaced = core.replace_namespaced_service("pyweb", "default", patched)
        assert replaced.spec.session_affinity == "ClientIP"
        assert replaced.spec.session_affinity_config.client_ip.timeout_seconds == 10800

        stale = patched
        stale.metadata.labels = {"stale": "write"}
        with pytest.raises(ApiException) as info:
            core.replace_namespaced_service("pyweb", "default", stale)
        assert info.value.status == 409

        listed = core.list_namespaced_service("default")
        assert "pyweb" in [s.metadata.name for s in listed.items]
        assert listed.metadata.resource_version

        core.delete_namespaced_service("pyweb", "default")
        with pytest.raises(ApiException) as info:
            core.read_namespaced_service("pyweb", "default")
        assert info.value.status == 404

    await asyncio.to_thread(scenario)


async def test_pod_crud_and_selectors_with_official_client(api: Api) -> None:
    def scenario() -> None:
        core = core_api(api.url)
        core.create_namespaced_pod("default", v1_pod("pa", node="node-a", labels={"app": "x"}))
        core.create_namespaced_pod("default", v1_pod("pb", node="node-b", labels={"app": "y"}))
        core.create_namespaced_pod("default", v1_pod("pc", labels={"app": "x", "canary": "1"}))
        core.create_namespaced_service("default", v1_service("np", svc_type="NodePort"))

        def names(items: Any) -> list[str]:
            return sorted(i.metadata.name for i in items.items)

        assert names(core.list_namespaced_pod("default", label_selector="app=x")) == ["pa", "pc"]
        assert names(core.list_namespaced_pod("default", label_selector="app in (x,y),!canary")) == [
            "pa",
            "pb",
        ]
        assert names(core.list_namespaced_pod("default", label_selector="app!=x")) == ["pb"]
        assert names(core.list_namespaced_pod("default", field_selector="spec.nodeName=node-b")) == ["pb"]
        assert names(core.list_pod_for_all_namespaces(field_selector="metadata.name=pc")) == ["pc"]
        assert names(core.list_namespaced_service("default", field_selector="spec.type=NodePort")) == ["np"]
        with pytest.raises(ApiException) as info:
            core.list_namespaced_pod("default", field_selector="spec.nope=1")
        assert info.value.status == 400

        pod = core.patch_namespaced_pod("pa", "default", {"metadata": {"labels": {"app": "z"}}})
        assert pod.metadata.labels == {"app": "z"}
        pod.metadata.annotations = {"note": "replaced"}
        assert core.replace_namespaced_pod("pa", "default", pod).metadata.annotations == {"note": "replaced"}

        # A scheduled pod is deleted gracefully; an unscheduled one at once.
        core.delete_namespaced_pod("pa", "default")
        assert core.read_namespaced_pod("pa", "default").metadata.deletion_timestamp is not None
        core.delete_namespaced_pod("pa", "default", grace_period_seconds=0)
        core.delete_namespaced_pod("pc", "default")
        assert names(core.list_namespaced_pod("default")) == ["pb"]

    await asyncio.to_thread(scenario)


async def test_watch_stream_sees_added_modified_deleted_in_order(api: Api) -> None:
    events: queue.Queue[tuple[str, str, str]] = queue.Queue()
    w = watch.Watch()

    def watcher() -> None:
        core = core_api(api.url)
        for event in w.stream(core.list_namespaced_service, "default", _request_timeout=30):
            obj = event["object"]
            events.put((event["type"], obj.metadata.name, obj.metadata.resource_version))
            if event["type"] == "DELETED" and obj.metadata.name == "watched":
                w.stop()

    def writer() -> list[str]:
        core = core_api(api.url)
        first = core.create_namespaced_service("default", v1_service("before"))
        assert events.get(timeout=10)[:2] == ("ADDED", "before")
        created = core.create_namespaced_service("default", v1_service("watched"))
        modified = core.patch_namespaced_service("watched", "default", {"metadata": {"labels": {"m": "1"}}})
        core.delete_namespaced_service("watched", "default")
        return [
            first.metadata.resource_version,
            created.metadata.resource_version,
            modified.metadata.resource_version,
        ]

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    rvs = await asyncio.to_thread(writer)
    got = [await asyncio.to_thread(events.get, True, 10) for _ in range(3)]
    await asyncio.to_thread(thread.join, 10)
    assert [(t, n) for t, n, _ in got] == [
        ("ADDED", "watched"),
        ("MODIFIED", "watched"),
        ("DELETED", "watched"),
    ]
    assert [rv for _, _, rv in got[:2]] == rvs[1:]
    assert int(got[2][2]) > int(rvs[2])


async def test_watch_from_expired_resource_version_raises_410(make_api) -> None:
    api = await make_api(watch_cache_size=2)

    def scenario() -> None:
        core = core_api(api.url)
        old = core.create_namespaced_service("default", v1_service("old")).metadata.resource_version
        for i in range(4):
            core.create_namespaced_service("default", v1_service(f"new{i}"))
        # A consistent list brings the watch cache up to the last create (on etcd the events
        # arrive a moment after the replies), so "old" is surely outside the 2-event window.
        core.list_namespaced_service("default")
        with pytest.raises(ApiException) as info:
            stream = watch.Watch().stream(
                core.list_namespaced_service, "default", resource_version=old, timeout_seconds=10
            )
            for _ in stream:
                pass
        assert info.value.status == 410
        assert "Expired" in info.value.reason

    await asyncio.to_thread(scenario)


async def test_dynamic_client_discovery(api: Api) -> None:
    def scenario() -> None:
        from kubernetes import dynamic

        config = client.Configuration()
        config.host = api.url
        dyn = dynamic.DynamicClient(client.ApiClient(config))
        services = dyn.resources.get(api_version="v1", kind="Service")
        assert services.namespaced and "svc" in services.short_names
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        assert deployments.name == "deployments"
        listed = services.get(namespace="default")
        assert listed.kind == "ServiceList"

    await asyncio.to_thread(scenario)
