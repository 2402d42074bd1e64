"""The EndpointSlice controller's sync against an in-memory source and a recording client:
what it writes, and that a cache which has not caught up with its own writes never leads to
duplicate slices."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from svcnet.client.cache import ObjectCache
from svcnet.controllers.base import RetryLaterError
from svcnet.controllers.endpointslice.controller import EndpointSliceController

Obj = dict[str, Any]


class FakeSource:
    def __init__(self) -> None:
        self.caches: dict[str, ObjectCache] = {}
        self.handlers: dict[str, list] = {}

    def store(self, resource: str) -> ObjectCache:
        return self.caches.setdefault(resource, ObjectCache())

    def add_indexer(self, resource: str, name: str, fn) -> None:
        self.store(resource).add_indexer(name, fn)

    def add_handler(self, resource: str, on_add=None, on_update=None, on_delete=None) -> None:
        self.handlers.setdefault(resource, []).append((on_add, on_update, on_delete))

    def put(self, resource: str, obj: Obj) -> None:
        old = self.store(resource).upsert(obj)
        for on_add, on_update, _ in self.handlers.get(resource, []):
            if old is None and on_add:
                on_add(obj)
            elif old is not None and on_update:
                on_update(old, obj)


class RecordingClient:
    """Answers writes like the API server would (names, resourceVersions), records them."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Obj]] = []
        self._rv = itertools.count(100)
        self._name = itertools.count()

    async def create(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        made = copy.deepcopy(obj)
        md = made["metadata"]
        md["name"] = md.get("name") or f"{md['generateName']}{next(self._name):05d}"
        md["resourceVersion"] = str(next(self._rv))
        self.writes.append(("create", made))
        return made

    async def update(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        made = copy.deepcopy(obj)
        made["metadata"]["resourceVersion"] = str(next(self._rv))
        self.writes.append(("update", made))
        return made

    async def delete(self, resource: str, name: str, namespace: str | None = None, **_: Any) -> Obj:
        self.writes.append(("delete", {"metadata": {"name": name}}))
        return {}


def service() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
        "spec": {
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def pod(i: int, ready: bool = True) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": "default", "uid": f"uid-{i}", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {
            "phase": "Running",
            "podIP": f"10.244.0.{i + 1}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.fixture
def setup():
    source = FakeSource()
    client = RecordingClient()
    controller = EndpointSliceController(client, source, max_endpoints_per_slice=100)  # type: ignore[arg-type]
    source.put("nodes", {"metadata": {"name": "n1"}})
    source.put("services", service())
    return source, client, controller


async def test_one_pod_change_rewrites_one_slice_and_a_stale_cache_waits(setup) -> None:
    source, client, controller = setup
    for i in range(150):
        source.put("pods", pod(i))
    await controller.sync("default/web")
    assert [kind for kind, _ in client.writes] == ["create", "create"]
    assert sorted(len(s["endpoints"]) for _, s in client.writes) == [50, 100]

    # The informer has not delivered the two new slices yet: a second sync must not plan again
    # (it would create two more).
    created = [s for _, s in client.writes]
    client.writes.clear()
    with pytest.raises(RetryLaterError):
        await controller.sync("default/web")
    assert client.writes == []

    # Once the cache shows them, the sync has nothing to do; a readiness flip then rewrites
    # exactly the slice holding that pod.
    for slice_ in created:
        source.put("endpointslices", slice_)
    await controller.sync("default/web")
    assert client.writes == []
    holder = next(s for s in created if any(ep["targetRef"]["name"] == "p7" for ep in s["endpoints"]))
    source.put("pods", pod(7, ready=False))
    await controller.sync("default/web")
    assert [(kind, s["metadata"]["name"]) for kind, s in client.writes] == [
        ("update", holder["metadata"]["name"])
    ]
    flipped = next(ep for ep in client.writes[0][1]["endpoints"] if ep["targetRef"]["name"] == "p7")
    assert flipped["conditions"] == {"ready": False, "serving": False, "terminating": False}


async def test_a_pod_event_queues_only_the_services_selecting_it(setup) -> None:
    source, _, controller = setup
    other = service()
    other["metadata"].update(name="other", uid="other-uid")
    other["spec"]["selector"] = {"app": "other"}
    source.put("services", other)
    while len(controller.queue):
        controller.queue.done(await controller.queue.get())
    source.put("pods", pod(1))
    assert len(controller.queue) == 1 and await controller.queue.get() == "default/web"
