"""EndpointSlices merged per service port, as upstream's EndpointSliceCache does.

Slices of one service are merged; an IP:port present in several slices is kept once (a
non-terminating copy wins over a terminating one); endpoints come out sorted by their
"ip:port" string, which is the order kube-proxy writes them in.
"""

from __future__ import annotations

import logging

from svcnet.proxy.ipnet import IPV4, IPV6, family_of, parse_ip
from svcnet.proxy.model import PROTOCOLS, EndpointInfo, ServicePortName, address_type_family

log = logging.getLogger("svcnet.proxy")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# One slice, reduced to what the proxy uses: {ServicePortName: [EndpointInfo, ...]}
SliceInfo = dict[ServicePortName, list[EndpointInfo]]


def slice_service(slice_obj: dict) -> tuple[str, str] | None:
    meta = slice_obj.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc:
        return None
    return (meta.get("namespace") or "", svc)


def _hint_names(hints: dict | None, key: str) -> tuple[bool, frozenset[str]]:
    if not isinstance(hints, dict) or hints.get(key) is None:
        return False, frozenset()
    names = {h.get("name") for h in hints.get(key) or [] if isinstance(h, dict) and h.get("name")}
    return True, frozenset(names)


def parse_slice(slice_obj: dict, family: str, node_name: str) -> SliceInfo | None:
    """The endpoints of one slice for one family, or None if the slice is not for this proxy."""
    meta = slice_obj.get("metadata") or {}
    slice_family = address_type_family(slice_obj.get("addressType"))
    if slice_family not in (IPV4, IPV6) or slice_family != family:
        return None
    svc = slice_service(slice_obj)
    if svc is None:
        log.warning("skipping EndpointSlice %s/%s: no %s label",
                    meta.get("namespace"), meta.get("name"), SERVICE_NAME_LABEL)
        return None
    ns, svc_name = svc
    endpoints: list[EndpointInfo] = []
    for ep in slice_obj.get("endpoints") or []:
        if not isinstance(ep, dict):
            continue
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        addr = parse_ip(addresses[0]) if isinstance(addresses[0], str) else None
        if addr is None or family_of(addr) != family:
            log.warning("skipping endpoint %r of EndpointSlice %s/%s: unparsable %s address",
                        addresses[0], ns, meta.get("name"), family)
            continue
        cond = ep.get("conditions") or {}
        ready = cond.get("ready") is None or bool(cond.get("ready"))
        serving = cond.get("serving") is None or bool(cond.get("serving"))
        terminating = bool(cond.get("terminating"))
        has_zone, zone_hints = _hint_names(ep.get("hints"), "forZones")
        has_node, node_hints = _hint_names(ep.get("hints"), "forNodes")
        ep_node = ep.get("nodeName") or ""
        endpoints.append(EndpointInfo(
            ip=str(addr), port=0, is_local=bool(ep_node) and ep_node == node_name,
            ready=ready, serving=serving, terminating=terminating,
            zone_hints=zone_hints, node_hints=node_hints, node_name=ep_node,
            zone=ep.get("zone") or "", has_zone_hints=has_zone, has_node_hints=has_node))
    info: SliceInfo = {}
    for port in slice_obj.get("ports") or []:
        if not isinstance(port, dict):
            continue
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or number == 0:
            continue
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            log.warning("skipping port %r of EndpointSlice %s/%s: unknown protocol %r",
                        port.get("name"), ns, meta.get("name"), protocol)
            continue
        spn = ServicePortName(ns, svc_name, port.get("name") or "", protocol)
        info[spn] = [_with_port(ep, number) for ep in endpoints]
    return info


def _with_port(ep: EndpointInfo, port: int) -> EndpointInfo:
    return EndpointInfo(ip=ep.ip, port=port, is_local=ep.is_local, ready=ep.ready, serving=ep.serving,
                        terminating=ep.terminating, zone_hints=ep.zone_hints, node_hints=ep.node_hints,
                        node_name=ep.node_name, zone=ep.zone, has_zone_hints=ep.has_zone_hints,
                        has_node_hints=ep.has_node_hints)


def merge_slices(slices: dict[str, SliceInfo]) -> dict[ServicePortName, list[EndpointInfo]]:
    """Merge the parsed slices of one service into sorted endpoints per service port."""
    merged: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for slice_name in sorted(slices):
        for spn, eps in slices[slice_name].items():
            bucket = merged.setdefault(spn, {})
            for ep in eps:
                key = ep.endpoint_string
                if key not in bucket or not ep.terminating:
                    bucket[key] = ep
    return {spn: [bucket[k] for k in sorted(bucket)] for spn, bucket in merged.items() if bucket}
