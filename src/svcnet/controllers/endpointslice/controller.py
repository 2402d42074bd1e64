"""The EndpointSlice controller: keeps the managed slices of every selector Service equal to
what its Pods say (desired.py), written with the churn-minimising plan of reconciler.py.

Triggers as upstream: Service add/update/delete; Pod add/update/delete (for the Services
whose selector matches the old or new labels); Node add/delete or zone change (every
Service); a managed slice changed or deleted by someone else. Services without a selector
keep the slices users write, ExternalName Services get none.

The informer cache trails our own writes. Planning against a cache that does not show them
yet would create duplicate slices, so after writing, the controller remembers the
resourceVersion each slice must reach (or that it must be gone) and a sync of that Service
waits (re-queued) until the cache has caught up: upstream's endpointSliceTracker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import INDEX_SERVICE, endpointslice_service_index, object_key
from svcnet.client.informer import InformerSource
from svcnet.controllers.base import Controller, RetryLaterError, rfc3339_nano
from svcnet.controllers.endpointslice.desired import (
    CONTROLLER_NAME,
    LABEL_MANAGED_BY,
    LABEL_ZONE,
    desired_state,
    pod_is_ready,
)
from svcnet.controllers.endpointslice.reconciler import TRIGGER_TIME_ANNOTATION, reconcile
from svcnet.controllers.selection import Selection, service_selector

Obj = dict[str, Any]

# Upstream delays syncs triggered by slice changes by at least a second (endpointSliceChangeMinSyncDelay).
SLICE_CHANGE_DELAY = 1.0


def pod_relevant_state(pod: Obj) -> tuple:
    """What of a Pod shows in its endpoints (upstream's podEndpointsChanged)."""
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ports = [c.get("ports") for c in spec.get("containers") or []]
    return (
        tuple(sorted((md.get("labels") or {}).items())),
        md.get("deletionTimestamp"),
        status.get("podIP"),
        tuple(p.get("ip") for p in status.get("podIPs") or []),
        status.get("phase"),
        pod_is_ready(pod),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        repr(ports),
    )


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, client: ApiClient, source: InformerSource, max_endpoints_per_slice: int = 100,
                 workers: int = 4) -> None:
        super().__init__(client, workers=workers)
        self.source = source
        self.max_endpoints = max_endpoints_per_slice
        self.services = source.store("services")
        self.pods = source.store("pods")
        self.nodes = source.store("nodes")
        self.slices = source.store("endpointslices")
        self.selection = Selection(source)
        source.add_indexer("endpointslices", INDEX_SERVICE, endpointslice_service_index)
        source.add_handler("services", self._service_added, self._service_updated, self._service_deleted)
        source.add_handler("pods", self._pod_added, self._pod_updated, self._pod_deleted)
        source.add_handler("nodes", self._node_added, self._node_updated, self._node_deleted)
        source.add_handler("endpointslices", self._slice_changed, self._slice_updated, self._slice_deleted)
        # service key -> {slice name: resourceVersion it must reach, or None: must be gone}
        self._expected: dict[str, dict[str, int | None]] = {}

    # -- event handlers --------------------------------------------------------------------

    def _service_added(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))

    def _service_updated(self, _old: Obj, new: Obj) -> None:
        self.queue.add(object_key(new))

    def _service_deleted(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))

    def _services_for_pod(self, pod: Obj, *more: Obj) -> set[str]:
        return {object_key(svc) for svc in self.selection.services_for(pod, *more)}

    def _pod_added(self, pod: Obj) -> None:
        for key in self._services_for_pod(pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if pod_relevant_state(old) == pod_relevant_state(new):
            return
        for key in self._services_for_pod(new, old):
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        self._pod_added(pod)

    def _all_services(self) -> None:
        for svc in self.services.list():
            if service_selector(svc):
                self.queue.add(object_key(svc))

    def _node_added(self, _node: Obj) -> None:
        self._all_services()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        zone = lambda n: ((n.get("metadata") or {}).get("labels") or {}).get(LABEL_ZONE)  # noqa: E731
        if zone(old) != zone(new):
            self._all_services()

    def _node_deleted(self, _node: Obj) -> None:
        self._all_services()

    def _slice_service_key(self, slice_: Obj) -> str | None:
        keys = endpointslice_service_index(slice_)
        labels = (slice_.get("metadata") or {}).get("labels") or {}
        if not keys or labels.get(LABEL_MANAGED_BY) != CONTROLLER_NAME:
            return None
        return keys[0]

    def _slice_changed(self, slice_: Obj) -> None:
        key = self._slice_service_key(slice_)
        if key is None:
            return
        expected = self._expected.get(key, {})
        name = (slice_.get("metadata") or {}).get("name")
        want = expected.get(name)
        if want is not None and _rv(slice_) <= want:
            return  # our own write coming back
        if name in expected and want is None:
            return
        self.queue.add_after(key, SLICE_CHANGE_DELAY if key not in self._expected else 0)

    def _slice_updated(self, _old: Obj, new: Obj) -> None:
        self._slice_changed(new)

    def _slice_deleted(self, slice_: Obj) -> None:
        key = self._slice_service_key(slice_)
        if key is None:
            return
        name = (slice_.get("metadata") or {}).get("name")
        if name in self._expected.get(key, {}) and self._expected[key][name] is None:
            return  # we deleted it
        self.queue.add(key)

    # -- sync ------------------------------------------------------------------------------

    def _cache_caught_up(self, key: str, namespace: str) -> bool:
        expected = self._expected.get(key)
        if not expected:
            return True
        for name, rv in expected.items():
            cached = self.slices.get(namespace, name)
            if rv is None:
                if cached is not None:
                    return False
            elif cached is None or _rv(cached) < rv:
                return False
        del self._expected[key]
        return True

    async def sync(self, key: Hashable) -> None:
        assert isinstance(key, str)
        namespace, _, name = key.partition("/")
        if not self._cache_caught_up(key, namespace):
            raise RetryLaterError(f"the slice cache has not caught up with our writes for {key}")
        svc = self.services.get(namespace, name)
        if svc is None:
            return  # the registry deletes owned slices with their Service (ownerReferences)
        selector = service_selector(svc)
        if selector is None:
            return  # selectorless (user-managed slices) or ExternalName
        pods = self.selection.pods_of(svc)
        nodes = {(n.get("metadata") or {}).get("name", ""): n for n in self.nodes.list()}
        desired = desired_state(svc, pods, nodes)
        existing = [
            s for s in self.slices.by_index(INDEX_SERVICE, key)
            if ((s.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME
        ]
        plan = reconcile(svc, desired, existing, self.max_endpoints)
        if (svc.get("metadata") or {}).get("deletionTimestamp"):
            plan.create = []
        if not plan.empty:
            # Recorded as each write returns, so its watch event is recognised as ours.
            await self._apply(namespace, plan, self._expected.setdefault(key, {}))
        if desired.skipped:
            raise RetryLaterError("; ".join(desired.skipped[:3]))

    async def _apply(self, namespace: str, plan: Any, expected: dict[str, int | None]) -> None:
        now = rfc3339_nano()
        writes = []
        for slice_ in plan.create:
            slice_["metadata"].setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = now
            writes.append(("create", slice_))
        for slice_ in plan.update:
            slice_["metadata"].setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = now
            writes.append(("update", slice_))
        for slice_ in plan.delete:
            writes.append(("delete", slice_))

        async def one(kind: str, slice_: Obj) -> None:
            if kind == "create":
                made = await self.client.create("endpointslices", slice_, namespace)
                expected[made["metadata"]["name"]] = _rv(made)
            elif kind == "update":
                made = await self.client.update("endpointslices", slice_, namespace)
                expected[made["metadata"]["name"]] = _rv(made)
            else:
                name = slice_["metadata"]["name"]
                try:
                    await self.client.delete("endpointslices", name, namespace,
                                             preconditions={"uid": slice_["metadata"].get("uid")})
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                expected[name] = None

        results = await asyncio.gather(*(one(kind, s) for kind, s in writes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
