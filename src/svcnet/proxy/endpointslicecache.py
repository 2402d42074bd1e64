"""EndpointSlices merged per service port, as upstream's EndpointSliceCache does.

Slices of one service are merged; an IP:port present in several slices is kept once (a
non-terminating copy wins over a terminating one); endpoints come out sorted by their
"ip:port" string, which is the order kube-proxy writes them in.
"""

from __future__ import annotations

import logging

from svcnet.proxy.ipnet import IPV4, IPV6, normalize_ip
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
    endpoints: list[tuple[str, dict]] = []
    want_v6 = family == IPV6
    for ep in slice_obj.get("endpoints") or []:
        if not isinstance(ep, dict):
            continue
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        ip = normalize_ip(addresses[0])
        if ip is None or (":" in ip) != want_v6:
            log.warning("skipping endpoint %r of EndpointSlice %s/%s: unparsable %s address",
                        addresses[0], ns, meta.get("name"), family)
            continue
        cond = ep.get("conditions") or {}
        ready = cond.get("ready")
        serving = cond.get("serving")
        hints = ep.get("hints")
        has_zone, zone_hints = _hint_names(hints, "forZones") if hints else (False, frozenset())
        has_node, node_hints = _hint_names(hints, "forNodes") if hints else (False, frozenset())
        ep_node = ep.get("nodeName") or ""
        endpoints.append((ip, {
            "is_local": bool(ep_node) and ep_node == node_name,
            "ready": ready is None or bool(ready), "serving": serving is None or bool(serving),
            "terminating": bool(cond.get("terminating")), "zone_hints": zone_hints,
            "node_hints": node_hints, "node_name": ep_node, "zone": ep.get("zone") or "",
            "has_zone_hints": has_zone, "has_node_hints": has_node}))
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
        info[spn] = [EndpointInfo(ip=ip, port=number, **fields) for ip, fields in endpoints]
    return info


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
