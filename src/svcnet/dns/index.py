"""The cluster state DNS answers from: services, endpoint slices, namespaces and pods, with the
reverse indexes (ClusterIP -> service, endpoint IP -> slices, pod IP -> pods) lookups need.

Every change bumps ``generation`` and ``modified`` (the SOA serial, as CoreDNS's
APIConn.Modified()) and calls the change listeners with the namespace the change is in (None:
everything may have changed), which drop the cached answers that depend on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from svcnet.dns.model import (
    Obj,
    Service,
    Slice,
    pod_ip,
    service_from_object,
    slice_from_object,
)

Key = tuple[str, str]  # (namespace, name)


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class ClusterIndex:
    def __init__(self) -> None:
        self.services: dict[Key, Service] = {}
        self.slices: dict[Key, Slice] = {}
        self.slices_by_service: dict[Key, dict[str, Slice]] = {}
        self.namespaces: set[str] = set()
        self.services_by_ip: dict[str, list[Key]] = {}
        self.slices_by_ip: dict[str, list[Key]] = {}
        self.pods_by_ip: dict[str, dict[Key, str]] = {}  # ip -> {(ns, pod): ip}
        self._pod_ips: dict[Key, str] = {}
        self.synced = False
        self.generation = 0
        self.modified = int(time.time())
        self._listeners: list[Callable[[str | None], None]] = []

    def on_change(self, fn: Callable[[str | None], None]) -> None:
        self._listeners.append(fn)

    def _changed(self, namespace: str | None) -> None:
        self.generation += 1
        self.modified = int(time.time())
        for fn in self._listeners:
            fn(namespace)

    def mark_synced(self) -> None:
        self.synced = True
        self._changed(None)

    # -- services ------------------------------------------------------------------------------

    def set_service(self, obj: Obj) -> None:
        svc = service_from_object(obj)
        if self.services.get(_key(obj)) == svc:
            # A resync, or a change DNS does not see (status, annotations): keep the cached
            # answers and the SOA serial, as CoreDNS's serviceModified does.
            return
        self._drop_service(_key(obj))
        key = (svc.namespace, svc.name)
        self.services[key] = svc
        for ip in svc.cluster_ips:
            self.services_by_ip.setdefault(ip, []).append(key)
        self._changed(svc.namespace)

    def delete_service(self, obj: Obj) -> None:
        if self._drop_service(_key(obj)):
            self._changed(_key(obj)[0])

    def _drop_service(self, key: Key) -> bool:
        old = self.services.pop(key, None)
        if old is None:
            return False
        for ip in old.cluster_ips:
            _remove(self.services_by_ip, ip, key)
        return True

    # -- endpoint slices -----------------------------------------------------------------------

    def set_slice(self, obj: Obj) -> None:
        sl = slice_from_object(obj)
        if self.slices.get(_key(obj)) == sl:
            # Nothing DNS answers from changed (a resync, conditions of endpoints that stay not
            # ready, an FQDN slice): keep the cached answers, as CoreDNS's endpointsEquivalent does.
            return
        self._drop_slice(_key(obj))
        if sl is not None:
            key = (sl.namespace, sl.name)
            self.slices[key] = sl
            self.slices_by_service.setdefault((sl.namespace, sl.service), {})[sl.name] = sl
            for ip in {a.ip for a in sl.addresses}:
                self.slices_by_ip.setdefault(ip, []).append(key)
        self._changed(_key(obj)[0])

    def delete_slice(self, obj: Obj) -> None:
        if self._drop_slice(_key(obj)):
            self._changed(_key(obj)[0])

    def _drop_slice(self, key: Key) -> bool:
        old = self.slices.pop(key, None)
        if old is None:
            return False
        group = self.slices_by_service.get((old.namespace, old.service))
        if group is not None:
            group.pop(old.name, None)
            if not group:
                del self.slices_by_service[(old.namespace, old.service)]
        for ip in {a.ip for a in old.addresses}:
            _remove(self.slices_by_ip, ip, key)
        return True

    def service_slices(self, namespace: str, service: str) -> list[Slice]:
        group = self.slices_by_service.get((namespace, service))
        if not group:
            return []
        return [group[n] for n in sorted(group)]

    # -- namespaces ----------------------------------------------------------------------------

    def set_namespace(self, obj: Obj) -> None:
        name = _key(obj)[1]
        if name not in self.namespaces:
            self.namespaces.add(name)
            self._changed(name)

    def delete_namespace(self, obj: Obj) -> None:
        name = _key(obj)[1]
        if name in self.namespaces:
            self.namespaces.discard(name)
            self._changed(name)

    # -- pods ----------------------------------------------------------------------------------

    def set_pod(self, obj: Obj) -> None:
        key = _key(obj)
        ip = pod_ip(obj)
        if self._pod_ips.get(key) == ip:
            return
        self._drop_pod(key)
        if ip is not None:
            self._pod_ips[key] = ip
            self.pods_by_ip.setdefault(ip, {})[key] = ip
        self._changed(key[0])

    def delete_pod(self, obj: Obj) -> None:
        if self._drop_pod(_key(obj)):
            self._changed(_key(obj)[0])

    def _drop_pod(self, key: Key) -> bool:
        ip = self._pod_ips.pop(key, None)
        if ip is None:
            return False
        group = self.pods_by_ip.get(ip)
        if group is not None:
            group.pop(key, None)
            if not group:
                del self.pods_by_ip[ip]
        return True

    # -- bulk ----------------------------------------------------------------------------------

    def load(self, objects: list[Obj]) -> None:
        """Add plain object dicts by kind (tests, and sources without handlers)."""
        for obj in objects:
            setter = _SETTERS.get(obj.get("kind", ""))
            if setter is not None:
                setter(self, obj)


def _remove(index: dict[str, list[Any]], ip: str, key: Any) -> None:
    keys = index.get(ip)
    if keys is None:
        return
    try:
        keys.remove(key)
    except ValueError:
        return
    if not keys:
        del index[ip]


_SETTERS: dict[str, Callable[[ClusterIndex, Obj], None]] = {
    "Service": ClusterIndex.set_service,
    "EndpointSlice": ClusterIndex.set_slice,
    "Namespace": ClusterIndex.set_namespace,
    "Pod": ClusterIndex.set_pod,
}
