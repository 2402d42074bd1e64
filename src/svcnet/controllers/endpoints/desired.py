"""The v1 Endpoints object of a Service, as upstream's endpoints controller builds it:
Ready pods in addresses, the rest in notReadyAddresses, terminating pods left out (unless
publishNotReadyAddresses), subsets grouped by identical port sets, and truncation above
1,000 addresses with the over-capacity annotation."""

from __future__ import annotations

import math
from typing import Any

from svcnet.controllers.endpointslice.desired import (
    LABEL_HEADLESS,
    addresses_for,
    endpoint_ports,
    is_service_ip_set,
    pod_is_ready,
    should_pod_be_in_endpoints,
)

MAX_CAPACITY = 1000
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

Obj = dict[str, Any]


def _address(pod: Obj, service: Obj, ip: str) -> Obj:
    meta = pod["metadata"]
    spec = pod.get("spec", {})
    addr: Obj = {"ip": ip}
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    svc_meta = service["metadata"]
    if (spec.get("hostname") and spec.get("subdomain") == svc_meta["name"]
            and meta.get("namespace") == svc_meta.get("namespace")):
        addr["hostname"] = spec["hostname"]
    addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                         "uid": meta.get("uid", "")}
    return addr


def _ports_for(service: Obj, pod: Obj) -> list[Obj] | None:
    """The pod's resolved ports (the slices' endpoint_ports, an unnamed port without a name
    field), [] for a port-less service, None if the service has ports but none resolves on
    this pod."""
    ports = endpoint_ports(service, pod)
    if not ports:
        return None if service.get("spec", {}).get("ports") else []
    for port in ports:
        if not port["name"]:
            del port["name"]
    return ports


def _port_key(ports: list[Obj]) -> tuple:
    return tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))


def _address_key(addr: Obj) -> tuple:
    return (addr["ip"], (addr.get("targetRef") or {}).get("name", ""))


def repack(entries: list[tuple[list[Obj], Obj, bool]]) -> list[Obj]:
    """Group (ports, address, ready) entries into subsets of identical port sets, addresses
    sorted, subsets ordered by their port sets (upstream's RepackSubsets ordering)."""
    by_ports: dict[tuple, Obj] = {}
    for ports, addr, ready in entries:
        key = _port_key(ports)
        ordered_ports = sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))
        subset = by_ports.setdefault(key, {"ports": ordered_ports, "ready": {}, "not_ready": {}})
        bucket = subset["ready"] if ready else subset["not_ready"]
        bucket[_address_key(addr)] = addr
    subsets = []
    for key in sorted(by_ports):
        group = by_ports[key]
        subset: Obj = {}
        if group["ready"]:
            subset["addresses"] = [group["ready"][k] for k in sorted(group["ready"])]
        if group["not_ready"]:
            subset["notReadyAddresses"] = [group["not_ready"][k] for k in sorted(group["not_ready"])]
        if group["ports"]:
            subset["ports"] = group["ports"]
        subsets.append(subset)
    return subsets


def _count(subsets: list[Obj]) -> int:
    return sum(len(s.get("addresses", [])) + len(s.get("notReadyAddresses", [])) for s in subsets)


def truncate(subsets: list[Obj], limit: int = MAX_CAPACITY) -> list[Obj]:
    """Trim to ``limit`` addresses: not-ready ones go first; ready ones are trimmed per subset
    in proportion to its size (rounded up, the last subsets taking what is left)."""
    total_ready = sum(len(s.get("addresses", [])) for s in subsets)
    if total_ready >= limit:
        for s in subsets:
            s.pop("notReadyAddresses", None)
        return _trim_proportionally(subsets, "addresses", total_ready, limit)
    room = limit - total_ready
    total_not_ready = sum(len(s.get("notReadyAddresses", [])) for s in subsets)
    return _trim_proportionally(subsets, "notReadyAddresses", total_not_ready, room)


def _trim_proportionally(subsets: list[Obj], field: str, total: int, limit: int) -> list[Obj]:
    if total <= limit:
        return subsets
    left = limit
    for s in subsets:
        items = s.get(field, [])
        if not items:
            continue
        share = min(math.ceil(len(items) / total * limit), left)
        s[field] = items[:share]
        if not s[field]:
            del s[field]
        left -= share
    return [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]


def desired_endpoints(service: Obj, pods: list[Obj]) -> Obj:
    """The Endpoints object for ``service`` (metadata, subsets), without resourceVersion."""
    spec = service.get("spec", {})
    publish = bool(spec.get("publishNotReadyAddresses"))
    family = (spec.get("ipFamilies") or ["IPv4"])[0]
    entries: list[tuple[list[Obj], Obj, bool]] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=publish):
            continue
        ips = addresses_for(pod, family)
        if not ips:
            continue
        ports = _ports_for(service, pod)
        if ports is None:
            continue
        ready = publish or pod_is_ready(pod)
        entries.append((ports, _address(pod, service, ips[0]), ready))
    subsets = repack(entries)
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items() if k != LABEL_HEADLESS}
    if not is_service_ip_set(service):
        labels[LABEL_HEADLESS] = ""
    meta: Obj = {"name": service["metadata"]["name"], "namespace": service["metadata"]["namespace"]}
    if labels:
        meta["labels"] = labels
    if _count(subsets) > MAX_CAPACITY:
        subsets = truncate(subsets)
        meta["annotations"] = {OVER_CAPACITY_ANNOTATION: "truncated"}
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}


def needs_update(current: Obj | None, desired: Obj) -> bool:
    """Skip writes when subsets, labels and the capacity annotation already match."""
    if current is None:
        return True
    cur_meta = current.get("metadata", {})
    want_meta = desired["metadata"]
    cur_capacity = (cur_meta.get("annotations") or {}).get(OVER_CAPACITY_ANNOTATION)
    want_capacity = (want_meta.get("annotations") or {}).get(OVER_CAPACITY_ANNOTATION)
    return (
        (current.get("subsets") or []) != desired["subsets"]
        or (cur_meta.get("labels") or {}) != (want_meta.get("labels") or {})
        or cur_capacity != want_capacity
    )
