"""The legacy Endpoints controller: one v1 Endpoints per selector Service, named like it
(desired.py builds it). Writes are skipped when nothing a reader sees changed; an update is
a compare-and-swap on the cached resourceVersion, so a stale cache only costs a retry."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import object_key
from svcnet.client.informer import InformerSource
from svcnet.controllers.base import Controller, rfc3339_nano
from svcnet.controllers.endpoints.desired import TRIGGER_TIME_ANNOTATION, desired_endpoints, needs_update
from svcnet.controllers.endpointslice.controller import pod_relevant_state
from svcnet.controllers.selection import Selection, service_selector

Obj = dict[str, Any]


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, client: ApiClient, source: InformerSource, workers: int = 4) -> None:
        super().__init__(client, workers=workers)
        self.services = source.store("services")
        self.pods = source.store("pods")
        self.endpoints = source.store("endpoints")
        self.selection = Selection(source)
        source.add_handler("services", self._enqueue, lambda _o, n: self._enqueue(n), self._enqueue)
        source.add_handler("pods", self._pod_added, self._pod_updated, self._pod_added)
        # Endpoints whose Service is gone are cleaned up (upstream queues every Endpoints at start).
        source.add_handler("endpoints", self._endpoints_seen, None, self._enqueue)

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def _endpoints_seen(self, ep: Obj) -> None:
        md = ep.get("metadata") or {}
        if self.services.get(md.get("namespace"), md.get("name", "")) is None:
            self.queue.add(object_key(ep))

    def _services_for(self, *pods: Obj) -> set[str]:
        return {object_key(svc) for svc in self.selection.services_for(*pods)}

    def _pod_added(self, pod: Obj) -> None:
        for key in self._services_for(pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if pod_relevant_state(old) != pod_relevant_state(new):
            for key in self._services_for(new, old):
                self.queue.add(key)

    async def sync(self, key: Hashable) -> None:
        assert isinstance(key, str)
        namespace, _, name = key.partition("/")
        svc = self.services.get(namespace, name)
        current = self.endpoints.get(namespace, name)
        if svc is None:
            if current is not None and not _kept_without_service(current):
                try:
                    await self.client.delete("endpoints", name, namespace)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
            return
        selector = service_selector(svc)
        if selector is None:
            return  # ExternalName, or selectorless: the user owns the Endpoints
        pods = self.selection.pods_of(svc)
        desired = desired_endpoints(svc, pods)
        if not needs_update(current, desired):
            return
        desired["metadata"].setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = rfc3339_nano()
        if current is None:
            await self.client.create("endpoints", desired, namespace)
        else:
            desired["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            await self.client.update("endpoints", desired, namespace)


def _kept_without_service(endpoints: Obj) -> bool:
    """Endpoints used for leader election (old-style locks) are not the controller's."""
    annotations = (endpoints.get("metadata") or {}).get("annotations") or {}
    return "control-plane.alpha.kubernetes.io/leader" in annotations
