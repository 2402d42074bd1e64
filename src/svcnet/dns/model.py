"""The few facts DNS needs from Services, EndpointSlices and Pods, read from Kubernetes JSON.

Mirrors what CoreDNS's kubernetes plugin keeps (plugin/kubernetes/object): a Service's ClusterIPs
(a lone "None" marks it headless), its ports (a sentinel port -1 when it has none), and, per
EndpointSlice, the ports (sentinel -1 again) and the *ready* addresses, where ready means the
condition is absent or true (the API's "nil means unknown, treat as ready").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
CLUSTER_IP_NONE = "None"
NO_PORT = -1  # CoreDNS's sentinel for a service or slice without ports

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str
    external_name: str
    cluster_ips: tuple[str, ...]
    ports: tuple[Port, ...]

    @property
    def headless(self) -> bool:
        return self.cluster_ips[0] == CLUSTER_IP_NONE


@dataclass(frozen=True, slots=True)
class Address:
    ip: str
    hostname: str
    target_ref_name: str


@dataclass(frozen=True, slots=True)
class Slice:
    namespace: str
    name: str
    service: str  # from the kubernetes.io/service-name label ("" when absent)
    ports: tuple[Port, ...]
    addresses: tuple[Address, ...]  # ready ones only


def canonical_ip(text: str) -> str:
    """The address in the form Go's net.IP.String() prints (and CoreDNS compares), or the text
    unchanged when it is not an address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def service_from_object(obj: Obj) -> Service:
    meta = _meta(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    ips = spec.get("clusterIPs")
    if isinstance(ips, list) and ips and all(isinstance(i, str) for i in ips):
        cluster_ips = tuple(i if i == CLUSTER_IP_NONE else canonical_ip(i) for i in ips)
    else:
        single = _str(spec.get("clusterIP"))
        cluster_ips = (single if single in (CLUSTER_IP_NONE, "") else canonical_ip(single),)
    ports = []
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            ports.append(Port(_str(p.get("name")), _str(p.get("protocol")) or "TCP",
                              _int_or(p.get("port"), NO_PORT)))
    return Service(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        type=_str(spec.get("type")) or "ClusterIP",
        external_name=_str(spec.get("externalName")),
        cluster_ips=cluster_ips,
        ports=tuple(ports) or (Port("", "", NO_PORT),),
    )


def slice_from_object(obj: Obj) -> Slice | None:
    """None for slices DNS never serves (addressType FQDN)."""
    if obj.get("addressType") == "FQDN":
        return None
    meta = _meta(obj)
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    ports = []
    for p in obj.get("ports") or []:
        if isinstance(p, dict):
            ports.append(Port(_str(p.get("name")), _str(p.get("protocol")), _int_or(p.get("port"), NO_PORT)))
    addresses = []
    for ep in obj.get("endpoints") or []:
        if not isinstance(ep, dict):
            continue
        conditions = ep.get("conditions") if isinstance(ep.get("conditions"), dict) else {}
        if conditions.get("ready") is False:
            continue
        hostname = _str(ep.get("hostname"))
        ref = ep.get("targetRef") if isinstance(ep.get("targetRef"), dict) else {}
        ref_name = _str(ref.get("name"))
        if len(ref_name) >= 64:  # not a valid label; CoreDNS ignores it
            ref_name = ""
        for a in ep.get("addresses") or []:
            if isinstance(a, str) and a:
                addresses.append(Address(canonical_ip(a), hostname, ref_name))
    return Slice(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        service=_str(labels.get(SERVICE_NAME_LABEL)),
        ports=tuple(ports) or (Port("", "", NO_PORT),),
        addresses=tuple(addresses),
    )


def pod_ip(obj: Obj) -> str | None:
    """The pod's status.podIP, or None for a pod without one or one being deleted (CoreDNS
    drops terminating pods from its pod cache)."""
    meta = _meta(obj)
    if meta.get("deletionTimestamp"):
        return None
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    ip = _str(status.get("podIP"))
    return ip or None


def endpoint_hostname(addr: Address, pod_names: bool = False) -> str:
    """The DNS label of an endpoint address: hostname, else (endpoint_pod_names) the pod name,
    else the IP with '.' or ':' turned into '-' (and a trailing '-' completed with '0')."""
    if addr.hostname:
        return addr.hostname
    if pod_names and addr.target_ref_name:
        return addr.target_ref_name
    if "." in addr.ip:
        return addr.ip.replace(".", "-")
    if ":" in addr.ip:
        label = addr.ip.replace(":", "-")
        return label + "0" if label.endswith("-") else label
    return ""
