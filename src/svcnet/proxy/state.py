"""Change tracking: Services, EndpointSlices and the Node -> the maps a backend renders from.

Plays the role of upstream's ServiceChangeTracker + EndpointsChangeTracker for one IP family:
events mark services dirty; `take_changes()` recomputes only the dirty services, compares the
result with what the last sync used, and reports the services that really changed (upstream's
UpdatedServices, used for partial syncs) plus what conntrack cleanup needs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from svcnet.proxy.endpointslicecache import SliceInfo, merge_slices, parse_slice, slice_service
from svcnet.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName, object_key, service_to_port_map

log = logging.getLogger("svcnet.proxy")

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

ServiceKey = tuple[str, str]


@dataclass
class ChangeResult:
    updated_services: set[ServiceKey] = field(default_factory=set)
    # the ports of those services, before and after (so a syncer need not scan every service)
    updated_ports: set[ServicePortName] = field(default_factory=set)
    # UDP conntrack cleanup inputs (upstream's event-driven CleanStaleEntries).
    deleted_udp_cluster_ips: set[str] = field(default_factory=set)
    deleted_udp_endpoints: list[tuple[ServicePortInfo, str]] = field(default_factory=list)
    newly_active_udp: list[ServicePortInfo] = field(default_factory=list)
    trigger_times: list[float] = field(default_factory=list)
    topology_changed: bool = False


class ProxyState:
    def __init__(self, family: str, node_name: str) -> None:
        self.family = family
        self.node_name = node_name
        self.services: dict[ServiceKey, dict] = {}
        self.slices: dict[ServiceKey, dict[str, SliceInfo]] = {}
        self.node_labels: dict[str, str] = {}
        self.svc_port_map: dict[ServicePortName, ServicePortInfo] = {}
        self.endpoints_map: dict[ServicePortName, list[EndpointInfo]] = {}
        self._ports_by_service: dict[ServiceKey, dict[ServicePortName, ServicePortInfo]] = {}
        self._eps_by_service: dict[ServiceKey, dict[ServicePortName, list[EndpointInfo]]] = {}
        self._dirty: set[ServiceKey] = set()
        self._trigger_times: list[float] = []
        self._topology_changed = False
        self._started = time.time()
        self.services_synced = False
        self.slices_synced = False

    @property
    def initialized(self) -> bool:
        return self.services_synced and self.slices_synced

    @property
    def has_changes(self) -> bool:
        return bool(self._dirty) or self._topology_changed

    # --- events ---

    def on_service(self, service: dict, deleted: bool = False) -> None:
        key = object_key(service)
        if deleted:
            self.services.pop(key, None)
        else:
            self.services[key] = service
        self._dirty.add(key)

    def on_endpoint_slice(self, slice_obj: dict, deleted: bool = False) -> None:
        svc = slice_service(slice_obj)
        if svc is None:
            return
        slice_name = (slice_obj.get("metadata") or {}).get("name") or ""
        per_svc = self.slices.setdefault(svc, {})
        if deleted:
            per_svc.pop(slice_name, None)
        else:
            info = parse_slice(slice_obj, self.family, self.node_name)
            if info is None:
                per_svc.pop(slice_name, None)
            else:
                per_svc[slice_name] = info
                self._note_trigger_time(slice_obj)
        if not per_svc:
            self.slices.pop(svc, None)
        self._dirty.add(svc)

    def on_node(self, node: dict, deleted: bool = False) -> None:
        if (node.get("metadata") or {}).get("name") != self.node_name:
            return
        labels = {} if deleted else dict((node.get("metadata") or {}).get("labels") or {})
        if labels != self.node_labels:
            self.node_labels = labels
            # Topology labels feed endpoint selection for every service: full resync.
            self._topology_changed = True

    def replace_all(self, services: list[dict], slices: list[dict], nodes: list[dict]) -> None:
        """Load a complete object set (file source or a relist), marking what changed."""
        new_keys = {object_key(s) for s in services}
        for key in list(self.services):
            if key not in new_keys:
                self.services.pop(key)
                self._dirty.add(key)
        for svc in services:
            if self.services.get(object_key(svc)) != svc:
                self.on_service(svc)
        old_slices = self.slices
        self.slices = {}
        for sl in slices:
            svc = slice_service(sl)
            if svc is None:
                continue
            info = parse_slice(sl, self.family, self.node_name)
            if info is not None:
                self.slices.setdefault(svc, {})[(sl.get("metadata") or {}).get("name") or ""] = info
        for key in set(old_slices) | set(self.slices):
            if old_slices.get(key) != self.slices.get(key):
                self._dirty.add(key)
        for node in nodes:
            self.on_node(node)
        self.services_synced = self.slices_synced = True

    def _note_trigger_time(self, slice_obj: dict) -> None:
        text = ((slice_obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
        if not text:
            return
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return
        if ts > self._started:
            self._trigger_times.append(ts)

    # --- sync ---

    def take_changes(self) -> ChangeResult:
        """Apply pending changes to svc_port_map / endpoints_map; report what changed."""
        result = ChangeResult(trigger_times=self._trigger_times, topology_changed=self._topology_changed)
        self._trigger_times = []
        self._topology_changed = False
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            old_ports = self._ports_by_service.get(key, {})
            old_eps = self._eps_by_service.get(key, {})
            new_ports = service_to_port_map(self.services.get(key), self.family)
            new_eps = merge_slices(self.slices.get(key, {}))
            if new_ports == old_ports and new_eps == old_eps:
                continue
            result.updated_services.add(key)
            result.updated_ports.update(old_ports, new_ports, old_eps, new_eps)
            for spn in old_ports:
                self.svc_port_map.pop(spn, None)
            for spn in old_eps:
                self.endpoints_map.pop(spn, None)
            self.svc_port_map.update(new_ports)
            self.endpoints_map.update(new_eps)
            if new_ports:
                self._ports_by_service[key] = new_ports
            else:
                self._ports_by_service.pop(key, None)
            if new_eps:
                self._eps_by_service[key] = new_eps
            else:
                self._eps_by_service.pop(key, None)
            self._conntrack_changes(result, old_ports, new_ports, old_eps, new_eps)
        return result

    @staticmethod
    def _conntrack_changes(result: ChangeResult, old_ports, new_ports, old_eps, new_eps) -> None:
        for spn, info in old_ports.items():
            if spn.protocol == "UDP" and spn not in new_ports:
                result.deleted_udp_cluster_ips.add(info.cluster_ip)
        for spn, eps in old_eps.items():
            if spn.protocol != "UDP":
                continue
            info = old_ports.get(spn) or new_ports.get(spn)
            if info is None:
                continue
            still = {e.ip for e in new_eps.get(spn, ()) if e.serving}
            for ep in eps:
                if ep.ip not in still:
                    result.deleted_udp_endpoints.append((info, ep.ip))
        for spn, info in new_ports.items():
            if spn.protocol != "UDP":
                continue
            had = any(e.serving for e in old_eps.get(spn, ())) and spn in old_ports
            has = any(e.serving for e in new_eps.get(spn, ()))
            if has and not had:
                result.newly_active_udp.append(info)

    def local_ready_endpoints(self) -> dict[ServiceKey, int]:
        """Distinct local ready IPs per service (feeds the health-check node port servers)."""
        out: dict[ServiceKey, set[str]] = {}
        for spn, eps in self.endpoints_map.items():
            for ep in eps:
                if ep.is_local and ep.ready:
                    out.setdefault(spn.service, set()).add(ep.ip)
        return {k: len(v) for k, v in out.items()}

    def health_check_node_ports(self) -> dict[ServiceKey, int]:
        out: dict[ServiceKey, int] = {}
        for spn, info in self.svc_port_map.items():
            if info.health_check_node_port:
                out[spn.service] = info.health_check_node_port
        return out
