"""What the slices of one Service should contain, computed from its Pods and Nodes as
upstream's EndpointSlice controller computes it (podToEndpoint, getEndpointPorts,
ShouldPodBeInEndpoints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
RESERVED_LABELS = frozenset({LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS})

Obj = dict[str, Any]


def is_service_ip_set(service: Obj) -> bool:
    ip = service.get("spec", {}).get("clusterIP") or ""
    return ip not in ("", "None")


def address_types(service: Obj) -> list[str]:
    """One set of slices per IP family of the Service; IPv4 when families are not set yet."""
    families = service.get("spec", {}).get("ipFamilies") or ["IPv4"]
    return [f for f in families if f in ("IPv4", "IPv6")]


def pod_is_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Terminal pods and pods without an IP never are; terminating pods only when asked."""
    status = pod.get("status", {})
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return include_terminating or not pod.get("metadata", {}).get("deletionTimestamp")


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status", {})
    ips = [entry.get("ip", "") for entry in status.get("podIPs") or []]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return [ip for ip in ips if ip]


def addresses_for(pod: Obj, address_type: str) -> list[str]:
    wanted_v6 = address_type == "IPv6"
    out = []
    for ip in pod_ips(pod):
        # The API validated pod IPs (pods/status): the family is all that is in question,
        # and this runs for every pod of a Service on every sync, so no address parsing.
        if (":" in ip) == wanted_v6:
            out.append(ip)
    return out


class PortNotFoundError(LookupError):
    pass


def find_port(pod: Obj, service_port: Obj) -> int:
    """A Service port's targetPort on this pod: a number as is, a name looked up among the
    pod's container ports (and restartable init containers) with the same protocol."""
    target = service_port.get("targetPort", service_port.get("port"))
    protocol = service_port.get("protocol", "TCP")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    spec = pod.get("spec", {})
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    raise PortNotFoundError(f"no container port named {target!r} ({protocol}) on pod")


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    spec = service.get("spec", {})
    ports = spec.get("ports") or []
    out: list[Obj] = []
    if not ports and spec.get("clusterIP") == "None":
        return out  # a headless service may have no ports
    for sp in ports:
        try:
            number = find_port(pod, sp)
        except PortNotFoundError:
            continue  # upstream skips the port for this pod, not the pod
        port: Obj = {"name": sp.get("name", ""), "port": number, "protocol": sp.get("protocol", "TCP")}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def port_map_key(ports: list[Obj]) -> tuple:
    """Pods whose resolved ports are the same set share slices."""
    return tuple(sorted(
        (p.get("name") or "", p.get("protocol", "TCP"), p.get("port", 0), p.get("appProtocol") or "")
        for p in ports
    ))


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj, address_type: str) -> Obj:
    meta = pod.get("metadata", {})
    serving = pod_is_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    # "ready" is never true for a terminating pod unless the service publishes not-ready addresses.
    ready = bool(service.get("spec", {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    endpoint: Obj = {
        "addresses": addresses_for(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    spec = pod.get("spec", {})
    svc_meta = service.get("metadata", {})
    if (spec.get("hostname") and spec.get("subdomain") == svc_meta.get("name")
            and meta.get("namespace") == svc_meta.get("namespace")):
        endpoint["hostname"] = spec["hostname"]
    endpoint["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""),
                             "name": meta.get("name", ""), "uid": meta.get("uid", "")}
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(LABEL_ZONE)
    if zone:
        endpoint["zone"] = zone
    return endpoint


def endpoint_identity(endpoint: Obj) -> tuple:
    """Upstream's endpoint hash: addresses, hostname and the target's namespace/name. Two
    endpoints with the same identity are the same endpoint, possibly in a new state."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(sorted(endpoint.get("addresses") or [])), endpoint.get("hostname", ""),
            ref.get("namespace", ""), ref.get("name", ""))


@dataclass
class DesiredGroup:
    address_type: str
    ports: list[Obj]
    endpoints: dict[tuple, Obj] = field(default_factory=dict)


@dataclass
class Desired:
    groups: dict[tuple[str, tuple], DesiredGroup]  # (addressType, port map key) -> group
    skipped: list[str]  # reasons pods were left out and the sync should be retried


def desired_state(service: Obj, pods: list[Obj], nodes: dict[str, Obj]) -> Desired:
    """Endpoints per (address type, port set) for the Service's selected pods."""
    groups: dict[tuple[str, tuple], DesiredGroup] = {}
    skipped: list[str] = []
    publish_not_ready = bool(service.get("spec", {}).get("publishNotReadyAddresses"))
    for address_type in address_types(service):
        for pod in pods:
            if not should_pod_be_in_endpoints(pod, include_terminating=True):
                continue
            ports = endpoint_ports(service, pod)
            key = (address_type, port_map_key(ports))
            group = groups.setdefault(key, DesiredGroup(address_type, ports))
            node_name = pod.get("spec", {}).get("nodeName", "")
            node = nodes.get(node_name)
            if node is None and not publish_not_ready:
                # A pod bound to an unknown node is left out and the service retried later,
                # so a dangling nodeName cannot pin a slice forever (upstream's rule).
                pod_name = pod.get("metadata", {}).get("name")
                skipped.append(f"skipping Pod {pod_name}: Node {node_name!r} Not Found")
                continue
            endpoint = pod_to_endpoint(pod, node, service, address_type)
            if endpoint["addresses"]:
                group.endpoints[endpoint_identity(endpoint)] = endpoint
    return Desired(groups, skipped)
