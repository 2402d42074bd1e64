"""Endpoint selection: upstream's CategorizeEndpoints (pkg/proxy/topology.go).

Given every endpoint of a service port, decide which ones Cluster-policy traffic may use,
which ones Local-policy traffic may use, and the union of both (the endpoints that need
per-endpoint chains on this node). Ready endpoints come first; serving+terminating endpoints
are a fallback when nothing is ready; topology hints narrow Cluster endpoints when every ready
endpoint is hinted and one hint names this node or its zone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from svcnet.proxy.model import EndpointInfo, ServicePortInfo

log = logging.getLogger("svcnet.proxy")

ZONE_LABEL = "topology.kubernetes.io/zone"
PREFER_SAME_ZONE = "PreferSameZone"
PREFER_SAME_NODE = "PreferSameNode"


def topology_mode_from_hints(endpoints: Sequence[EndpointInfo], node_name: str, zone: str) -> str:
    has_for_node = False
    all_node_hints = True
    has_for_zone = False
    all_zone_hints = True
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.node_hints:
            all_node_hints = False
        elif node_name in ep.node_hints:
            has_for_node = True
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone in ep.zone_hints:
            has_for_zone = True
    if all_node_hints and has_for_node:
        return PREFER_SAME_NODE
    if all_zone_hints:
        if has_for_zone:
            return PREFER_SAME_ZONE
        if zone:
            log.debug("ignoring topology hints: no endpoint is hinted for zone %s", zone)
    return ""


def _available_for_topology(ep: EndpointInfo, mode: str, node_name: str, zone: str) -> bool:
    if mode == "":
        return True
    if mode == PREFER_SAME_NODE:
        return node_name in ep.node_hints
    if mode == PREFER_SAME_ZONE:
        return zone in ep.zone_hints
    return False


def categorize_endpoints(endpoints: Sequence[EndpointInfo], svc: ServicePortInfo, node_name: str,
                         node_labels: dict[str, str] | None
                         ) -> tuple[list[EndpointInfo], list[EndpointInfo], list[EndpointInfo], bool]:
    """Returns (cluster_endpoints, local_endpoints, all_reachable, has_any_endpoints)."""
    zone = (node_labels or {}).get(ZONE_LABEL, "")
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    topology_mode = ""
    use_serving_terminating = False

    if svc.uses_cluster_endpoints:
        topology_mode = topology_mode_from_hints(endpoints, node_name, zone)
        cluster = [ep for ep in endpoints
                   if ep.ready and _available_for_topology(ep, topology_mode, node_name, zone)]
        if not cluster:
            # Nothing ready: fall back to endpoints that are still serving while terminating.
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)

    if not svc.uses_local_endpoints:
        return cluster, [], cluster, has_any

    has_local_ready = False
    has_local_serving_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            if ep.is_local:
                has_local_ready = True
        elif ep.serving and ep.terminating:
            has_any = True
            if ep.is_local:
                has_local_serving_terminating = True

    if has_local_ready:
        local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif has_local_serving_terminating:
        use_serving_terminating = True
        local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]

    if not svc.uses_cluster_endpoints:
        return cluster, local, local, has_any

    if topology_mode == "" and not use_serving_terminating:
        # Local endpoints are a subset of the cluster endpoints.
        return cluster, local, cluster, has_any

    merged: dict[str, EndpointInfo] = {}
    for ep in cluster:
        merged[ep.endpoint_string] = ep
    for ep in local:
        merged[ep.endpoint_string] = ep
    # Upstream builds this from a Go map (unordered); endpoint order within SEP chain
    # creation does not matter for the rules, so sort for a stable output.
    all_reachable = sorted(merged.values(), key=lambda e: e.endpoint_string)
    return cluster, local, all_reachable, has_any
